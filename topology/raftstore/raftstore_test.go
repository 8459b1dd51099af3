package raftstore

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/shardproxy/shardproxy/topology"
)

// ---- helpers ----

// freeAddr returns a 127.0.0.1 address with a port in 61000-65000 that was
// free a moment ago.
func freeAddr(t *testing.T) string {
	t.Helper()
	for range 200 {
		addr := fmt.Sprintf("127.0.0.1:%d", 61000+rand.IntN(4000))
		l, err := net.Listen("tcp", addr)
		if err == nil {
			l.Close()
			return addr
		}
	}
	t.Fatal("no free port in 61000-65000")
	return ""
}

func testLogger() *slog.Logger {
	level := slog.LevelError + 1 // silent unless asked
	if os.Getenv("RAFTSTORE_TEST_LOG") != "" {
		level = slog.LevelDebug
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
}

// node is one cluster member whose Store can be stopped and reopened on
// the same data dir and address.
type node struct {
	t   *testing.T
	cfg Config
	s   *Store
}

func newNode(t *testing.T, id string, bootstrap bool, tune func(*Config)) *node {
	t.Helper()
	cfg := Default()
	cfg.NodeID = id
	cfg.DataDir = t.TempDir()
	cfg.BindAddr = freeAddr(t)
	cfg.Bootstrap = bootstrap
	cfg.Logger = testLogger()
	cfg.ApplyTimeout = 3 * time.Second
	// The production timings (1 s heartbeats): shorter ones make leaders
	// flap when the race detector and other tests load the machine.
	cfg.CommitTimeout = 10 * time.Millisecond
	// A leader keeps its lease as long as a heartbeat may take: with the
	// production 500 ms, a leader of two live nodes stepped down in the
	// middle of a write when CI loaded the machine (TestSnapshotRestore).
	cfg.LeaderLeaseTimeout = cfg.HeartbeatTimeout
	if tune != nil {
		tune(&cfg)
	}
	n := &node{t: t, cfg: cfg}
	n.start()
	t.Cleanup(n.stop)
	return n
}

func (n *node) start() {
	n.t.Helper()
	s, err := Open(n.cfg)
	if err != nil {
		n.t.Fatalf("open %s: %v", n.cfg.NodeID, err)
	}
	n.s = s
}

func (n *node) stop() {
	if n.s != nil {
		if err := n.s.Shutdown(); err != nil {
			n.t.Errorf("shutdown %s: %v", n.cfg.NodeID, err)
		}
		n.s = nil
	}
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", d, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// waitLeader waits until one of the running nodes is a ready leader (its
// LeadershipChanges would say true) and returns it.
func waitLeader(t *testing.T, nodes ...*node) *node {
	t.Helper()
	var leader *node
	waitFor(t, 10*time.Second, "a leader", func() bool {
		for _, n := range nodes {
			if n.s != nil && n.s.IsLeader() && n.s.readyLeader() {
				leader = n
				return true
			}
		}
		return false
	})
	return leader
}

func (s *Store) readyLeader() bool {
	s.leadMu.Lock()
	defer s.leadMu.Unlock()
	return s.ready
}

func waitVersion(t *testing.T, v uint64, nodes ...*node) {
	t.Helper()
	for _, n := range nodes {
		waitFor(t, 10*time.Second, fmt.Sprintf("%s at version %d", n.cfg.NodeID, v), func() bool {
			return n.s.Current().Version() == v
		})
	}
}

func addShard(i int) topology.Command {
	return topology.AddShard{Shard: topology.Shard{Name: fmt.Sprintf("s%02d", i), Primary: fmt.Sprintf("10.0.0.%d:5432", i)}}
}

func apply(t *testing.T, n *node, cmd topology.Command) *topology.Snapshot {
	t.Helper()
	snap, err := n.s.Apply(context.Background(), cmd)
	if err != nil {
		t.Fatalf("apply on %s: %v", n.cfg.NodeID, err)
	}
	return snap
}

func snapJSON(t *testing.T, s *topology.Snapshot) string {
	t.Helper()
	b, err := json.Marshal(s)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func sameTopology(t *testing.T, want *topology.Snapshot, nodes ...*node) {
	t.Helper()
	w := snapJSON(t, want)
	for _, n := range nodes {
		if got := snapJSON(t, n.s.Current()); got != w {
			t.Fatalf("%s has topology\n%s\nwant\n%s", n.cfg.NodeID, got, w)
		}
	}
}

func initialTopology(t *testing.T) *topology.Snapshot {
	t.Helper()
	s, err := topology.NewBuilder(1).AddShard(topology.Shard{Name: "s00", Primary: "10.0.0.100:5432"}).Build()
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// cluster3 starts n1 (bootstrap, seeded with initialTopology) and joins n2
// and n3 as voters.
func cluster3(t *testing.T, tune func(*Config)) []*node {
	t.Helper()
	n1 := newNode(t, "n1", true, func(c *Config) {
		c.Initial = initialTopology(t)
		if tune != nil {
			tune(c)
		}
	})
	n2 := newNode(t, "n2", false, tune)
	n3 := newNode(t, "n3", false, tune)
	waitLeader(t, n1)
	for _, n := range []*node{n2, n3} {
		role, err := n1.s.Join(context.Background(), n.cfg.NodeID, n.s.Addr())
		if err != nil || role != "voter" {
			t.Fatalf("join %s: %q, %v", n.cfg.NodeID, role, err)
		}
	}
	waitVersion(t, 1, n1, n2, n3)
	return []*node{n1, n2, n3}
}

// ---- tests ----

func TestConfigValidate(t *testing.T) {
	c := Default()
	if err := c.Validate(); err == nil {
		t.Fatal("Default() without NodeID/DataDir/BindAddr validated")
	}
	c.NodeID, c.DataDir, c.BindAddr = "n1", t.TempDir(), "127.0.0.1:0"
	if err := c.Validate(); err != nil {
		t.Fatalf("valid config: %v", err)
	}
	bad := c
	bad.AdvertiseAddr = "0.0.0.0:7000"
	if err := bad.Validate(); err == nil || !strings.Contains(err.Error(), "AdvertiseAddr") {
		t.Fatalf("unspecified advertise address accepted: %v", err)
	}
	bad = c
	bad.LeaderLeaseTimeout = 2 * bad.HeartbeatTimeout
	if err := bad.Validate(); err == nil {
		t.Fatal("lease > heartbeat accepted")
	}
	bad = c
	bad.Initial = topology.Empty()
	if err := bad.Validate(); err == nil {
		t.Fatal("Initial at version 0 accepted")
	}
}

// TestSingleNode: a lone node bootstraps itself, seeds Initial, applies
// commands, watches deliver them in order, metrics follow, and a restart
// from the data dir keeps the topology (Initial is not applied again).
func TestSingleNode(t *testing.T) {
	reg := prometheus.NewRegistry()
	n := newNode(t, "solo", true, func(c *Config) {
		c.Initial = initialTopology(t)
		c.Registerer = reg
	})
	waitLeader(t, n)
	waitVersion(t, 1, n)

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	watch := n.s.Watch(ctx)
	seen := make(chan []uint64, 1)
	go func() {
		var vs []uint64
		for snap := range watch {
			vs = append(vs, snap.Version())
			if snap.Version() == 21 {
				break
			}
			time.Sleep(time.Millisecond) // a slow reader: may skip versions
		}
		seen <- vs
	}()

	for i := 1; i <= 20; i++ {
		snap := apply(t, n, addShard(i))
		if snap.Version() != uint64(i+1) || !snap.HasShard(fmt.Sprintf("s%02d", i)) {
			t.Fatalf("apply %d returned version %d", i, snap.Version())
		}
		if n.s.Current() != snap {
			t.Fatalf("Current is not the snapshot Apply returned")
		}
	}
	select {
	case vs := <-seen:
		if vs[0] != 1 || vs[len(vs)-1] != 21 {
			t.Fatalf("watch saw %v, want 1 … 21", vs)
		}
		for i := 1; i < len(vs); i++ {
			if vs[i] <= vs[i-1] {
				t.Fatalf("watch versions not increasing: %v", vs)
			}
		}
	case <-time.After(10 * time.Second):
		t.Fatal("watcher did not reach version 21")
	}

	// Compare-and-swap.
	_, err := n.s.Apply(context.Background(), topology.AddShard{Shard: topology.Shard{Name: "x", Primary: "h:1"}, ExpectVersion: 5})
	var vm *topology.VersionMismatchError
	if !errors.Is(err, topology.ErrVersionMismatch) || !errors.As(err, &vm) || vm.Actual != 21 {
		t.Fatalf("stale ExpectVersion: %v", err)
	}
	_, err = n.s.Apply(context.Background(), addShard(1)) // duplicate shard
	if !errors.Is(err, topology.ErrInvalid) && !errors.Is(err, topology.ErrNotFound) {
		t.Fatalf("duplicate shard: %v", err)
	}
	apply(t, n, topology.AddShard{Shard: topology.Shard{Name: "x", Primary: "h:1"}, ExpectVersion: 21})
	want := n.s.Current()
	if want.Version() != 22 {
		t.Fatalf("version %d after rejected commands, want 22", want.Version())
	}

	if got := gaugeValue(t, reg, "shardproxy_raft_topology_version"); got != 22 {
		t.Fatalf("topology_version metric %v", got)
	}
	if got := gaugeValue(t, reg, "shardproxy_raft_leader"); got != 1 {
		t.Fatalf("leader metric %v", got)
	}

	n.stop()
	if _, ok := <-watch; ok {
		// drain the one buffered value, then it must be closed
		if _, ok := <-watch; ok {
			t.Fatal("watch channel not closed by Shutdown")
		}
	}

	// Restart: same data dir; a different Initial must be ignored.
	n.cfg.Initial, _ = topology.NewBuilder(7).Build()
	n.start()
	waitVersion(t, 22, n)
	sameTopology(t, want, n)
	waitLeader(t, n)
	apply(t, n, addShard(30))
	waitVersion(t, 23, n)
}

func gaugeValue(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name {
			return mf.GetMetric()[0].GetGauge().GetValue()
		}
	}
	t.Fatalf("metric %s not found", name)
	return 0
}

func TestShutdownIdempotent(t *testing.T) {
	n := newNode(t, "solo", true, nil)
	waitLeader(t, n)
	s := n.s
	if err := s.Shutdown(); err != nil {
		t.Fatal(err)
	}
	if err := s.Shutdown(); err != nil {
		t.Fatalf("second Shutdown: %v", err)
	}
	n.s = nil
	if _, err := s.Apply(context.Background(), addShard(1)); !errors.Is(err, ErrClosed) {
		t.Fatalf("Apply after Shutdown: %v", err)
	}
	if s.Current() == nil {
		t.Fatal("Current nil after Shutdown")
	}
	lc := s.LeadershipChanges(context.Background())
	if v, ok := <-lc; !ok || v {
		t.Fatalf("LeadershipChanges after Shutdown: first value %v, %v; want false", v, ok)
	}
	if _, ok := <-lc; ok {
		t.Fatal("LeadershipChanges channel not closed after Shutdown")
	}
	// The data dir can be opened again.
	n.start()
	waitLeader(t, n)
}

// TestCluster: three voters; writes on the leader reach everyone; a
// follower refuses with NotLeaderError; CAS failures change nothing;
// leader loss → re-election, writes continue, the old leader rejoins and
// catches up.
func TestCluster(t *testing.T) {
	nodes := cluster3(t, nil)
	n1, n2, n3 := nodes[0], nodes[1], nodes[2]
	leader := waitLeader(t, nodes...)
	if leader != n1 {
		t.Fatalf("leader is %s, want n1", leader.cfg.NodeID)
	}
	var servers []Server
	waitFor(t, 5*time.Second, "n2 to see 3 servers", func() bool {
		var err error
		servers, err = n2.s.Servers()
		return err == nil && len(servers) == 3
	})
	for _, sv := range servers {
		if sv.Suffrage != "voter" || sv.Leader != (sv.ID == "n1") {
			t.Fatalf("server %+v", sv)
		}
	}

	// A follower's watcher sees every version in order (latest-only).
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	watch := n3.s.Watch(ctx)

	snap := apply(t, n1, addShard(1))
	waitVersion(t, snap.Version(), nodes...)
	sameTopology(t, snap, nodes...)

	// Follower: refuses and names the leader.
	_, err := n2.s.Apply(context.Background(), addShard(2))
	var nl *NotLeaderError
	if !errors.As(err, &nl) || !errors.Is(err, ErrNotLeader) || nl.LeaderID != "n1" || nl.LeaderAddr != n1.s.Addr() {
		t.Fatalf("apply on follower: %v", err)
	}
	if id, addr := n2.s.Leader(); id != "n1" || addr != n1.s.Addr() {
		t.Fatalf("n2.Leader() = %s %s", id, addr)
	}
	if _, err := n2.s.ReadIndex(context.Background()); !errors.Is(err, ErrNotLeader) {
		t.Fatalf("ReadIndex on follower: %v", err)
	}

	// Version mismatch: rejected, nothing changes anywhere. The next good
	// write lands at v+1 on every node, so the rejected entry (between
	// them in the log) changed nothing on any replica.
	v := snap.Version()
	_, err = n1.s.Apply(context.Background(), topology.AddShard{Shard: topology.Shard{Name: "cas", Primary: "h:1"}, ExpectVersion: v - 1})
	if !errors.Is(err, topology.ErrVersionMismatch) {
		t.Fatalf("CAS: %v", err)
	}
	if got := n1.s.Current().Version(); got != v {
		t.Fatalf("version changed to %d by a rejected command", got)
	}
	snap = apply(t, n1, topology.AddShard{Shard: topology.Shard{Name: "cas", Primary: "h:1"}, ExpectVersion: v})
	waitVersion(t, v+1, nodes...)
	sameTopology(t, snap, nodes...)
	if st := n2.s.Status(); st.State != "Follower" || st.LeaderID != "n1" || st.TopologyVersion != v+1 || len(st.Servers) != 3 || st.AppliedIndex == 0 {
		t.Fatalf("n2 status %+v", st)
	}
	read, err := n1.s.ReadIndex(context.Background())
	if err != nil || read.Version() != v+1 {
		t.Fatalf("ReadIndex: %v, %v", read, err)
	}

	// Leadership notifications: n1 is the ready leader; the followers are
	// not, until one of them takes over.
	if v := <-n1.s.LeadershipChanges(ctx); !v {
		t.Fatal("leader's LeadershipChanges starts with false")
	}
	lc := map[*node]<-chan bool{n2: n2.s.LeadershipChanges(ctx), n3: n3.s.LeadershipChanges(ctx)}
	for n, ch := range lc {
		if v := <-ch; v {
			t.Fatalf("follower %s's LeadershipChanges starts with true", n.cfg.NodeID)
		}
	}

	// Leader loss.
	n1.stop()
	start := time.Now()
	newLeader := waitLeader(t, n2, n3)
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("re-election took %s", d)
	}
	select {
	case v := <-lc[newLeader]:
		if !v {
			t.Fatalf("new leader %s got LeadershipChanges false", newLeader.cfg.NodeID)
		}
	case <-time.After(5 * time.Second):
		t.Fatalf("new leader %s got no LeadershipChanges true", newLeader.cfg.NodeID)
	}
	for i := 10; i < 15; i++ {
		snap = apply(t, newLeader, addShard(i))
	}
	waitVersion(t, snap.Version(), n2, n3)

	// The old leader comes back with the same data dir and address and
	// catches up on what it missed.
	n1.start()
	waitVersion(t, snap.Version(), n1)
	sameTopology(t, snap, nodes...)
	leader = waitLeader(t, nodes...)
	snap = apply(t, leader, addShard(20))
	waitVersion(t, snap.Version(), nodes...)
	sameTopology(t, snap, nodes...)

	// What n3's watcher saw.
	var vs []uint64
	for s := range watch {
		vs = append(vs, s.Version())
		if s.Version() == snap.Version() {
			break
		}
	}
	for i := 1; i < len(vs); i++ {
		if vs[i] <= vs[i-1] {
			t.Fatalf("follower watch versions not increasing: %v", vs)
		}
	}
}

// TestJoinPolicy: past MaxVoters a joining node becomes a non-voter; Join
// is idempotent; a non-voter replicates but refuses writes.
func TestJoinPolicy(t *testing.T) {
	tune := func(c *Config) { c.MaxVoters = 1 }
	n1 := newNode(t, "n1", true, func(c *Config) { tune(c); c.Initial = initialTopology(t) })
	n2 := newNode(t, "n2", false, tune)
	waitLeader(t, n1)
	if _, err := n2.s.Join(context.Background(), "n9", "127.0.0.1:1"); !errors.Is(err, ErrNotLeader) && !errors.Is(err, ErrNoQuorum) {
		t.Fatalf("join on a node outside any cluster: %v", err)
	}
	for range 2 {
		role, err := n1.s.Join(context.Background(), "n2", n2.s.Addr())
		if err != nil || role != "nonvoter" {
			t.Fatalf("join: %q %v", role, err)
		}
	}
	snap := apply(t, n1, addShard(1))
	waitVersion(t, snap.Version(), n2)
	if _, err := n2.s.Apply(context.Background(), addShard(2)); !errors.Is(err, ErrNotLeader) {
		t.Fatalf("apply on non-voter: %v", err)
	}
	if err := n1.s.RemoveServer(context.Background(), "n2"); err != nil {
		t.Fatal(err)
	}
	servers, err := n1.s.Servers()
	if err != nil || len(servers) != 1 || servers[0].ID != "n1" {
		t.Fatalf("after remove: %v %v", servers, err)
	}
}

// TestSnapshotRestore: with a tiny snapshot threshold the log is
// compacted; a node that missed those entries catches up by snapshot
// transfer, and restarted nodes restore the same state from disk.
func TestSnapshotRestore(t *testing.T) {
	tune := func(c *Config) {
		c.SnapshotThreshold = 4
		c.TrailingLogs = 2
		c.SnapshotInterval = 50 * time.Millisecond
	}
	nodes := cluster3(t, tune)
	n1, n2, n3 := nodes[0], nodes[1], nodes[2]
	leader := waitLeader(t, nodes...)
	if leader != n1 {
		t.Fatalf("leader %s", leader.cfg.NodeID)
	}
	n3.stop()
	var snap *topology.Snapshot
	for i := 1; i <= 12; i++ {
		snap = apply(t, n1, addShard(i))
	}
	if err := n1.s.Snapshot(); err != nil {
		t.Fatalf("Snapshot: %v", err)
	}
	if err := n2.s.Snapshot(); err != nil {
		t.Fatalf("Snapshot on follower: %v", err)
	}
	first, err := n1.s.bolt.FirstIndex()
	if err != nil {
		t.Fatal(err)
	}
	n3last := uint64(0)
	{
		// n3 is stopped; read its log's last index from disk.
		s, err := Open(n3.cfg)
		if err != nil {
			t.Fatal(err)
		}
		n3last, _ = s.bolt.LastIndex()
		_ = s.Shutdown()
	}
	if first <= n3last+1 {
		t.Fatalf("log not compacted past n3's end (first %d, n3 last %d): no snapshot transfer would be tested", first, n3last)
	}

	n3.start()
	waitVersion(t, snap.Version(), n3)
	sameTopology(t, snap, nodes...)

	// Restart everyone: each restores its snapshot plus trailing log.
	for _, n := range nodes {
		n.stop()
	}
	for _, n := range nodes {
		n.start()
	}
	leader = waitLeader(t, nodes...)
	waitVersion(t, snap.Version(), nodes...)
	sameTopology(t, snap, nodes...)
	snap = apply(t, leader, addShard(40))
	waitVersion(t, snap.Version(), nodes...)
}

// TestNoQuorum: with two of three nodes down, writes fail within
// ApplyTimeout with the read-only message while Current keeps the last
// snapshot; writes resume when a quorum is back.
func TestNoQuorum(t *testing.T) {
	nodes := cluster3(t, func(c *Config) { c.ApplyTimeout = 1500 * time.Millisecond })
	n1, n2, n3 := nodes[0], nodes[1], nodes[2]
	waitLeader(t, nodes...)
	last := apply(t, n1, addShard(1))
	waitVersion(t, last.Version(), nodes...)
	n2.stop()
	n3.stop()

	for i := range 2 { // first while n1 still believes it leads, then as candidate
		start := time.Now()
		_, err := n1.s.Apply(context.Background(), addShard(2+i))
		elapsed := time.Since(start)
		if !errors.Is(err, ErrNoQuorum) {
			t.Fatalf("attempt %d: want ErrNoQuorum, got %v", i, err)
		}
		msg := err.Error()
		if !strings.Contains(msg, "topology is read-only: no Raft quorum") ||
			!strings.Contains(msg, fmt.Sprintf("routing continues with version %d", last.Version())) {
			t.Fatalf("message: %s", msg)
		}
		if elapsed > n1.cfg.ApplyTimeout+time.Second {
			t.Fatalf("attempt %d took %s (ApplyTimeout %s)", i, elapsed, n1.cfg.ApplyTimeout)
		}
		if n1.s.Current() != last {
			t.Fatalf("Current changed without quorum")
		}
	}
	// Watch still works for routing.
	ctx, cancel := context.WithCancel(context.Background())
	if s := <-n1.s.Watch(ctx); s != last {
		t.Fatal("watch does not start with the last snapshot")
	}
	cancel()

	// Quorum back: writes resume.
	n2.start()
	leader := waitLeader(t, n1, n2)
	var snap *topology.Snapshot
	waitFor(t, 10*time.Second, "a write to succeed", func() bool {
		s, err := leader.s.Apply(context.Background(), addShard(9))
		if err != nil {
			return false
		}
		snap = s
		return true
	})
	waitVersion(t, snap.Version(), n1, n2)
}

// TestRestartWithoutQuorum: a node restarted while the rest of the
// cluster is down serves the last topology it applied at once (not its
// older Raft snapshot), and refuses writes.
func TestRestartWithoutQuorum(t *testing.T) {
	// The test nodes' 3 s ApplyTimeout: with 1 s, joining a voter on a
	// loaded CI machine sometimes did not commit in time.
	nodes := cluster3(t, nil)
	leader := waitLeader(t, nodes...)
	var last *topology.Snapshot
	for i := 1; i <= 5; i++ {
		last = apply(t, leader, addShard(i))
	}
	waitVersion(t, last.Version(), nodes...)
	for _, n := range nodes {
		n.stop()
	}
	n2 := nodes[1]
	n2.start()
	if got := n2.s.Current().Version(); got != last.Version() {
		t.Fatalf("restarted alone: serving version %d, want %d", got, last.Version())
	}
	sameTopology(t, last, n2)
	if _, err := n2.s.Apply(context.Background(), addShard(9)); !errors.Is(err, ErrNoQuorum) {
		t.Fatalf("apply without quorum: %v", err)
	}
	// Quorum back: the FSM replays behind the served version and goes on.
	nodes[2].start()
	l := waitLeader(t, n2, nodes[2])
	snap := apply(t, l, addShard(10))
	if snap.Version() != last.Version()+1 {
		t.Fatalf("version after restart %d, want %d", snap.Version(), last.Version()+1)
	}
	waitVersion(t, snap.Version(), n2, nodes[2])
}

// TestFSM covers the FSM directly: snapshot round trip and the panic on an
// undecodable entry.
func TestFSM(t *testing.T) {
	f := newFSM(newHub(topology.Empty()), nil)
	init := initialTopology(t)
	b, _ := json.Marshal(init)
	if r := f.Apply(&raft.Log{Index: 1, Data: append([]byte{entryInitial}, b...)}); r != nil {
		if _, ok := r.(*topology.Snapshot); !ok {
			t.Fatalf("initial: %v", r)
		}
	}
	if r := f.Apply(&raft.Log{Index: 2, Data: append([]byte{entryInitial}, b...)}); r != ErrAlreadyInitialized {
		t.Fatalf("second initial: %v", r)
	}
	cmd, _ := topology.EncodeCommand(addShard(1))
	if r, ok := f.Apply(&raft.Log{Index: 3, Data: append([]byte{entryCommand}, cmd...)}).(*topology.Snapshot); !ok || r.Version() != 2 {
		t.Fatalf("command: %v", r)
	}
	fs, _ := f.Snapshot()
	sink := &memSink{}
	if err := fs.Persist(sink); err != nil || !sink.closed {
		t.Fatalf("persist: %v", err)
	}
	g := newFSM(newHub(topology.Empty()), nil)
	if err := g.Restore(sink); err != nil {
		t.Fatal(err)
	}
	if snapJSON(t, g.hub.cur.Load()) != snapJSON(t, f.hub.cur.Load()) || g.state.Load() != g.hub.cur.Load() {
		t.Fatal("restore differs")
	}
	if err := g.Restore(&memSink{Buffer: *bytes.NewBufferString(`{"format":1,"topology":{"version":3,"shards":[{"name":"a"}]}}`)}); err == nil {
		t.Fatal("restore accepted an invalid topology")
	}

	for _, data := range [][]byte{nil, {9}, append([]byte{entryCommand}, `{"type":"nope"}`...)} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("entry %q did not panic", data)
				}
			}()
			f.Apply(&raft.Log{Index: 4, Data: data})
		}()
	}
}

type memSink struct {
	bytes.Buffer
	closed bool
}

func (m *memSink) ID() string    { return "mem" }
func (m *memSink) Cancel() error { return nil }
func (m *memSink) Close() error  { m.closed = true; return nil }
