package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/shardproxy/shardproxy/proxy/admin"
	"github.com/shardproxy/shardproxy/test/pgcluster"
	"github.com/shardproxy/shardproxy/test/wait"
)

// The control-plane end-to-end test: three real shardproxy processes share
// one topology through Raft; shardctl changes it through one of them; all
// three route by the change within a second; the leader is killed and the
// others elect a new one within 5 s while clients keep working; the killed
// proxy restarts and catches up.

const ctlToken = "e2e-admin-token"

// ctlBuild builds the shardproxy and shardctl binaries into dir.
func ctlBuild(t *testing.T, dir string) (shardproxy, shardctl string) {
	t.Helper()
	shardproxy, shardctl = filepath.Join(dir, "shardproxy"), filepath.Join(dir, "shardctl")
	for bin, pkg := range map[string]string{shardproxy: "../../cmd/shardproxy", shardctl: "../../cmd/shardctl"} {
		out, err := exec.Command("go", "build", "-buildvcs=false", "-o", bin, pkg).CombinedOutput()
		if err != nil {
			t.Fatalf("go build %s: %v\n%s", pkg, err, out)
		}
	}
	return shardproxy, shardctl
}

// ctlPort returns a loopback port in 63000-65000 that is free right now:
// above the ports pgcluster hands out from 61000 up to the servers of this
// and parallel test binaries (one of those took a proxy's port between
// this check and the proxy's start once: "address already in use").
//
// A port is never handed out twice in one test binary: the proxies of a
// test start one after another, so a port picked for one and not bound
// yet would still look free for the next (a proxy's admin address once
// got the port another's Raft address took).
func ctlPort(t *testing.T) int {
	t.Helper()
	ctlPorts.Lock()
	defer ctlPorts.Unlock()
	for range 200 {
		p := 63000 + rand.IntN(2000)
		if ctlPorts.given[p] {
			continue
		}
		if l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", p)); err == nil {
			l.Close()
			ctlPorts.given[p] = true
			return p
		}
	}
	t.Fatal("no free port in 63000-65000")
	return 0
}

// ctlPorts are the ports ctlPort gave out.
var ctlPorts = struct {
	sync.Mutex
	given map[int]bool
}{given: map[int]bool{}}

type ctlBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *ctlBuf) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *ctlBuf) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// ctlProxy is one shardproxy process and how to (re)start it.
type ctlProxy struct {
	name             string
	bin, config      string
	args             []string
	env              []string // extra environment (KEY=value)
	listen, adminURL string
	cmd              *exec.Cmd
	out              *ctlBuf
	done             chan struct{}
}

func (p *ctlProxy) start(t *testing.T) {
	t.Helper()
	p.out, p.done = &ctlBuf{}, make(chan struct{})
	p.cmd = exec.Command(p.bin, append([]string{"--config", p.config}, p.args...)...)
	p.cmd.Stdout, p.cmd.Stderr = p.out, p.out
	if p.env != nil {
		p.cmd.Env = append(os.Environ(), p.env...)
	}
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	cmd, done := p.cmd, p.done
	go func() { _ = cmd.Wait(); close(done) }()
}

func (p *ctlProxy) running() bool {
	select {
	case <-p.done:
		return false
	default:
		return true
	}
}

func (p *ctlProxy) kill() {
	if p.running() {
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}

func (p *ctlProxy) stop() {
	if p.running() {
		_ = p.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.done:
		case <-time.After(15 * time.Second):
			p.kill()
		}
	}
}

func (p *ctlProxy) dsn() string {
	return fmt.Sprintf("postgres://postgres@%s/postgres?sslmode=disable&connect_timeout=5", p.listen)
}

func (p *ctlProxy) api() *admin.Client {
	return &admin.Client{BaseURL: p.adminURL, Token: ctlToken, HTTP: &http.Client{Timeout: 3 * time.Second}}
}

// ctlWait polls cond until it holds or d passes.
func ctlWait(t *testing.T, d time.Duration, what string, cond func() bool) time.Duration {
	t.Helper()
	return wait.Until(t, d, what, cond)
}

func ctlStatus(p *ctlProxy) (admin.Status, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	var st admin.Status
	err := p.api().Get(ctx, "/v1/status", map[string][]string{"health": {"0"}}, &st)
	return st, err
}

func ctlKey(p *ctlProxy, k string) (admin.KeyAnswer, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	var ans admin.KeyAnswer
	err := p.api().Get(ctx, "/v1/key", map[string][]string{"table": {"users"}, "value": {k}}, &ans)
	return ans, err
}

// ctlLoad runs a client against a proxy until stopped, counting queries
// and errors.
type ctlLoad struct {
	name        string
	ok, failed  atomic.Int64
	mu          sync.Mutex
	firstErr    error
	stop        chan struct{}
	done        chan struct{}
	lastSuccess atomic.Int64
}

func startCtlLoad(t *testing.T, p *ctlProxy) *ctlLoad {
	t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, p.dsn())
	if err != nil {
		t.Fatalf("connect through %s: %v", p.name, err)
	}
	l := &ctlLoad{name: p.name, stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(l.done)
		defer conn.Close(ctx)
		for i := 0; ; i++ {
			select {
			case <-l.stop:
				return
			case <-time.After(20 * time.Millisecond):
			}
			qctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			var n int
			err := conn.QueryRow(qctx, "SELECT count(*) FROM ctl_notes WHERE id <= $1", i%50).Scan(&n)
			cancel()
			if err != nil {
				l.failed.Add(1)
				l.mu.Lock()
				if l.firstErr == nil {
					l.firstErr = err
				}
				l.mu.Unlock()
				continue
			}
			l.ok.Add(1)
		}
	}()
	return l
}

func (l *ctlLoad) finish(t *testing.T) {
	t.Helper()
	close(l.stop)
	<-l.done
	if l.failed.Load() > 0 || l.ok.Load() == 0 {
		t.Errorf("client through %s: %d queries ok, %d failed (first error: %v)", l.name, l.ok.Load(), l.failed.Load(), l.firstErr)
	}
}

func TestControlThreeProxiesShareTopology(t *testing.T) {
	pg := pgcluster.StartT(t, pgcluster.Options{Shards: 2})
	dir := t.TempDir()
	proxyBin, ctlBin := ctlBuild(t, dir)

	// The proxies point at the two shards; users is distributed by id.
	// ctl_notes is not listed, so it lives on the default shard (shard0).
	var shardsYAML strings.Builder
	for _, s := range pg.Shards {
		fmt.Fprintf(&shardsYAML, "  - name: %s\n    primary: {host: %s, port: %d}\n", s.Name, s.Primary.Host, s.Primary.Port)
	}
	proxies := make([]*ctlProxy, 3)
	for i := range proxies {
		listen, adminPort, raftPort := ctlPort(t), ctlPort(t), ctlPort(t)
		p := &ctlProxy{
			name: fmt.Sprintf("p%d", i+1), bin: proxyBin,
			listen:   fmt.Sprintf("127.0.0.1:%d", listen),
			adminURL: fmt.Sprintf("http://127.0.0.1:%d", adminPort),
		}
		p.config = filepath.Join(dir, p.name+".yaml")
		cfg := fmt.Sprintf(`listen: 127.0.0.1:%d
admin_listen: 127.0.0.1:%d
admin_token: %s
node_id: %d
shutdown_timeout: 2s
auth: {trust_loopback: true}
shards:
%ssharding:
  distributions:
    - {name: users, vnodes: 8}
  tables:
    - {name: users, key: id, distribution: users}
raft:
  node_id: %s
`, listen, adminPort, ctlToken, i+1, shardsYAML.String(), p.name)
		if err := os.WriteFile(p.config, []byte(cfg), 0o644); err != nil {
			t.Fatal(err)
		}
		p.args = []string{"--raft-dir", filepath.Join(dir, p.name+"-raft"), "--raft-bind", fmt.Sprintf("127.0.0.1:%d", raftPort)}
		if i > 0 {
			p.args = append(p.args, "--join", proxies[0].adminURL)
		}
		proxies[i] = p
	}
	t.Cleanup(func() {
		for _, p := range proxies {
			p.stop()
			if t.Failed() {
				t.Logf("%s output:\n%s", p.name, p.out.String())
			}
		}
	})

	proxies[0].start(t)
	ctlWait(t, 30*time.Second, "p1 ready", func() bool {
		resp, err := http.Get(proxies[0].adminURL + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == 200
	})
	proxies[1].start(t)
	proxies[2].start(t)
	ctlWait(t, 20*time.Second, "three members with known admin URLs on every proxy", func() bool {
		for _, p := range proxies {
			st, err := ctlStatus(p)
			if err != nil || len(st.Nodes) != 3 || st.Leader == nil || st.TopologyVersion < 1 {
				return false
			}
			for _, n := range st.Nodes {
				if n.AdminURL == "" || n.Suffrage != "voter" {
					return false
				}
			}
		}
		return true
	})

	// Clients work through every proxy.
	ctx := context.Background()
	direct, err := pgx.Connect(ctx, pg.Shards[0].Primary.DSN("postgres"))
	if err != nil {
		t.Fatal(err)
	}
	defer direct.Close(ctx)
	if _, err := direct.Exec(ctx, "CREATE TABLE ctl_notes (id int PRIMARY KEY, body text); INSERT INTO ctl_notes SELECT g, 'n' FROM generate_series(1, 50) g"); err != nil {
		t.Fatal(err)
	}
	loads := map[string]*ctlLoad{}
	for _, p := range proxies {
		loads[p.name] = startCtlLoad(t, p)
	}

	shardctl := func(p *ctlProxy, args ...string) string {
		t.Helper()
		cmd := exec.Command(ctlBin, append([]string{"--server", p.adminURL, "-o", "json"}, args...)...)
		cmd.Env = append(os.Environ(), "SHARDCTL_TOKEN="+ctlToken)
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		if err := cmd.Run(); err != nil {
			t.Fatalf("shardctl %v: %v\n%s%s", args, err, stdout.String(), stderr.String())
		}
		return stdout.String()
	}

	// A key that its range puts on shard0; pin it to shard1 through the
	// admin API of a follower.
	key := ""
	for k := 1; key == ""; k++ {
		var ans admin.KeyAnswer
		if err := json.Unmarshal([]byte(shardctl(proxies[2], "key", "users", strconv.Itoa(k))), &ans); err != nil {
			t.Fatal(err)
		}
		if ans.Shard == "shard0" {
			key = strconv.Itoa(k)
		}
	}
	var res admin.WriteResult
	if err := json.Unmarshal([]byte(shardctl(proxies[1], "directory", "set", "users", key, "shard1")), &res); err != nil {
		t.Fatal(err)
	}
	written := time.Now()
	for _, p := range proxies {
		ctlWait(t, time.Second-time.Since(written), p.name+" to route key "+key+" to shard1", func() bool {
			ans, err := ctlKey(p, key)
			return err == nil && ans.Shard == "shard1" && ans.Reason == "override" && ans.Version >= res.Version
		})
	}
	t.Logf("directory set visible on all three proxies %s after shardctl returned", time.Since(written).Round(time.Millisecond))

	// Metrics and health endpoints.
	resp, err := http.Get(proxies[2].adminURL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, m := range []string{"shardproxy_topology_version " + strconv.FormatUint(res.Version, 10), "shardproxy_raft_term", "shardproxy_ready 1"} {
		if !strings.Contains(string(body), m) {
			t.Errorf("p3 /metrics lacks %q", m)
		}
	}

	// Kill the leader: the other two elect a new one within 5 s and keep
	// serving clients without errors.
	st, err := ctlStatus(proxies[0])
	if err != nil {
		t.Fatal(err)
	}
	var leader *ctlProxy
	var rest []*ctlProxy
	for _, p := range proxies {
		if p.name == st.Leader.ID {
			leader = p
		} else {
			rest = append(rest, p)
		}
	}
	if leader == nil {
		t.Fatalf("leader %q is none of the proxies", st.Leader.ID)
	}
	close(loads[leader.name].stop)
	<-loads[leader.name].done
	delete(loads, leader.name)
	leader.kill()
	killed := time.Now()
	elected := ctlWait(t, 5*time.Second, "a new leader on the surviving proxies", func() bool {
		for _, p := range rest {
			st, err := ctlStatus(p)
			if err != nil || st.Leader == nil || st.Leader.ID == leader.name {
				return false
			}
		}
		return true
	})
	t.Logf("new leader %s after the leader was killed", elected.Round(time.Millisecond))
	// Clients keep working through the survivors meanwhile.
	for _, p := range rest {
		l := loads[p.name]
		before := l.ok.Load()
		ctlWait(t, 10*time.Second, "queries through "+p.name+" after the election", func() bool { return l.ok.Load() >= before+5 })
	}

	// A change while the old leader is down, through each survivor in turn.
	key2 := strconv.Itoa(100000 + rand.IntN(1000))
	shardctl(rest[1], "directory", "set", "users", key2, "shard0")
	shardctl(rest[0], "directory", "set", "users", key2, "shard1")
	for _, p := range rest {
		ctlWait(t, time.Second, p.name+" to see key "+key2, func() bool {
			ans, err := ctlKey(p, key2)
			return err == nil && ans.Shard == "shard1"
		})
	}
	for _, p := range rest {
		loads[p.name].finish(t)
	}
	t.Logf("killed leader %s; %s since", leader.name, time.Since(killed).Round(time.Millisecond))

	// Restart the old leader: it catches up with what it missed, and only
	// then accepts clients (/readyz).
	leader.start(t)
	ctlWait(t, 15*time.Second, leader.name+" to catch up", func() bool {
		resp, err := http.Get(leader.adminURL + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return false
		}
		ans, err := ctlKey(leader, key2)
		if err != nil || ans.Shard != "shard1" {
			return false
		}
		other, err := ctlStatus(rest[0])
		return err == nil && other.TopologyVersion == ans.Version
	})
	conn, err := pgx.Connect(ctx, leader.dsn())
	if err != nil {
		t.Fatalf("client through the restarted proxy: %v", err)
	}
	defer conn.Close(ctx)
	var n int
	if err := conn.QueryRow(ctx, "SELECT count(*) FROM ctl_notes").Scan(&n); err != nil || n != 50 {
		t.Fatalf("query through the restarted proxy: %d, %v", n, err)
	}
	var nodes admin.Nodes
	if err := json.Unmarshal([]byte(shardctl(leader, "nodes", "list")), &nodes); err != nil || len(nodes.Nodes) != 3 {
		t.Fatalf("nodes list on the restarted proxy: %+v %v", nodes, err)
	}
}
