package sqlclass

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
)

// startPostgres runs a throwaway PostgreSQL on a free loopback port and
// returns a connection to it; everything is stopped and removed at cleanup.
func startPostgres(t *testing.T) *pgconn.PgConn {
	t.Helper()
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	sort.Sort(sort.Reverse(sort.StringSlice(dirs)))
	bin := ""
	for _, d := range dirs {
		if _, err := os.Stat(filepath.Join(d, "initdb")); err == nil {
			bin = d
			break
		}
	}
	if bin == "" {
		t.Fatal("PostgreSQL server binaries not found in /usr/lib/postgresql/*/bin (apt-get install postgresql)")
	}
	base, err := os.MkdirTemp("", "sqlclasspg")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(base) })
	os.Chmod(base, 0o755)
	data := filepath.Join(base, "data")
	if err := os.Mkdir(data, 0o700); err != nil {
		t.Fatal(err)
	}
	var cred *syscall.Credential
	if os.Geteuid() == 0 {
		u, err := user.Lookup("postgres")
		if err != nil {
			t.Fatalf("running as root needs a postgres OS user: %v", err)
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		if err := os.Chown(data, uid, gid); err != nil {
			t.Fatal(err)
		}
		cred = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
	}
	asPG := func(c *exec.Cmd) *exec.Cmd {
		if cred != nil {
			c.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
		}
		return c
	}
	if out, err := asPG(exec.Command(filepath.Join(bin, "initdb"), "-D", data, "-U", "postgres",
		"--auth=trust", "--no-sync", "-E", "UTF8", "--locale=C")).CombinedOutput(); err != nil {
		t.Fatalf("initdb: %v\n%s", err, out)
	}
	port := freePort(t)
	srv := asPG(exec.Command(filepath.Join(bin, "postgres"), "-D", data, "-p", strconv.Itoa(port),
		"-c", "listen_addresses=127.0.0.1", "-c", "unix_socket_directories=", "-c", "fsync=off"))
	logf, err := os.Create(filepath.Join(base, "log"))
	if err != nil {
		t.Fatal(err)
	}
	srv.Stdout, srv.Stderr = logf, logf
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { srv.Wait(); close(exited) }()
	t.Cleanup(func() {
		srv.Process.Signal(syscall.SIGINT) // fast shutdown
		select {
		case <-exited:
		case <-time.After(30 * time.Second):
			srv.Process.Kill()
			<-exited
		}
	})
	dsn := fmt.Sprintf("host=127.0.0.1 port=%d user=postgres dbname=postgres sslmode=disable", port)
	deadline := time.Now().Add(60 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		conn, err := pgconn.Connect(ctx, dsn)
		cancel()
		if err == nil {
			t.Cleanup(func() { conn.Close(context.Background()) })
			return conn
		}
		select {
		case <-exited:
			log, _ := os.ReadFile(filepath.Join(base, "log"))
			t.Fatalf("postgres exited:\n%s", log)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("postgres did not accept connections: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func freePort(t *testing.T) int {
	t.Helper()
	for p := 61000 + os.Getpid()%4000; p < 65000; p++ {
		ln, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(p))
		if err == nil {
			ln.Close()
			return p
		}
	}
	t.Fatal("no free port in 61000-65000")
	return 0
}

// TestAgainstPostgres checks the splitter and the setting names against a
// real server: a multi-statement Query yields one result per statement of
// Split, and every Set/Reset/Show Name is a setting SHOW knows.
func TestAgainstPostgres(t *testing.T) {
	conn := startPostgres(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	exec := func(sql string) ([]*pgconn.Result, error) {
		return conn.Exec(ctx, sql).ReadAll()
	}
	if _, err := exec("CREATE ROLE alice; CREATE TABLE t (a int, b text)"); err != nil {
		t.Fatal(err)
	}
	multi := []string{
		"SELECT ';'; SELECT 'it''s;'",
		`SELECT E'a\';b'; SELECT 2`,
		`SELECT 'a\'; SELECT 2`,
		`SELECT 1 AS ";"; SELECT """;""" FROM (SELECT 1 AS """;""") x`,
		"SELECT $$;$$; SELECT $tag$ $$; $tag$; SELECT 3",
		"SELECT $a$ $A$; $a$; SELECT 4",
		"SELECT 1 -- c;omment\n; SELECT 2",
		"SELECT 1 /* a /* nested; */ still; */ + 1; SELECT 2",
		"/* shardproxy: shard=1 */ SELECT 1; -- trailing",
		"SELECT 1;;; ; SELECT 2 ; /* only a comment */ ;",
		"SELECT U&'d\\0061t;'; SELECT 1 AS U&\"a;\"",
		"CREATE FUNCTION f() RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT 1; SELECT CASE WHEN true THEN 2 END; END; SELECT 4",
		"create or replace procedure p() language sql begin atomic insert into t values (1); end; select 2",
		"BEGIN; SET LOCAL work_mem = '8MB'; SELECT 1; COMMIT",
		"SET application_name = 'a;b'; SHOW application_name; RESET application_name",
		"PREPARE q(int) AS SELECT $1; EXECUTE q(1); DEALLOCATE q",
		"SELECT 1.5e-3; SELECT .5",
	}
	for _, sql := range multi {
		res, err := exec(sql)
		if err != nil {
			t.Errorf("%q: %v", sql, err)
			continue
		}
		if n := len(Split(sql)); n != len(res) {
			t.Errorf("%q: Split gives %d statements, PostgreSQL ran %d", sql, n, len(res))
		}
	}
	settings := []string{
		"SET search_path TO a, b",
		"SET TIME ZONE 'UTC'",
		"SET TIME ZONE LOCAL",
		"SET NAMES 'UTF8'",
		"SET SCHEMA 'app'",
		"SET XML OPTION DOCUMENT",
		"SET SESSION AUTHORIZATION alice",
		"SET SESSION AUTHORIZATION DEFAULT",
		"SET ROLE alice",
		"SET ROLE NONE",
		"SET statement_timeout TO DEFAULT",
		"SET myapp.user_id = 42",
		"RESET myapp.User_Id",
		"RESET TIME ZONE",
		"SELECT set_config('Work_Mem', '8MB', false)",
		"SHOW search_path",
	}
	for _, sql := range settings {
		st := ClassifyOne(sql)
		switch st.Kind {
		case Set, Reset, SetConfig, Show:
		default:
			t.Errorf("%q classified %v", sql, st.Kind)
			continue
		}
		if _, err := exec(sql); err != nil {
			t.Errorf("%q: %v", sql, err)
			continue
		}
		if _, err := exec("SHOW " + quoteIdent(st.Name)); err != nil {
			t.Errorf("%q: Name %q is not a setting: %v", sql, st.Name, err)
		}
	}
	// A session-scope SET replayed from Text restores the value.
	st := ClassifyOne("SET TIME ZONE 'America/New_York'")
	if _, err := exec("RESET ALL; " + st.Text); err != nil {
		t.Fatal(err)
	}
	res, err := exec("SHOW " + st.Name)
	if err != nil || len(res) != 1 || string(res[0].Rows[0][0]) != "America/New_York" {
		t.Fatalf("replayed %q: %v %v", st.Text, res, err)
	}
}

func quoteIdent(s string) string {
	out := `"`
	for _, r := range s {
		if r == '"' {
			out += `""`
		} else {
			out += string(r)
		}
	}
	return out + `"`
}
