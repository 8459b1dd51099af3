package admin

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/shardproxy/shardproxy/test/wait"
	"github.com/shardproxy/shardproxy/topology"
	"github.com/shardproxy/shardproxy/topology/raftstore"
)

// ---- an in-process cluster of raftstore nodes, each with its admin API ----

func testLogger() *slog.Logger {
	level := slog.LevelError + 1
	if os.Getenv("ADMIN_TEST_LOG") != "" {
		level = slog.LevelDebug
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
}

// freeAddr returns a loopback address with a port from 61000 up that was
// free a moment ago.
func freeAddr(t *testing.T) string {
	t.Helper()
	for range 200 {
		addr := fmt.Sprintf("127.0.0.1:%d", 61000+rand.IntN(4000))
		if l, err := net.Listen("tcp", addr); err == nil {
			l.Close()
			return addr
		}
	}
	t.Fatal("no free port in 61000-65000")
	return ""
}

// initialTopology: shards s0 and s1 (unreachable unless given), table users
// hash-distributed by id.
func initialTopology(t *testing.T, primaries ...string) *topology.Snapshot {
	t.Helper()
	if len(primaries) == 0 {
		primaries = []string{"127.0.0.1:1", "127.0.0.1:2"}
	}
	var shards []topology.ShardSpec
	for i, p := range primaries {
		shards = append(shards, topology.ShardSpec{Name: fmt.Sprintf("s%d", i), Primary: p})
	}
	snap, err := topology.Build(shards, topology.Spec{
		Distributions: []topology.DistributionSpec{{Name: "users", VNodes: 4}},
		Tables:        []topology.TableSpec{{Name: "users", Key: "id", Distribution: "users"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	return snap
}

type testNode struct {
	t     *testing.T
	id    string
	store *raftstore.Store
	api   *Server
	http  *httptest.Server
	url   string
	reg   *prometheus.Registry
	stop  context.CancelFunc
	once  sync.Once
}

type nodeOpts struct {
	token     string
	initial   *topology.Snapshot
	shardConn ShardConnFunc
	maxVoters int
}

func startNode(t *testing.T, id string, bootstrap bool, o nodeOpts) *testNode {
	t.Helper()
	cfg := raftstore.Default()
	cfg.NodeID = id
	cfg.DataDir = t.TempDir()
	cfg.BindAddr = freeAddr(t)
	cfg.Bootstrap = bootstrap
	cfg.Initial = o.initial
	cfg.Logger = testLogger()
	cfg.ApplyTimeout = 2 * time.Second
	// The production timings (1 s heartbeats): shorter ones make leaders
	// flap when the race detector and other tests load the machine.
	cfg.CommitTimeout = 10 * time.Millisecond
	if o.maxVoters > 0 {
		cfg.MaxVoters = o.maxVoters
	}
	st, err := raftstore.Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	n := &testNode{t: t, id: id, store: st, reg: prometheus.NewRegistry()}
	var h http.Handler
	n.http = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { h.ServeHTTP(w, r) }))
	n.url = n.http.URL
	api, err := New(Options{
		Store: st, Cluster: st, AdvertiseURL: n.url, Token: o.token,
		PeersFile: filepath.Join(cfg.DataDir, "admin-peers.json"),
		ShardConn: o.shardConn, Logger: testLogger(), Registerer: n.reg,
		LeaderWait: 2 * time.Second, SyncInterval: 200 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	n.api = api
	h = api.Handler()
	ctx, cancel := context.WithCancel(context.Background())
	n.stop = cancel
	go api.Run(ctx)
	t.Cleanup(n.kill)
	return n
}

// kill stops the node's HTTP server and Raft (like a crash, minus the
// data loss).
func (n *testNode) kill() {
	n.once.Do(func() {
		n.stop()
		n.http.CloseClientConnections()
		n.http.Close()
		if err := n.store.Shutdown(); err != nil {
			n.t.Errorf("shutdown %s: %v", n.id, err)
		}
	})
}

func (n *testNode) client(token string) *Client {
	return &Client{BaseURL: n.url, Token: token, RetryFor: 3 * time.Second}
}

// startCluster starts n nodes: the first bootstraps, the others join
// through the admin API of the first.
func startCluster(t *testing.T, size int, o nodeOpts) []*testNode {
	t.Helper()
	if o.initial == nil {
		o.initial = initialTopology(t)
	}
	nodes := []*testNode{startNode(t, "n0", true, o)}
	waitFor(t, 10*time.Second, "n0 to lead with the initial topology", func() bool {
		return nodes[0].store.IsLeader() && nodes[0].store.Current().Version() >= 1
	})
	for i := 1; i < size; i++ {
		n := startNode(t, fmt.Sprintf("n%d", i), false, nodeOpts{token: o.token, shardConn: o.shardConn, maxVoters: o.maxVoters})
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		if err := n.api.JoinCluster(ctx, []string{nodes[0].url}); err != nil {
			cancel()
			t.Fatalf("join %s: %v", n.id, err)
		}
		cancel()
		nodes = append(nodes, n)
	}
	for _, n := range nodes {
		waitFor(t, 10*time.Second, n.id+" to apply the initial topology", func() bool { return n.store.Current().Version() >= 1 })
	}
	return nodes
}

func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	wait.Until(t, d, what, cond)
}

func leaderOf(t *testing.T, nodes []*testNode) *testNode {
	t.Helper()
	var l *testNode
	waitFor(t, 10*time.Second, "a leader", func() bool {
		for _, n := range nodes {
			if n.store.State() != "Shutdown" && n.store.IsLeader() {
				l = n
				return true
			}
		}
		return false
	})
	return l
}

func followers(nodes []*testNode, leader *testNode) []*testNode {
	var out []*testNode
	for _, n := range nodes {
		if n != leader && n.store.State() != "Shutdown" {
			out = append(out, n)
		}
	}
	return out
}

// keyOwner asks node for the owner of users key k.
func keyOwner(t *testing.T, n *testNode, k string) KeyAnswer {
	t.Helper()
	var ans KeyAnswer
	if err := n.client("").Get(context.Background(), "/v1/key", url.Values{"table": {"users"}, "value": {k}}, &ans); err != nil {
		t.Fatalf("key %s on %s: %v", k, n.id, err)
	}
	return ans
}

// otherShard returns the shard that does not own key k by its range.
func otherShard(t *testing.T, n *testNode, k string) string {
	if keyOwner(t, n, k).Shard == "s0" {
		return "s1"
	}
	return "s0"
}

func apiErr(t *testing.T, err error) *APIError {
	t.Helper()
	var ae *APIError
	if !errors.As(err, &ae) {
		t.Fatalf("want an *APIError, got %T %v", err, err)
	}
	return ae
}

// ---- tests ----

// A write sent to a follower is forwarded to the leader, committed, and
// then visible on every node; the follower that forwarded it answers with
// the new version at once (read your writes).
func TestFollowerWriteForwardedAndVisibleEverywhere(t *testing.T) {
	nodes := startCluster(t, 3, nodeOpts{})
	leader := leaderOf(t, nodes)
	f := followers(nodes, leader)[0]
	target := otherShard(t, f, "1001")

	var res WriteResult
	err := f.client("").Do(context.Background(), http.MethodPut, "/v1/directory",
		DirectoryRequest{Table: "users", Key: "1001", Shard: target}, &res)
	if err != nil {
		t.Fatal(err)
	}
	if res.Version < 2 || !strings.Contains(res.Message, target) {
		t.Fatalf("write result %+v", res)
	}
	if ans := keyOwner(t, f, "1001"); ans.Shard != target || ans.Reason != "override" || ans.Version < res.Version {
		t.Fatalf("forwarding follower answers %+v right after the write; want %s by override at version >= %d", ans, target, res.Version)
	}
	start := time.Now()
	for _, n := range nodes {
		wait.Until(t, time.Second-time.Since(start), n.id+" to answer the override a second after the write", func() bool {
			ans := keyOwner(t, n, "1001")
			return ans.Shard == target && ans.Reason == "override"
		})
	}
	mfs, err := f.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			got[mf.GetName()] += m.GetCounter().GetValue() + m.GetGauge().GetValue()
		}
	}
	if got["shardproxy_admin_forwarded_total"] != 1 || got["shardproxy_topology_version"] < float64(res.Version) {
		t.Errorf("follower metrics: forwarded %v, topology version %v (want 1, >= %d)",
			got["shardproxy_admin_forwarded_total"], got["shardproxy_topology_version"], res.Version)
	}

	// Unset through another follower; status on every node lists all three.
	f2 := followers(nodes, leader)[1]
	if err := f2.client("").Do(context.Background(), http.MethodDelete, "/v1/directory",
		DirectoryRequest{Table: "users", Key: "1001"}, nil); err != nil {
		t.Fatal(err)
	}
	if ans := keyOwner(t, f2, "1001"); ans.Reason != "range" {
		t.Fatalf("after unset: %+v", ans)
	}
	var st Status
	if err := f2.client("").Get(context.Background(), "/v1/status", url.Values{"health": {"0"}}, &st); err != nil {
		t.Fatal(err)
	}
	if len(st.Nodes) != 3 || st.Leader == nil || st.Leader.ID != leader.id || st.Mode != "raft" {
		t.Fatalf("status nodes/leader: %+v", st)
	}
	for _, n := range st.Nodes {
		if n.AdminURL == "" || n.Suffrage != "voter" {
			t.Errorf("node %+v: want a voter with a known admin URL", n)
		}
	}
}

// When the leader dies, the others elect a new one and writes sent to a
// follower reach it.
func TestLeaderLossWritesReachNewLeader(t *testing.T) {
	nodes := startCluster(t, 3, nodeOpts{})
	old := leaderOf(t, nodes)
	// Every node knows every admin URL before the leader goes.
	for _, n := range nodes {
		waitFor(t, 5*time.Second, n.id+" to know all admin URLs", func() bool { return len(n.api.peers.all()) == 3 })
	}
	old.kill()
	start := time.Now()
	rest := followers(nodes, old)
	leader := leaderOf(t, rest)
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("new leader after %s", d)
	}
	f := followers(rest, leader)[0]
	target := otherShard(t, f, "77")
	if err := f.client("").Do(context.Background(), http.MethodPut, "/v1/directory",
		DirectoryRequest{Table: "users", Key: "77", Shard: target}, nil); err != nil {
		t.Fatalf("write after leader loss: %v", err)
	}
	if ans := keyOwner(t, f, "77"); ans.Shard != target {
		t.Fatalf("after write: %+v", ans)
	}
	// nodes remove of the dead node, then it is gone from the list.
	if err := f.client("").Do(context.Background(), http.MethodDelete, "/v1/nodes/"+old.id, nil, nil); err != nil {
		t.Fatal(err)
	}
	var ns Nodes
	if err := f.client("").Get(context.Background(), "/v1/nodes", nil, &ns); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 2*time.Second, "removed node gone", func() bool {
		_ = f.client("").Get(context.Background(), "/v1/nodes", nil, &ns)
		return len(ns.Nodes) == 2
	})
}

// Without a quorum, reads keep working and writes fail with no_quorum and
// a hint.
func TestNoQuorumIsReadOnly(t *testing.T) {
	nodes := startCluster(t, 3, nodeOpts{})
	leader := leaderOf(t, nodes)
	fs := followers(nodes, leader)
	leader.kill()
	fs[0].kill()
	n := fs[1]
	before := n.store.Current().Version()
	err := n.client("").Do(context.Background(), http.MethodPost, "/v1/shards", ShardRequest{Name: "s9", Primary: "127.0.0.1:9"}, nil)
	ae := apiErr(t, err)
	if ae.Status != http.StatusServiceUnavailable || (ae.Code != CodeNoQuorum && ae.Code != CodeNotLeader) || ae.Hint == "" {
		t.Fatalf("write without quorum: %+v", ae)
	}
	if ans := keyOwner(t, n, "5"); ans.Version != before || ans.Shard == "" {
		t.Fatalf("read without quorum: %+v", ans)
	}
}

func TestErrorsAreClassified(t *testing.T) {
	nodes := startCluster(t, 1, nodeOpts{})
	c := nodes[0].client("")
	ctx := context.Background()
	cur := nodes[0].store.Current().Version()

	err := c.Do(ctx, http.MethodPut, "/v1/directory", DirectoryRequest{Table: "users", Key: "1", Shard: "s1", ExpectVersion: cur + 5}, nil)
	if ae := apiErr(t, err); ae.Status != http.StatusConflict || ae.Code != CodeVersionMismatch {
		t.Errorf("version mismatch: %+v", ae)
	}
	err = c.Do(ctx, http.MethodDelete, "/v1/shards/s1", nil, nil)
	if ae := apiErr(t, err); ae.Status != http.StatusUnprocessableEntity || ae.Code != CodeInvalid || !strings.Contains(ae.Msg, "owns range") {
		t.Errorf("remove shard with data: %+v", ae)
	}
	err = c.Do(ctx, http.MethodDelete, "/v1/shards/nope", nil, nil)
	if ae := apiErr(t, err); ae.Status != http.StatusNotFound {
		t.Errorf("remove unknown shard: %+v", ae)
	}
	err = c.Do(ctx, http.MethodPut, "/v1/directory", DirectoryRequest{Table: "users", Key: "1", Shard: "nope"}, nil)
	if ae := apiErr(t, err); ae.Status != http.StatusNotFound || !strings.Contains(ae.Hint, "shards list") {
		t.Errorf("override to unknown shard: %+v", ae)
	}
	err = c.Do(ctx, http.MethodPost, "/v1/shards", map[string]any{"name": "x", "primry": "h:1"}, nil)
	if ae := apiErr(t, err); ae.Status != http.StatusBadRequest {
		t.Errorf("unknown JSON field: %+v", ae)
	}
	err = c.Get(ctx, "/v1/key", url.Values{"table": {"users"}, "value": {"abc"}}, nil)
	if ae := apiErr(t, err); ae.Status != http.StatusBadRequest || !strings.Contains(ae.Msg, "int") {
		t.Errorf("bad key: %+v", ae)
	}
	err = c.Get(ctx, "/v1/nope", nil, nil)
	if ae := apiErr(t, err); ae.Status != http.StatusNotFound || ae.Code != CodeNotFound {
		t.Errorf("unknown endpoint: %+v", ae)
	}
	// The writes that failed changed nothing.
	if v := nodes[0].store.Current().Version(); v != cur {
		t.Errorf("version moved from %d to %d on failed writes", cur, v)
	}

	// And a few that work: add a shard, distribute a table onto it, a
	// reference table, explain keys of each kind.
	if err := c.Do(ctx, http.MethodPost, "/v1/shards", ShardRequest{Name: "s2", Primary: "127.0.0.1:3"}, nil); err != nil {
		t.Fatal(err)
	}
	if err := c.Do(ctx, http.MethodPost, "/v1/tables/distribute", DistributeRequest{Table: "events", KeyColumn: "tenant", KeyType: "text", Shards: []string{"s2"}}, nil); err != nil {
		t.Fatal(err)
	}
	if err := c.Do(ctx, http.MethodPost, "/v1/tables/reference", ReferenceRequest{Table: "countries"}, nil); err != nil {
		t.Fatal(err)
	}
	var ans KeyAnswer
	if err := c.Get(ctx, "/v1/key", url.Values{"table": {"events"}, "value": {"acme"}}, &ans); err != nil || ans.Shard != "s2" || ans.Hash == nil || ans.Distribution != "events" {
		t.Errorf("events key: %+v %v", ans, err)
	}
	if err := c.Get(ctx, "/v1/key", url.Values{"table": {"countries"}, "value": {"x"}}, &ans); err != nil || len(ans.Shards) != 3 || ans.Kind != "reference" {
		t.Errorf("reference key: %+v %v", ans, err)
	}
	if err := c.Get(ctx, "/v1/key", url.Values{"table": {"whatever"}, "value": {"x"}}, &ans); err != nil || ans.Shard != "s0" || ans.Reason != "default_shard" {
		t.Errorf("other table key: %+v %v", ans, err)
	}
	var tables Tables
	if err := c.Get(ctx, "/v1/tables", nil, &tables); err != nil || len(tables.Tables) != 3 || len(tables.Distributions) != 2 {
		t.Errorf("tables: %+v %v", tables, err)
	}
}

func TestAuth(t *testing.T) {
	nodes := startCluster(t, 2, nodeOpts{token: "s3cret"})
	ctx := context.Background()
	for _, tok := range []string{"", "wrong"} {
		err := nodes[1].client(tok).Get(ctx, "/v1/status", nil, nil)
		if ae := apiErr(t, err); ae.Status != http.StatusUnauthorized || ae.Hint == "" {
			t.Errorf("token %q: %+v", tok, ae)
		}
	}
	if err := nodes[1].client("s3cret").Get(ctx, "/v1/status", url.Values{"health": {"0"}}, nil); err != nil {
		t.Fatal(err)
	}
	// Forwarded writes carry the token.
	f := followers(nodes, leaderOf(t, nodes))[0]
	if err := f.client("s3cret").Do(ctx, http.MethodPut, "/v1/directory", DirectoryRequest{Table: "users", Key: "9", Shard: "s1"}, nil); err != nil {
		t.Fatal(err)
	}
	// Health endpoints are open.
	resp, err := http.Get(nodes[1].url + "/healthz")
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("healthz: %v %v", resp, err)
	}
	resp.Body.Close()

	// Without a token only loopback clients may call /v1.
	open, err := New(Options{Store: topology.NewStaticStore(initialTopology(t))})
	if err != nil {
		t.Fatal(err)
	}
	r := httptest.NewRequest(http.MethodGet, "/v1/status", nil)
	r.RemoteAddr = "10.1.2.3:4444"
	w := httptest.NewRecorder()
	open.Handler().ServeHTTP(w, r)
	if w.Code != http.StatusForbidden || !strings.Contains(w.Body.String(), "admin_token") {
		t.Errorf("remote client without token: %d %s", w.Code, w.Body)
	}
	r.RemoteAddr = "127.0.0.1:4444"
	w = httptest.NewRecorder()
	open.Handler().ServeHTTP(w, r)
	if w.Code != http.StatusOK {
		t.Errorf("loopback client without token: %d %s", w.Code, w.Body)
	}
}

func TestStaticModeAndReadyz(t *testing.T) {
	store := topology.NewStaticStore(initialTopology(t))
	var notServing error = errors.New("not accepting clients")
	var mu sync.Mutex
	api, err := New(Options{Store: store, Ready: func() error { mu.Lock(); defer mu.Unlock(); return notServing }})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(api.Handler())
	defer srv.Close()
	get := func(path string) (int, Readiness) {
		resp, err := http.Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var rd Readiness
		_ = json.NewDecoder(resp.Body).Decode(&rd)
		return resp.StatusCode, rd
	}
	if code, rd := get("/readyz"); code != 503 || rd.Ready || len(rd.Reasons) != 1 {
		t.Errorf("readyz while not serving: %d %+v", code, rd)
	}
	mu.Lock()
	notServing = nil
	mu.Unlock()
	if code, rd := get("/readyz"); code != 200 || !rd.Ready {
		t.Errorf("readyz while serving: %d %+v", code, rd)
	}
	c := &Client{BaseURL: srv.URL}
	var res WriteResult
	if err := c.Do(context.Background(), http.MethodPut, "/v1/directory", DirectoryRequest{Distribution: "users", Key: "3", Shard: "s1"}, &res); err != nil {
		t.Fatal(err)
	}
	if res.Warning == "" || store.Current().Version() != 2 {
		t.Errorf("static write: %+v, version %d", res, store.Current().Version())
	}
	var ns Nodes
	if err := c.Get(context.Background(), "/v1/nodes", nil, &ns); err != nil || ns.Mode != "static" {
		t.Errorf("nodes: %+v %v", ns, err)
	}
	err = c.Do(context.Background(), http.MethodDelete, "/v1/nodes/x", nil, nil)
	if ae := apiErr(t, err); ae.Status != 400 {
		t.Errorf("nodes remove in static mode: %+v", ae)
	}

	empty, _ := New(Options{Store: topology.NewStaticStore(nil)})
	w := httptest.NewRecorder()
	empty.Handler().ServeHTTP(w, httptest.NewRequest(http.MethodGet, "/readyz", nil))
	if w.Code != 503 || !strings.Contains(w.Body.String(), "no topology") {
		t.Errorf("readyz without topology: %d %s", w.Code, w.Body)
	}
}

func TestPeerDirMergeAndPersist(t *testing.T) {
	file := filepath.Join(t.TempDir(), "peers.json")
	p := newPeerDir("a", "http://a", file, testLogger())
	p.set("b", "http://b1")
	p.merge("c", map[string]string{"a": "http://wrong", "b": "http://b-stale", "c": "http://c", "d": "http://d"})
	want := map[string]string{"a": "http://a", "b": "http://b1", "c": "http://c", "d": "http://d"}
	if got := p.all(); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("after merge: %v, want %v", got, want)
	}
	p.merge("b", map[string]string{"b": "http://b2"}) // b's own entry wins
	p.remove("d")
	q := newPeerDir("a", "http://a", file, testLogger())
	want = map[string]string{"a": "http://a", "b": "http://b2", "c": "http://c"}
	if got := q.all(); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("reloaded: %v, want %v", got, want)
	}
}

func newTestServer(t *testing.T, api *Server) string {
	t.Helper()
	srv := httptest.NewServer(api.Handler())
	t.Cleanup(srv.Close)
	return srv.URL
}

// Past max voters, proxies join as non-voters: they get every change but
// do not count for the quorum.
func TestJoinBeyondMaxVotersIsNonvoter(t *testing.T) {
	nodes := startCluster(t, 3, nodeOpts{maxVoters: 2})
	var ns Nodes
	if err := nodes[2].client("").Get(context.Background(), "/v1/nodes", nil, &ns); err != nil {
		t.Fatal(err)
	}
	roles := map[string]string{}
	for _, n := range ns.Nodes {
		roles[n.ID] = n.Suffrage
	}
	if roles["n0"] != "voter" || roles["n1"] != "voter" || roles["n2"] != "nonvoter" {
		t.Fatalf("suffrage: %v", roles)
	}
	// A write through the non-voter reaches the leader and comes back.
	if err := nodes[2].client("").Do(context.Background(), http.MethodPut, "/v1/directory",
		DirectoryRequest{Table: "users", Key: "8", Shard: "s1"}, nil); err != nil {
		t.Fatal(err)
	}
	if ans := keyOwner(t, nodes[2], "8"); ans.Shard != "s1" || ans.Reason != "override" {
		t.Fatalf("non-voter after write: %+v", ans)
	}
}
