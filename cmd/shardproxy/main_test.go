package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/shardproxy/shardproxy/test/pgcluster"
)

// binPath is the shardproxy binary built once for all tests in TestMain.
var binPath string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "shardproxy-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binPath = filepath.Join(dir, "shardproxy")
	build := exec.Command("go", "build", "-ldflags", "-X main.version=test-build", "-o", binPath, ".")
	build.Stdout, build.Stderr = os.Stdout, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "go build:", err)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// syncBuffer collects a child's output; safe for the copier goroutine and
// the test to use at once.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// proc is a running shardproxy binary.
type proc struct {
	cmd    *exec.Cmd
	out    *syncBuffer // stdout and stderr interleaved
	stderr *syncBuffer
	done   chan struct{}
	err    error // set when done is closed
}

func startBinary(t *testing.T, args ...string) *proc {
	t.Helper()
	p := &proc{out: &syncBuffer{}, stderr: &syncBuffer{}, done: make(chan struct{})}
	p.cmd = exec.Command(binPath, args...)
	p.cmd.Stdout = p.out
	p.cmd.Stderr = io.MultiWriter(p.out, p.stderr)
	// If the test binary dies, take the proxy (and through it its servers) along.
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("start %v: %v", args, err)
	}
	go func() {
		p.err = p.cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		select {
		case <-p.done:
			return
		default:
		}
		_ = p.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.done:
		case <-time.After(60 * time.Second):
			_ = p.cmd.Process.Kill()
			<-p.done
		}
		if t.Failed() {
			t.Logf("shardproxy %v output:\n%s", args, p.out.String())
		}
	})
	return p
}

// wait waits for the process to exit and returns its exit code.
func (p *proc) wait(t *testing.T, timeout time.Duration) int {
	t.Helper()
	select {
	case <-p.done:
	case <-time.After(timeout):
		t.Fatalf("shardproxy did not exit within %s; output:\n%s", timeout, p.out.String())
	}
	var ee *exec.ExitError
	if errors.As(p.err, &ee) {
		return ee.ExitCode()
	}
	if p.err != nil {
		t.Fatalf("wait: %v", p.err)
	}
	return 0
}

// waitOutput polls the combined output until it contains s.
func (p *proc) waitOutput(t *testing.T, s string, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !strings.Contains(p.out.String(), s) {
		select {
		case <-p.done:
			t.Fatalf("shardproxy exited (%v) before printing %q; output:\n%s", p.err, s, p.out.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("shardproxy did not print %q within %s; output:\n%s", s, timeout, p.out.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// freePort returns a loopback port in 61000-65000 that is free right now.
func freePort(t *testing.T) int {
	t.Helper()
	for range 200 {
		port := 61000 + rand.IntN(4000)
		ln, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(port))
		if err == nil {
			ln.Close()
			return port
		}
	}
	t.Fatal("no free port in 61000-65000")
	return 0
}

// dataDir returns a temp dir the postgres OS user can reach.
func dataDir(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	for d := dir; d != os.TempDir() && d != "/" && d != "."; d = filepath.Dir(d) {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return filepath.Join(dir, "data")
}

// connect polls until a pgx client gets "SELECT 1" through the proxy.
func connect(t *testing.T, p *proc, dsn string, timeout time.Duration) *pgx.Conn {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var lastErr error
	for time.Now().Before(deadline) {
		select {
		case <-p.done:
			t.Fatalf("shardproxy exited (%v); output:\n%s", p.err, p.out.String())
		default:
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		conn, err := pgx.Connect(ctx, dsn)
		if err == nil {
			var one int
			err = conn.QueryRow(ctx, "SELECT 1").Scan(&one)
			if err == nil && one == 1 {
				cancel()
				return conn
			}
			conn.Close(ctx)
		}
		cancel()
		lastErr = err
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("no SELECT 1 through the proxy within %s: %v; output:\n%s", timeout, lastErr, p.out.String())
	return nil
}

// postmasterPIDs reads the PID of every server under dir from its postmaster.pid.
func postmasterPIDs(t *testing.T, dir string) []int {
	t.Helper()
	var pids []int
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.Name() != "postmaster.pid" {
			return nil
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		first, _, _ := strings.Cut(string(b), "\n")
		pid, err := strconv.Atoi(strings.TrimSpace(first))
		if err != nil {
			return fmt.Errorf("%s: %v", path, err)
		}
		pids = append(pids, pid)
		return nil
	})
	if err != nil {
		t.Fatalf("read postmaster.pid files: %v", err)
	}
	return pids
}

// alive reports whether pid is a running (not zombie) process.
func alive(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	// The state follows the parenthesised command name.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i < 0 || i+2 >= len(s) || s[i+2] != 'Z'
}

func TestDevStopsServersAndKeepsData(t *testing.T) {
	data := dataDir(t)
	port, admin := freePort(t), freePort(t)
	args := []string{"dev", "--shards", "1", "--replicas", "1", "--data", data,
		"--listen", fmt.Sprintf("127.0.0.1:%d", port), "--admin", fmt.Sprintf("127.0.0.1:%d", admin)}
	dsn := fmt.Sprintf("postgres://postgres@127.0.0.1:%d/postgres?sslmode=disable", port)

	p := startBinary(t, args...)
	conn := connect(t, p, dsn, 3*time.Minute)
	ctx := context.Background()
	if _, err := conn.Exec(ctx, "CREATE TABLE kept (id int PRIMARY KEY, note text)"); err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Exec(ctx, "INSERT INTO kept VALUES ($1, $2)", 7, "survives restart"); err != nil {
		t.Fatal(err)
	}
	conn.Close(ctx)

	out := p.out.String()
	for _, want := range []string{fmt.Sprintf("psql -h 127.0.0.1 -p %d -U postgres postgres", port), "/metrics", "replica"} {
		if !strings.Contains(out, want) {
			t.Errorf("banner lacks %q; output:\n%s", want, out)
		}
	}
	resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/metrics", admin))
	if err != nil {
		t.Fatalf("metrics: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(body), "go_goroutines") {
		t.Errorf("metrics: status %d, body %.200s", resp.StatusCode, body)
	}
	pidFile := filepath.Join(data, pidFileName)
	if b, err := os.ReadFile(pidFile); err != nil || strings.TrimSpace(string(b)) != strconv.Itoa(p.cmd.Process.Pid) {
		t.Errorf("pid file %s: %q, %v; want %d", pidFile, b, err, p.cmd.Process.Pid)
	}

	pids := postmasterPIDs(t, data)
	if len(pids) != 2 {
		t.Fatalf("want 2 running servers (primary + replica) under %s, found postmaster.pid for %v", data, pids)
	}
	for _, pid := range pids {
		if !alive(pid) {
			t.Fatalf("server pid %d from postmaster.pid is not running", pid)
		}
	}

	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if code := p.wait(t, 90*time.Second); code != 0 {
		t.Fatalf("exit code %d after SIGTERM; output:\n%s", code, p.out.String())
	}
	// The servers are stopped before the binary exits; allow only for the
	// kernel to reap them.
	deadline := time.Now().Add(3 * time.Second)
	for _, pid := range pids {
		for alive(pid) {
			if time.Now().After(deadline) {
				t.Fatalf("postgres pid %d still running after shardproxy dev exited", pid)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	if _, err := os.Stat(pidFile); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("pid file %s left behind (stat: %v)", pidFile, err)
	}

	// Same data directory again: the row is still there.
	p2 := startBinary(t, args...)
	conn = connect(t, p2, dsn, 3*time.Minute)
	var note string
	if err := conn.QueryRow(ctx, "SELECT note FROM kept WHERE id = 7").Scan(&note); err != nil {
		t.Fatalf("read back after restart: %v", err)
	}
	if note != "survives restart" {
		t.Fatalf("read back %q", note)
	}
	conn.Close(ctx)
	pids = postmasterPIDs(t, data)
	if err := p2.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if code := p2.wait(t, 90*time.Second); code != 0 {
		t.Fatalf("second run: exit code %d; output:\n%s", code, p2.out.String())
	}
	deadline = time.Now().Add(3 * time.Second)
	for _, pid := range pids {
		for alive(pid) {
			if time.Now().After(deadline) {
				t.Fatalf("second run: postgres pid %d still running after exit", pid)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
}

func writeFile(t *testing.T, name, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestBadConfigNamesKey(t *testing.T) {
	cases := []struct{ name, yaml, want string }{
		{"bad value", "pool:\n  size: -1\nshards:\n  - name: s0\n    primary: {host: 127.0.0.1, port: 5432}\n", "pool.size"},
		{"unknown key", "pool:\n  sise: 5\n", "sise"},
		{"bad duration", "pool:\n  wait_timeout: soon\n", "not a duration"},
		{"no shards", "listen: 127.0.0.1:6432\n", "shards"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			path := writeFile(t, "bad.yaml", c.yaml)
			p := startBinary(t, "--config", path)
			if code := p.wait(t, 30*time.Second); code == 0 {
				t.Fatalf("exit code 0 for a bad config; output:\n%s", p.out.String())
			}
			if !strings.Contains(p.stderr.String(), c.want) {
				t.Fatalf("stderr does not name %q:\n%s", c.want, p.stderr.String())
			}
		})
	}
	t.Run("unix_socket_dir that does not exist", func(t *testing.T) {
		dir := filepath.Join(t.TempDir(), "nope")
		path := writeFile(t, "sock.yaml", fmt.Sprintf("listen: 127.0.0.1:%d\nunix_socket_dir: %s\nshards:\n  - name: s0\n    primary: {host: 127.0.0.1, port: 5432}\n", freePort(t), dir))
		p := startBinary(t, "--config", path)
		if code := p.wait(t, 30*time.Second); code == 0 {
			t.Fatalf("exit code 0; output:\n%s", p.out.String())
		}
		if !strings.Contains(p.stderr.String(), "unix_socket_dir: listen unix "+dir) || strings.Contains(p.out.String(), "shardproxy listening") {
			t.Fatalf("want the unix_socket_dir error and no \"listening\" line; output:\n%s", p.out.String())
		}
	})
	t.Run("missing file", func(t *testing.T) {
		p := startBinary(t, "--config", filepath.Join(t.TempDir(), "nope.yaml"))
		if code := p.wait(t, 30*time.Second); code == 0 || !strings.Contains(p.stderr.String(), "nope.yaml") {
			t.Fatalf("exit %d, stderr:\n%s", code, p.stderr.String())
		}
	})
}

func TestVersion(t *testing.T) {
	p := startBinary(t, "--version")
	if code := p.wait(t, 30*time.Second); code != 0 {
		t.Fatalf("exit code %d", code)
	}
	if !strings.Contains(p.out.String(), "shardproxy test-build") {
		t.Fatalf("--version printed %q", p.out.String())
	}
}

// TestConfigReloadAndShutdown runs "shardproxy --config" against a real
// server: SIGHUP with a broken file keeps the proxy serving on the old
// config, SIGHUP with a good file reloads, SIGTERM exits 0.
func TestConfigReloadAndShutdown(t *testing.T) {
	c := pgcluster.StartT(t, pgcluster.Options{})
	port := freePort(t)
	primary := c.Shards[0].Primary
	good := fmt.Sprintf(`listen: 127.0.0.1:%d
log_level: debug
shutdown_timeout: 5s
auth:
  trust_loopback: true
pool:
  size: %%d
shards:
  - name: s0
    primary: {host: %s, port: %d}
`, port, primary.Host, primary.Port)
	path := writeFile(t, "shardproxy.yaml", fmt.Sprintf(good, 5))
	dsn := fmt.Sprintf("postgres://postgres@127.0.0.1:%d/postgres?sslmode=disable", port)

	p := startBinary(t, "--config", path)
	conn := connect(t, p, dsn, time.Minute)
	ctx := context.Background()
	defer conn.Close(ctx)

	if err := os.WriteFile(path, []byte("pool:\n  size: -3\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := p.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	p.waitOutput(t, "reload failed", 10*time.Second)
	if !strings.Contains(p.stderr.String(), "pool.size") {
		t.Errorf("reload error does not name pool.size:\n%s", p.stderr.String())
	}
	var one int
	if err := conn.QueryRow(ctx, "SELECT 1").Scan(&one); err != nil {
		t.Fatalf("client dropped by a failed reload: %v", err)
	}

	if err := os.WriteFile(path, []byte(fmt.Sprintf(good, 7)), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := p.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	p.waitOutput(t, "configuration reloaded", 10*time.Second)
	if err := conn.QueryRow(ctx, "SELECT 1").Scan(&one); err != nil {
		t.Fatalf("client dropped by a reload: %v", err)
	}

	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if code := p.wait(t, 30*time.Second); code != 0 {
		t.Fatalf("exit code %d after SIGTERM; output:\n%s", code, p.out.String())
	}
	if _, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", port), time.Second); err == nil {
		t.Fatal("proxy port still accepting after exit")
	}
}

// processesUsing lists PIDs whose command line mentions dir (postgres is
// started with -D under it).
func processesUsing(dir string) []int {
	var pids []int
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err == nil && bytes.Contains(b, []byte(dir)) && alive(pid) {
			pids = append(pids, pid)
		}
	}
	return pids
}

// TestDevInterruptedDuringStart sends SIGTERM while dev is still starting
// its servers: it must exit 0 and leave no server running.
func TestDevInterruptedDuringStart(t *testing.T) {
	data := dataDir(t)
	p := startBinary(t, "dev", "--shards", "1", "--replicas", "1", "--data", data,
		"--listen", fmt.Sprintf("127.0.0.1:%d", freePort(t)), "--admin", "")
	// The primary is up and the replica is being copied: the middle of Start.
	p.waitOutput(t, "base backup", 60*time.Second)
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if code := p.wait(t, 90*time.Second); code != 0 {
		t.Fatalf("exit code %d; output:\n%s", code, p.out.String())
	}
	deadline := time.Now().Add(3 * time.Second)
	for {
		left := processesUsing(data)
		if len(left) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("processes still using %s after exit: %v; output:\n%s", data, left, p.out.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestDevWithConfigFile: dev takes pool settings from --config and replaces
// the file's shards with its own servers.
func TestDevWithConfigFile(t *testing.T) {
	port := freePort(t)
	cfg := writeFile(t, "dev.yaml", fmt.Sprintf(`listen: 127.0.0.1:%d
pool:
  size: 3
shards:
  - name: elsewhere
    primary: {host: 127.0.0.1, port: 1}
`, port))
	p := startBinary(t, "dev", "--data", dataDir(t), "--config", cfg, "--admin", "")
	conn := connect(t, p, fmt.Sprintf("postgres://postgres@127.0.0.1:%d/postgres?sslmode=disable", port), 2*time.Minute)
	defer conn.Close(context.Background())
	if !strings.Contains(p.out.String(), "pool_size=3") {
		t.Errorf("pool.size from the file not in effect; output:\n%s", p.out.String())
	}
	if err := p.cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	if code := p.wait(t, 60*time.Second); code != 0 {
		t.Fatalf("exit code %d after SIGINT; output:\n%s", code, p.out.String())
	}
}
