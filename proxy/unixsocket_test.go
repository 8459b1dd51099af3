package proxy

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/shardproxy/shardproxy/proxy/config"
	"github.com/shardproxy/shardproxy/test/wait"
)

// TestUnixSocketClients: with unix_socket_dir set, clients connect on
// DIR/.s.PGSQL.PORT as they would to PostgreSQL or PgBouncer on the same
// host (psql -h DIR -p PORT, pgx host=DIR): queries, cancel, the admin
// console's view, no TLS on the socket, the socket's mode, and the file is
// gone after Shutdown.
func TestUnixSocketClients(t *testing.T) {
	dir := t.TempDir()
	dir2 := t.TempDir()
	certFile, keyFile := writeSelfSigned(t, dir2)
	tp := startProxy(t, func(c *config.Config) {
		c.UnixSocketDir = dir
		c.UnixSocketMode = "0770"
		c.TLS.CertFile, c.TLS.KeyFile = certFile, keyFile
		c.AdminUsers = []string{"postgres"}
	})
	path := filepath.Join(dir, fmt.Sprintf(".s.PGSQL.%d", tp.port))
	waitUnixSocket(t, path)
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatalf("no socket at %s: %v", path, err)
	}
	if fi.Mode()&os.ModeSocket == 0 || fi.Mode().Perm() != 0o770 {
		t.Fatalf("%s: mode %v, want a socket with 0770", path, fi.Mode())
	}
	dsn := fmt.Sprintf("host=%s port=%d user=postgres dbname=postgres", dir, tp.port)

	t.Run("pgx", func(t *testing.T) {
		ctx := ctx10(t)
		c := connect(t, dsn, pgx.QueryExecModeCacheStatement)
		var n int
		var addr *string
		if err := c.QueryRow(ctx, "SELECT $1::int + 1, inet_client_addr()::text", 41).Scan(&n, &addr); err != nil || n != 42 {
			t.Fatalf("query over the Unix socket: %d, %v", n, err)
		}
		// The proxy's own server connection is TCP: inet_client_addr is the proxy's.
		if addr == nil || !strings.HasPrefix(*addr, "127.0.0.1") {
			t.Fatalf("inet_client_addr %v", addr)
		}
		if _, err := c.Exec(ctx, "SELECT 1/0"); !isCode(err, "22012") {
			t.Fatalf("want 22012, got %v", err)
		}
		if err := c.QueryRow(ctx, "SELECT 7").Scan(&n); err != nil || n != 7 {
			t.Fatalf("after an error: %d, %v", n, err)
		}
	})

	t.Run("psql", func(t *testing.T) {
		psql := "/usr/bin/psql"
		if _, err := os.Stat(psql); err != nil {
			psql = "/usr/lib/postgresql/15/bin/psql"
		}
		cmd := exec.Command(psql, "-X", "-At", "-v", "ON_ERROR_STOP=1", "-h", dir, "-p", fmt.Sprint(tp.port), "-U", "postgres", "-d", "postgres",
			"-c", "SELECT 'over ' || 'unix'", "-c", `\conninfo`)
		cmd.Env = append(os.Environ(), "PGSSLMODE=prefer")
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("psql: %v\n%s", err, out)
		}
		if !strings.Contains(string(out), "over unix") || !strings.Contains(string(out), `via socket in "`+dir+`"`) {
			t.Fatalf("psql output:\n%s", out)
		}
	})

	t.Run("no TLS on the socket", func(t *testing.T) {
		c, err := net.DialTimeout("unix", path, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(5 * time.Second))
		var req [8]byte
		binary.BigEndian.PutUint32(req[0:], 8)
		binary.BigEndian.PutUint32(req[4:], codeSSLRequest)
		c.Write(req[:])
		var answer [1]byte
		if _, err := io.ReadFull(c, answer[:]); err != nil || answer[0] != 'N' {
			t.Fatalf("SSLRequest over the Unix socket answered %q, %v; want N (TLS is for TCP clients)", answer[:], err)
		}
		// Over TCP the same proxy offers TLS.
		tc, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", tp.port), 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer tc.Close()
		tc.SetDeadline(time.Now().Add(5 * time.Second))
		tc.Write(req[:])
		if _, err := io.ReadFull(tc, answer[:]); err != nil || answer[0] != 'S' {
			t.Fatalf("SSLRequest over TCP answered %q, %v; want S", answer[:], err)
		}
	})

	t.Run("cancel", func(t *testing.T) {
		c := connectCancelling(t, dsn)
		ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
		defer cancel()
		start := time.Now()
		_, err := c.Exec(ctx, "SELECT pg_sleep(30)")
		if !isCode(err, "57014") {
			t.Fatalf("want 57014 from a CancelRequest sent over the Unix socket, got %v after %v", err, time.Since(start))
		}
	})

	t.Run("SHOW CLIENTS", func(t *testing.T) {
		ctx := ctx10(t)
		c := connect(t, fmt.Sprintf("host=%s port=%d user=postgres dbname=shardproxy application_name=viaunix", dir, tp.port), pgx.QueryExecModeSimpleProtocol)
		rows, err := c.Query(ctx, "SHOW CLIENTS")
		if err != nil {
			t.Fatal(err)
		}
		found := false
		for rows.Next() {
			m, err := pgx.RowToMap(rows)
			if err != nil {
				t.Fatal(err)
			}
			if m["application_name"] == "viaunix" {
				found = true
				if m["addr"] != "unix" || m["local_addr"] != "unix" || fmt.Sprint(m["port"]) != fmt.Sprint(tp.port) || m["tls"] != "no" {
					t.Fatalf("SHOW CLIENTS row of a Unix-socket client: %v", m)
				}
			}
		}
		if err := rows.Err(); err != nil || !found {
			t.Fatalf("SHOW CLIENTS: found %v, err %v", found, err)
		}
	})

	tp.srv.Shutdown(ctx10(t))
	if _, err := os.Lstat(path); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("socket file after Shutdown: %v", err)
	}
}

// TestUnixSocketFile: a socket file left by a process that is gone is
// replaced, one that accepts connections or a path that is not a socket
// makes Serve fail with an error naming unix_socket_dir.
func TestUnixSocketFile(t *testing.T) {
	dir := t.TempDir()
	serve := func(port int) net.Listener {
		cfg := config.Default()
		cfg.UnixSocketDir = dir
		cfg.Auth.TrustLoopback = true
		p := testCluster.Shards[0].Primary
		cfg.Shards = []config.Shard{{Name: "s0", Primary: config.Endpoint{Host: p.Host, Port: p.Port}}}
		srv, err := NewServer(cfg, Deps{Logger: slog.New(slog.DiscardHandler)})
		if err != nil {
			t.Fatal(err)
		}
		ln, err := Listen(fmt.Sprintf("127.0.0.1:%d", port))
		if err != nil {
			t.Fatal(err)
		}
		go srv.Serve(ln)
		t.Cleanup(func() { srv.Shutdown(context.Background()) })
		return ln
	}

	// Stale: a socket file nobody listens on (left by a killed process).
	ln0, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln0.Addr().(*net.TCPAddr).Port
	ln0.Close()
	path := filepath.Join(dir, fmt.Sprintf(".s.PGSQL.%d", port))
	stale, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	stale.(*net.UnixListener).SetUnlinkOnClose(false)
	stale.Close()
	if _, err := os.Lstat(path); err != nil {
		t.Fatalf("stale socket file should still be there: %v", err)
	}
	tcpLn := serve(port)
	waitUnixSocket(t, path)
	c := connect(t, fmt.Sprintf("host=%s port=%d user=postgres dbname=postgres", dir, port), pgx.QueryExecModeSimpleProtocol)
	var n int
	if err := c.QueryRow(ctx10(t), "SELECT 5").Scan(&n); err != nil || n != 5 {
		t.Fatalf("after replacing a stale socket: %d, %v", n, err)
	}

	// In use: a second proxy with the same port number in the name (its
	// TCP listener on another address) must not steal the socket.
	cfg := config.Default()
	cfg.UnixSocketDir = dir
	p := testCluster.Shards[0].Primary
	cfg.Shards = []config.Shard{{Name: "s0", Primary: config.Endpoint{Host: p.Host, Port: p.Port}}}
	srv2, err := NewServer(cfg, Deps{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	ln2, err := Listen("127.0.0.2:" + fmt.Sprint(tcpLn.Addr().(*net.TCPAddr).Port))
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- srv2.Serve(ln2) }()
	select {
	case err = <-served:
	case <-time.After(10 * time.Second):
		srv2.Shutdown(context.Background())
		t.Fatal("a second proxy took over the socket of a running one")
	}
	if err == nil || !strings.Contains(err.Error(), "unix_socket_dir: another server accepts connections on "+path) {
		t.Fatalf("Serve with the socket in use: %v", err)
	}
	if err := c.QueryRow(ctx10(t), "SELECT 6").Scan(&n); err != nil || n != 6 {
		t.Fatalf("the first proxy after the refused start: %d, %v", n, err)
	}

	// Not a socket.
	ln3, err := Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	notSock := filepath.Join(dir, fmt.Sprintf(".s.PGSQL.%d", ln3.Addr().(*net.TCPAddr).Port))
	os.WriteFile(notSock, []byte("x"), 0o600)
	srv3, err := NewServer(cfg, Deps{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	if err := srv3.Serve(ln3); err == nil || !strings.Contains(err.Error(), "exists and is not a socket") {
		t.Fatalf("Serve with a regular file in the way: %v", err)
	}
	if data, _ := os.ReadFile(notSock); string(data) != "x" {
		t.Fatalf("the regular file was touched: %q", data)
	}
}

func isCode(err error, code string) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && pe.Code == code
}

// waitUnixSocket waits until something accepts connections on path (Serve
// runs in its own goroutine).
func waitUnixSocket(t *testing.T, path string) {
	t.Helper()
	wait.Until(t, 10*time.Second, "a listener on "+path, func() bool {
		c, err := net.Dial("unix", path)
		if err == nil {
			c.Close()
		}
		return err == nil
	})
}

// TestUnixSocketServers: a shard whose host is a directory reaches
// PostgreSQL over its Unix-domain socket (as libpq's host=DIR, PgBouncer's
// host=/var/run/postgresql) for the pool, cancel requests and the health
// checks.
func TestUnixSocketServers(t *testing.T) {
	p := testCluster.Shards[0].Primary
	dir, err := p.SocketDir()
	if err != nil {
		t.Fatal(err)
	}
	tp := startProxy(t, func(c *config.Config) {
		c.Shards = []config.Shard{{Name: "s0", Primary: config.Endpoint{Host: dir, Port: p.Port}}}
	})
	ctx := ctx10(t)
	c := connectCancelling(t, tp.dsn)
	var serverAddr *string
	var n int
	if err := c.QueryRow(ctx, "SELECT inet_server_addr()::text, $1::int * 2", 21).Scan(&serverAddr, &n); err != nil || n != 42 {
		t.Fatalf("query: %d, %v", n, err)
	}
	if serverAddr != nil {
		t.Fatalf("inet_server_addr %q: the proxy's server connection is TCP, want the Unix socket", *serverAddr)
	}

	qctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancel()
	if _, err := c.Exec(qctx, "SELECT pg_sleep(30)"); !isCode(err, "57014") {
		t.Fatalf("cancel through a Unix-socket server connection: want 57014, got %v", err)
	}
	if err := c.QueryRow(ctx, "SELECT 3").Scan(&n); err != nil || n != 3 {
		t.Fatalf("after the cancel: %d, %v", n, err)
	}

	// The health checker logs in through the same address (adminConnect).
	addr := net.JoinHostPort(dir, fmt.Sprint(p.Port))
	wait.Until(t, 10*time.Second, "a successful health check of "+addr, func() bool {
		tp.srv.health.mu.Lock()
		b := tp.srv.health.by[addr]
		tp.srv.health.mu.Unlock()
		return b != nil && b.up.Load() && b.lsn.Load() > 0
	})
}

// TestUnixSocketPeerAuth: with auth.unix_socket_method peer, a client on
// the socket logs in only as its own OS user (SO_PEERCRED), with no
// password; other users get PostgreSQL's 28000 "Peer authentication
// failed"; TCP clients still use auth.method.
func TestUnixSocketPeerAuth(t *testing.T) {
	dir, err := os.MkdirTemp("", "sp-peer-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	os.Chmod(dir, 0o777) // the postgres OS user connects below
	tp := startProxy(t, func(c *config.Config) {
		c.Auth.TrustLoopback = false
		c.Auth.UnixSocketMethod = "peer"
		c.Users = []config.User{{Name: "postgres", Password: "tcp-secret"}}
		c.UnixSocketDir = dir
	})
	path := filepath.Join(dir, fmt.Sprintf(".s.PGSQL.%d", tp.port))
	waitUnixSocket(t, path)
	ctx := ctx10(t)
	me, err := user.Current()
	if err != nil {
		t.Fatal(err)
	}
	sockDSN := func(u string) string {
		return fmt.Sprintf("host=%s port=%d user=%s dbname=postgres", dir, tp.port, u)
	}

	// Another user than the client's own: refused, with or without a password.
	other := "postgres"
	if me.Username == "postgres" {
		other = "nobody"
	}
	for _, dsn := range []string{sockDSN(other), sockDSN(other) + " password=tcp-secret"} {
		_, err := pgx.Connect(ctx, dsn)
		var pe *pgconn.PgError
		if !errors.As(err, &pe) || pe.Code != "28000" || pe.Message != fmt.Sprintf("Peer authentication failed for user %q", other) {
			t.Fatalf("%s as OS user %s: want 28000 Peer authentication failed, got %v", dsn, me.Username, err)
		}
	}

	// Its own user: in without a password. As root the client runs as
	// the postgres OS user, whose role exists on the server.
	if os.Geteuid() == 0 {
		psql := "/usr/bin/psql"
		if _, err := os.Stat(psql); err != nil {
			psql = "/usr/lib/postgresql/15/bin/psql"
		}
		cmd := exec.Command("runuser", "-u", "postgres", "--", psql, "-X", "-At", "-w", "-h", dir, "-p", fmt.Sprint(tp.port),
			"-U", "postgres", "-d", "postgres", "-c", "SELECT 'peer ok ' || current_user")
		cmd.Dir = "/"
		out, err := cmd.CombinedOutput()
		if err != nil || strings.TrimSpace(string(out)) != "peer ok postgres" {
			t.Fatalf("psql as the postgres OS user over the socket: %v\n%s", err, out)
		}
	} else {
		_, err := pgx.Connect(ctx, sockDSN(me.Username))
		if err != nil && strings.Contains(err.Error(), "Peer authentication failed") {
			t.Fatalf("own OS user %s refused: %v", me.Username, err)
		}
	}

	// TCP clients: auth.method (SCRAM) as before.
	tcp := fmt.Sprintf("postgres://postgres:%%s@127.0.0.1:%d/postgres?sslmode=disable", tp.port)
	if _, err := pgx.Connect(ctx, fmt.Sprintf(tcp, "wrong")); !isCode(err, "28P01") {
		t.Fatalf("TCP with a wrong password: want 28P01, got %v", err)
	}
	c := connect(t, fmt.Sprintf(tcp, "tcp-secret"), pgx.QueryExecModeSimpleProtocol)
	var n int
	if err := c.QueryRow(ctx, "SELECT 8").Scan(&n); err != nil || n != 8 {
		t.Fatalf("TCP with the password: %d, %v", n, err)
	}
}
