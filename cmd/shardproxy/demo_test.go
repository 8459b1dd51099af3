package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/shardproxy/shardproxy/test/pgcluster"
	"github.com/shardproxy/shardproxy/test/socialapp"
	"github.com/shardproxy/shardproxy/test/wait"
)

// TestDemoEndToEnd runs what "make demo" runs — shardproxy dev --socialapp
// with fixed PostgreSQL ports and single-node Raft — in a temp dir with a
// small seed: the app answers over HTTP, psql works through the proxy, the
// banner says what to try, Ctrl-C leaves no process behind, and a second
// run reuses the data instead of seeding again; SIGTERM (make demo-stop)
// stops that one.
func TestDemoEndToEnd(t *testing.T) {
	data := dataDir(t)
	pgPort := freePortBlock(t, 4)
	port, admin, raftPort := freePort(t), freePort(t), freePort(t)
	args := []string{"dev", "--socialapp", "--shards", "2", "--replicas", "1", "--data", data,
		"--pg-port", strconv.Itoa(pgPort), "--raft-dir", filepath.Join(data, "raft"), "--raft-bind", fmt.Sprintf("127.0.0.1:%d", raftPort),
		"--listen", fmt.Sprintf("127.0.0.1:%d", port), "--admin", fmt.Sprintf("127.0.0.1:%d", admin),
		"--app-listen", "127.0.0.1:0", "--seed-users", "200", "--seed-posts", "1000"}

	p := startBinary(t, args...)
	app := waitApp(t, p)
	out := p.out.String()
	for _, want := range []string{"seeded 200 users", "1000 posts", "curl " + app, "psql -h 127.0.0.1 -p " + strconv.Itoa(port),
		fmt.Sprintf("shardctl --server http://127.0.0.1:%d", admin), "/metrics", "bin/socialapp load --url " + app} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}

	// The API works over the sharded data.
	var stats struct {
		Users     int64 `json:"users"`
		Posts     int64 `json:"posts"`
		MinUserID int64 `json:"min_user_id"`
	}
	getJSON(t, app+"/stats", 200, &stats)
	if stats.Users != 200 || stats.Posts != 1000 {
		t.Errorf("stats %+v, want 200 users and 1000 posts", stats)
	}
	var profile struct {
		ID        int64 `json:"id"`
		Following int64 `json:"following"`
	}
	getJSON(t, fmt.Sprintf("%s/users/%d", app, stats.MinUserID), 200, &profile)
	if profile.ID != stats.MinUserID || profile.Following == 0 {
		t.Errorf("profile %+v", profile)
	}
	var timeline struct {
		Posts []json.RawMessage `json:"posts"`
	}
	getJSON(t, fmt.Sprintf("%s/users/%d/timeline?limit=5", app, stats.MinUserID), 200, &timeline)
	if len(timeline.Posts) == 0 {
		t.Error("empty timeline for a user who follows others")
	}
	resp, err := http.Post(app+"/users", "application/json", strings.NewReader(`{"name":"Demo Test","email":"demo@example.com","country_code":"SE"}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 201 {
		t.Errorf("sign-up: status %d", resp.StatusCode)
	}

	// psql through the proxy sees the rows of every shard. A new session
	// reads from the replicas (the demo has one per shard), which show the
	// sign-up once they replayed it.
	got := ""
	if !wait.For(10*time.Second, func() bool { got = psql(t, port, "SELECT count(*) FROM users"); return got == "201" }) {
		t.Errorf("psql: count(*) FROM users = %q, want 201", got)
	}

	// The load generator against the demo's app: a short run, no errors.
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	rep, err := socialapp.Load(ctx, &socialapp.HTTPClient{BaseURL: app}, socialapp.LoadOptions{Users: 4, Duration: time.Second, Seed: 1})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Errors != 0 || rep.Requests < 10 {
		t.Errorf("load: %d requests, %d errors:\n%s", rep.Requests, rep.Errors, rep)
	}

	// Ctrl-C: everything stops, nothing stays behind.
	pids := postmasterPIDs(t, data)
	if len(pids) != 4 {
		t.Fatalf("want 4 servers running under %s, found %v", data, pids)
	}
	if err := p.cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	if code := p.wait(t, 90*time.Second); code != 0 {
		t.Fatalf("exit code %d after SIGINT; output:\n%s", code, p.out.String())
	}
	waitNoProcesses(t, data, pids)
	if _, err := http.Get(app + "/healthz"); err == nil {
		t.Error("the app still answers after dev exited")
	}

	// A rerun reuses the data, and SIGTERM (make demo-stop) stops it.
	p2 := startBinary(t, args...)
	app = waitApp(t, p2)
	if out := p2.out.String(); !strings.Contains(out, "reusing the data already there (2") || strings.Contains(out, "seeding") {
		t.Errorf("second run did not reuse the data:\n%s", out)
	}
	getJSON(t, fmt.Sprintf("%s/users/%d", app, stats.MinUserID), 200, &profile)
	pids = postmasterPIDs(t, data)
	if err := p2.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if code := p2.wait(t, 90*time.Second); code != 0 {
		t.Fatalf("second run: exit code %d after SIGTERM; output:\n%s", code, p2.out.String())
	}
	waitNoProcesses(t, data, pids)
}

var appReady = regexp.MustCompile(`the social app is ready at (http://\S+)`)

// waitApp waits for the app's banner and returns its base URL.
func waitApp(t *testing.T, p *proc) string {
	t.Helper()
	p.waitOutput(t, "the social app is ready at", 4*time.Minute)
	m := appReady.FindStringSubmatch(p.out.String())
	if m == nil {
		t.Fatalf("no app address in:\n%s", p.out.String())
	}
	return m[1]
}

func getJSON(t *testing.T, url string, status int, out any) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != status {
		t.Fatalf("GET %s: status %d, want %d: %s", url, resp.StatusCode, status, body)
	}
	if err := json.Unmarshal(body, out); err != nil {
		t.Fatalf("GET %s: %v: %s", url, err, body)
	}
}

// psql runs one query with the installed psql through the proxy and
// returns the unaligned result.
func psql(t *testing.T, port int, query string) string {
	t.Helper()
	bin, err := pgcluster.BinDir()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(filepath.Join(bin, "psql"), "-h", "127.0.0.1", "-p", strconv.Itoa(port), "-U", "postgres", "-d", "postgres",
		"-X", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-c", query)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("psql -c %q: %v: %s", query, err, stderr.String())
	}
	return strings.TrimSpace(string(out))
}

// waitNoProcesses waits (briefly: dev stops its servers before exiting)
// until the servers are gone and no process refers to dir.
func waitNoProcesses(t *testing.T, dir string, pids []int) {
	t.Helper()
	var left []int
	if !wait.For(5*time.Second, func() bool {
		left = processesUsing(dir)
		for _, pid := range pids {
			if alive(pid) {
				left = append(left, pid)
			}
		}
		return len(left) == 0
	}) {
		t.Fatalf("processes still running after dev exited: %v", left)
	}
}

// freePortBlock returns the first of n consecutive loopback ports in
// 62000-65000 that are free right now.
func freePortBlock(t *testing.T, n int) int {
	t.Helper()
	for range 200 {
		base := 62000 + rand.IntN(3000-n)
		free := true
		for i := 0; i < n && free; i++ {
			ln, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(base+i))
			if err != nil {
				free = false
				continue
			}
			ln.Close()
		}
		if free {
			return base
		}
	}
	t.Fatalf("no %d free consecutive ports in 62000-65000", n)
	return 0
}
