package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/shardproxy/shardproxy/proxy/admin"
	"github.com/shardproxy/shardproxy/rebalance"
	"github.com/shardproxy/shardproxy/test/pgcluster"
	"github.com/shardproxy/shardproxy/topology"
)

// Online moves driven by shardctl through real shardproxy processes that
// share their topology through Raft: the controller runs on the leader, a
// cutover waits for every proxy to hold the writes, and the moves survive
// the leader being killed.

// moveCluster is nProxies shardproxy processes (one Raft cluster) routing
// over the first `initial` shards of pg, with users and posts distributed
// by user id (moveSchema created through the proxies).
type moveCluster struct {
	pg      *pgcluster.Cluster
	proxies []*ctlProxy
	ctlBin  string
}

func startMoveCluster(t *testing.T, shards, initial, nProxies int) *moveCluster {
	t.Helper()
	pg := pgcluster.StartT(t, pgcluster.Options{Shards: shards})
	dir := t.TempDir()
	proxyBin, ctlBin := ctlBuild(t, dir)
	var shardsYAML strings.Builder
	for _, s := range pg.Shards[:initial] {
		fmt.Fprintf(&shardsYAML, "  - name: %s\n    primary: {host: %s, port: %d}\n", s.Name, s.Primary.Host, s.Primary.Port)
	}
	mc := &moveCluster{pg: pg, ctlBin: ctlBin}
	for i := 0; i < nProxies; i++ {
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
pool: {size: 20}
shards:
%ssharding:
  distributions:
    - {name: users, vnodes: 4}
  tables:
    - {name: users, key: id, distribution: users}
    - {name: posts, key: author_id, distribution: users}
    - {name: notes, key: user_id, distribution: users}
raft:
  node_id: %s
`, listen, adminPort, ctlToken, i+1, shardsYAML.String(), p.name)
		if err := os.WriteFile(p.config, []byte(cfg), 0o644); err != nil {
			t.Fatal(err)
		}
		p.args = []string{"--raft-dir", filepath.Join(dir, p.name+"-raft"), "--raft-bind", fmt.Sprintf("127.0.0.1:%d", raftPort)}
		if i > 0 {
			p.args = append(p.args, "--join", mc.proxies[0].adminURL)
		}
		mc.proxies = append(mc.proxies, p)
	}
	t.Cleanup(func() {
		for _, p := range mc.proxies {
			p.stop()
			if t.Failed() {
				t.Logf("%s output:\n%s", p.name, p.out.String())
			}
		}
	})
	for _, p := range mc.proxies {
		p.start(t)
	}
	ctlWait(t, 60*time.Second, "every proxy a voter with a leader and a topology", func() bool {
		for _, p := range mc.proxies {
			st, err := ctlStatus(p)
			if err != nil || len(st.Nodes) != nProxies || st.Leader == nil || st.TopologyVersion < 1 {
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
	ctx := testCtx(t, 30*time.Second)
	pc := connectPgx(t, ctx, mc.proxies[0].dsn())
	for _, stmt := range strings.Split(moveSchema, ";\n") {
		if _, err := pc.Exec(ctx, stmt); err != nil {
			t.Fatalf("%s: %v", stmt, err)
		}
	}
	return mc
}

// shardctl runs shardctl against p and returns its stdout, or an error with
// its stderr.
func (mc *moveCluster) shardctl(p *ctlProxy, timeout time.Duration, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, mc.ctlBin, append([]string{"--server", p.adminURL}, args...)...)
	cmd.Env = append(os.Environ(), "SHARDCTL_TOKEN="+ctlToken)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.String(), fmt.Errorf("shardctl %v: %v\n%s%s", args, err, stdout.String(), stderr.String())
	}
	return stdout.String(), nil
}

func (mc *moveCluster) mustShardctl(t *testing.T, p *ctlProxy, args ...string) string {
	t.Helper()
	out, err := mc.shardctl(p, 2*time.Minute, args...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// topology returns the snapshot p routes by.
func (mc *moveCluster) topology(t *testing.T, p *ctlProxy) *topology.Snapshot {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var raw json.RawMessage
	if err := p.api().Get(ctx, "/v1/topology", nil, &raw); err != nil {
		t.Fatal(err)
	}
	snap, err := topology.DecodeSnapshot(raw)
	if err != nil {
		t.Fatal(err)
	}
	return snap
}

// leader returns the proxy that leads the Raft cluster, asking the running
// ones.
func (mc *moveCluster) leader(t *testing.T) *ctlProxy {
	t.Helper()
	return mc.leaderOtherThan(t, nil, 15*time.Second)
}

// leaderOtherThan waits up to d for a leader other than not, as the
// running proxies other than not report it (not may be paused and still
// believe it leads).
func (mc *moveCluster) leaderOtherThan(t *testing.T, not *ctlProxy, d time.Duration) *ctlProxy {
	t.Helper()
	var leader *ctlProxy
	ctlWait(t, d, "a Raft leader", func() bool {
		for _, p := range mc.proxies {
			if p == not || !p.running() {
				continue
			}
			st, err := ctlStatus(p)
			if err != nil || st.Leader == nil {
				continue
			}
			for _, q := range mc.proxies {
				if q != not && q.name == st.Leader.ID && q.running() {
					leader = q
					return true
				}
			}
		}
		return false
	})
	return leader
}

// other returns a running proxy other than p.
func (mc *moveCluster) other(p *ctlProxy) *ctlProxy {
	for _, q := range mc.proxies {
		if q != p && q.running() {
			return q
		}
	}
	return nil
}

// env is a moveEnv view of the cluster for checkPlacement and
// assertNoReplicationLeft, with the topology p routes by.
func (mc *moveCluster) env(t *testing.T, p *ctlProxy) *moveEnv {
	return &moveEnv{cluster: mc.pg, store: topology.NewStaticStore(mc.topology(t, p))}
}

// TestRebalanceShardctlThreeProxies adds a shard to two through shardctl
// and rebalances with three proxies sharing the topology, under a
// read/write load through a proxy that is not the leader (so its writes
// are held only because the leader waited for it to see the cutover):
// rebalance plan, start, status --watch, a single move back with move …
// --to, cancel with nothing to cancel, and a move of an unknown
// distribution. Afterwards: zero client errors, every row on the shard the
// topology names and equal to the acknowledged writes, no replication
// objects left.
func TestRebalanceShardctlThreeProxies(t *testing.T) {
	mc := startMoveCluster(t, 3, 2, 3)
	leader := mc.leader(t)
	follower := mc.other(leader)

	stop := make(chan struct{})
	load, wg := runMoveLoad(t, follower.dsn(), 6, 3000, stop)
	stopped := false
	stopLoad := func() {
		if !stopped {
			stopped = true
			close(stop)
			wg.Wait()
		}
	}
	defer stopLoad()

	newShard := mc.pg.Shards[2]
	mc.mustShardctl(t, follower, "shards", "add", newShard.Name, "--primary", newShard.Primary.Addr())

	var plan rebalance.Plan
	if err := json.Unmarshal([]byte(mc.mustShardctl(t, follower, "-o", "json", "rebalance", "plan", "--max-move-bytes", "40000")), &plan); err != nil {
		t.Fatal(err)
	}
	if len(plan.Moves) == 0 || len(plan.Problems) > 0 {
		t.Fatalf("plan: %+v", plan)
	}
	for _, m := range plan.Moves {
		if m.To != newShard.Name || m.Rows == 0 {
			t.Errorf("planned move %+v: want rows moving to %s", m, newShard.Name)
		}
	}
	table := mc.mustShardctl(t, follower, "rebalance", "plan", "--max-move-bytes", "40000")
	t.Logf("shardctl rebalance plan:\n%s", table)
	for _, want := range []string{"FROM", "WHY", newShard.Name, "→"} {
		if !strings.Contains(table, want) {
			t.Errorf("rebalance plan table lacks %q:\n%s", want, table)
		}
	}

	var started admin.MovesStarted
	if err := json.Unmarshal([]byte(mc.mustShardctl(t, follower, "-o", "json", "rebalance", "start", "--max-move-bytes", "40000", "--hold-timeout", "3s")), &started); err != nil {
		t.Fatal(err)
	}
	// start plans again (the load changes the sizes meanwhile), so its
	// moves need not be the ones planned above.
	if len(started.Moves) == 0 {
		t.Fatalf("rebalance start started nothing: %+v", started)
	}
	watched := mc.mustShardctl(t, mc.other(follower), "rebalance", "status", "--watch", "--interval", "200ms")
	for _, id := range started.Moves {
		if !strings.Contains(watched, id) {
			t.Errorf("status --watch never showed move %s:\n%s", id, watched)
		}
	}
	for _, want := range []string{"PHASE", "ROWS COPIED", "LAG", "ETA", "done", "[####################]"} {
		if !strings.Contains(watched, want) {
			t.Errorf("status --watch output lacks %q:\n%s", want, watched)
		}
	}
	var report rebalance.Report
	if err := json.Unmarshal([]byte(mc.mustShardctl(t, follower, "-o", "json", "rebalance", "status")), &report); err != nil {
		t.Fatal(err)
	}
	for _, p := range report.Moves {
		if p.Phase != "done" || p.RowsCopied != p.RowsTotal || p.HoldMS <= 0 {
			t.Errorf("move %s after the rebalance: phase %s, copied %d of %d, hold %.1fms", p.Move.ID, p.Phase, p.RowsCopied, p.RowsTotal, p.HoldMS)
		} else {
			t.Logf("move %s: %d rows, write hold %.1fms", p.Move.ID, p.RowsTotal, p.HoldMS)
		}
	}

	// One range back to shard0 with move --to (bounds after "--": they
	// may be negative).
	snap := mc.topology(t, follower)
	var back topology.Range
	for _, r := range mustDist(t, snap, "users").Ranges {
		if r.Shard == newShard.Name {
			back = r
			break
		}
	}
	if back.Shard == "" {
		t.Fatalf("no range on %s after the rebalance", newShard.Name)
	}
	var moved admin.MovesStarted
	out := mc.mustShardctl(t, follower, "-o", "json", "move", "--to", "shard0", "users", "--", fmt.Sprintf("%d:%d", back.Lo, back.Hi))
	if err := json.Unmarshal([]byte(out), &moved); err != nil || len(moved.Moves) != 1 {
		t.Fatalf("move: %q %v", out, err)
	}
	mc.mustShardctl(t, follower, "-o", "json", "rebalance", "status", "--watch", "--interval", "100ms")
	ctlWait(t, 10*time.Second, "every proxy to route the moved range to shard0", func() bool {
		for _, p := range mc.proxies {
			d, _ := mc.topology(t, p).Distribution("users")
			if i := topology.FindRange(d.Ranges, back.Lo); i < 0 || d.Ranges[i].Shard != "shard0" || len(mc.topology(t, p).Moves()) > 0 {
				return false
			}
		}
		return true
	})
	if out := mc.mustShardctl(t, follower, "rebalance", "cancel"); !strings.Contains(out, "no move to cancel") {
		t.Errorf("rebalance cancel with nothing to cancel: %q", out)
	}
	if _, err := mc.shardctl(follower, 30*time.Second, "move", "--to", "shard0", "nosuch", "0"); err == nil || !strings.Contains(err.Error(), "nosuch") {
		t.Errorf("move of an unknown distribution: %v", err)
	}

	stopLoad()
	if n := load.errors.Load(); n > 0 {
		t.Errorf("%d client errors during the moves (first: %v)", n, load.firstErr.Load())
	}
	if n := load.mismatch.Load(); n > 0 {
		t.Errorf("%d reads did not return the last acknowledged write", n)
	}
	t.Logf("%d operations through %s during the moves", load.ops.Load(), follower.name)
	env := mc.env(t, follower)
	env.checkPlacement(t, load)
	env.assertNoReplicationLeft(t)
}
