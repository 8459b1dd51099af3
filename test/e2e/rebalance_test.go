package e2e

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/shardproxy/shardproxy/proxy"
	"github.com/shardproxy/shardproxy/proxy/config"
	"github.com/shardproxy/shardproxy/rebalance"
	"github.com/shardproxy/shardproxy/router"
	"github.com/shardproxy/shardproxy/test/pgcluster"
	"github.com/shardproxy/shardproxy/topology"
)

// moveEnv is a proxy routing over the first `initial` shards of a cluster
// (the others exist but are not in the topology yet), sharing one topology
// store with a rebalance controller.
type moveEnv struct {
	cluster *pgcluster.Cluster
	store   *topology.StaticStore
	proxy   *runningProxy
	ctrl    *rebalance.Controller
}

var moveSpec = func(vnodes int) topology.Spec {
	return topology.Spec{
		Distributions: []topology.DistributionSpec{{Name: "users", Scheme: topology.Hash, KeyType: topology.Int, VNodes: vnodes}},
		Tables: []topology.TableSpec{
			{Name: "users", Key: "id", Distribution: "users"},
			{Name: "posts", Key: "author_id", Distribution: "users"},
		},
	}
}

const moveSchema = `CREATE TABLE users (id bigint PRIMARY KEY, name text NOT NULL, balance int NOT NULL DEFAULT 0);
CREATE TABLE posts (author_id bigint NOT NULL REFERENCES users (id), id bigint NOT NULL, body text NOT NULL, likes int NOT NULL DEFAULT 0,
	PRIMARY KEY (author_id, id));
CREATE INDEX posts_body_idx ON posts (body)`

func startMoveEnv(t *testing.T, shards, initial, vnodes int, hold time.Duration) *moveEnv {
	t.Helper()
	c := pgcluster.StartT(t, pgcluster.Options{Shards: shards})
	store, p, log := startMoveProxy(t, c, initial, vnodes)
	ctrl, _ := startController(t, store, hold, log)
	return &moveEnv{cluster: c, store: store, proxy: p, ctrl: ctrl}
}

// startController runs a rebalance controller (the leader's) over store
// with the given hold timeout until stop is called or the test ends; stop
// waits until it has ended and may be called more than once.
func startController(t *testing.T, store topology.Store, hold time.Duration, log *slog.Logger) (ctrl *rebalance.Controller, stop func()) {
	t.Helper()
	connect, conninfo := rebalance.Login("postgres", "", 5*time.Second)
	ctrl, err := rebalance.New(rebalance.Options{Store: store, Connect: connect, Conninfo: conninfo, HoldTimeout: hold,
		Poll: 20 * time.Millisecond, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); ctrl.Run(ctx) }()
	var once sync.Once
	stop = func() { once.Do(func() { cancel(); <-done }) }
	t.Cleanup(stop)
	return ctrl, stop
}

// startStoreProxy runs a proxy with cfg whose topology is a static store
// it returns (the test changes the topology through it), with its logger.
func startStoreProxy(t *testing.T, cfg config.Config) (*topology.StaticStore, *runningProxy, *slog.Logger) {
	t.Helper()
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	snap, err := cfg.Topology()
	if err != nil {
		t.Fatal(err)
	}
	store := topology.NewStaticStore(snap)
	log := testLogger()
	return store, serveProxy(t, cfg, proxy.Deps{Logger: log, Topology: store}), log
}

// startMoveProxy starts a proxy routing over the first `initial` shards of
// c with moveSpec(vnodes) in a static store it returns, and creates
// moveSchema through it.
func startMoveProxy(t *testing.T, c *pgcluster.Cluster, initial, vnodes int) (*topology.StaticStore, *runningProxy, *slog.Logger) {
	t.Helper()
	cfg := config.Default()
	cfg.Listen = "127.0.0.1:0"
	cfg.Auth.TrustLoopback = true
	cfg.Pool.Size = 20
	for _, sh := range c.Shards[:initial] {
		cfg.Shards = append(cfg.Shards, config.Shard{Name: sh.Name, Primary: config.Endpoint{Host: sh.Primary.Host, Port: sh.Primary.Port}})
	}
	cfg.Sharding = moveSpec(vnodes)
	store, p, log := startStoreProxy(t, cfg)
	pc := connectPgx(t, testCtx(t, 30*time.Second), p.dsn("postgres"))
	for _, stmt := range strings.Split(moveSchema, ";\n") {
		if _, err := pc.Exec(context.Background(), stmt); err != nil {
			t.Fatalf("%s: %v", stmt, err)
		}
	}
	return store, p, log
}

// addShard puts cluster shard i into the topology.
func (e *moveEnv) addShard(t *testing.T, i int) string {
	t.Helper()
	sh := e.cluster.Shards[i]
	if _, err := e.store.Apply(context.Background(), topology.AddShard{Shard: topology.Shard{Name: sh.Name, Primary: sh.Primary.Addr()}}); err != nil {
		t.Fatal(err)
	}
	return sh.Name
}

// waitMovesDone waits until the topology records no moves.
func (e *moveEnv) waitMovesDone(t *testing.T, d time.Duration) {
	t.Helper()
	if !e.watchTopology(d, func(s *topology.Snapshot) bool { return len(s.Moves()) == 0 }) {
		for _, p := range e.ctrl.Status() {
			t.Logf("move %s: %s copied %d/%d lag %d err %q", p.Move.ID, p.Phase, p.RowsCopied, p.RowsTotal, p.LagBytes, p.LastError)
		}
		t.Fatalf("moves not done after %s", d)
	}
}

// watchTopology calls see with each topology version as the store commits
// it (the current one first) until see returns true (then true) or d
// passes (false).
func (e *moveEnv) watchTopology(d time.Duration, see func(*topology.Snapshot) bool) bool {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	for s := range e.store.Watch(ctx) {
		if see(s) {
			return true
		}
	}
	return false
}

// assertNoReplicationLeft checks every server for publications,
// subscriptions and replication slots left behind by moves.
func (e *moveEnv) assertNoReplicationLeft(t *testing.T) {
	t.Helper()
	ctx := testCtx(t, 30*time.Second)
	for _, sh := range e.cluster.Shards {
		conn := connectPgx(t, ctx, sh.Primary.DSN("postgres"))
		var n int
		if err := conn.QueryRow(ctx, `SELECT (SELECT count(*) FROM pg_replication_slots) + (SELECT count(*) FROM pg_publication) +
			(SELECT count(*) FROM pg_subscription)`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n != 0 {
			t.Errorf("%s: %d replication slots, publications or subscriptions left", sh.Name, n)
		}
	}
}

type userRow struct {
	name    string
	balance int
}

type postRow struct {
	body  string
	likes int
}

// reference is the acknowledged state of one load worker's keys.
type reference struct {
	users map[int64]userRow
	posts map[[2]int64]postRow
}

// moveLoad runs workers that insert, update, delete and read their own keys
// through the proxy until stop is closed, keeping a reference of every
// acknowledged write and checking every read against it.
type moveLoad struct {
	refs     []*reference
	errors   atomic.Int64
	ops      atomic.Int64
	mismatch atomic.Int64
	firstErr atomic.Value
}

func (l *moveLoad) fail(err error) {
	l.errors.Add(1)
	l.firstErr.CompareAndSwap(nil, err.Error())
}

func runMoveLoad(t *testing.T, dsn string, workers int, seedUsers int, stop <-chan struct{}) (*moveLoad, *sync.WaitGroup) {
	t.Helper()
	l := &moveLoad{}
	ctx := context.Background()
	seed := connectPgx(t, ctx, dsn)
	for w := 0; w < workers; w++ {
		l.refs = append(l.refs, &reference{users: map[int64]userRow{}, posts: map[[2]int64]postRow{}})
	}
	// Seed: users id 1..seedUsers with two posts each, split INSERTs.
	for start := 1; start <= seedUsers; start += 200 {
		var us, ps []string
		for id := start; id < start+200 && id <= seedUsers; id++ {
			us = append(us, fmt.Sprintf("(%d, 'user%d', %d)", id, id, id%100))
			ps = append(ps, fmt.Sprintf("(%d, 1, 'hello %d', 0), (%d, 2, 'again %d', 0)", id, id, id, id))
			r := l.refs[id%workers]
			r.users[int64(id)] = userRow{fmt.Sprintf("user%d", id), id % 100}
			r.posts[[2]int64{int64(id), 1}] = postRow{fmt.Sprintf("hello %d", id), 0}
			r.posts[[2]int64{int64(id), 2}] = postRow{fmt.Sprintf("again %d", id), 0}
		}
		for _, q := range []string{"INSERT INTO users VALUES " + strings.Join(us, ","), "INSERT INTO posts VALUES " + strings.Join(ps, ",")} {
			if _, err := seed.Exec(ctx, q); err != nil {
				t.Fatalf("seed: %v", err)
			}
		}
	}
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			conn, err := pgx.Connect(ctx, dsn)
			if err != nil {
				l.fail(err)
				return
			}
			defer conn.Close(ctx)
			rng := rand.New(rand.NewSource(int64(w)))
			ref := l.refs[w]
			next := int64(seedUsers + 1 + w)
			pick := func() (int64, bool) {
				for k := range ref.users {
					return k, true
				}
				return 0, false
			}
			for {
				select {
				case <-stop:
					return
				default:
				}
				l.ops.Add(1)
				id, ok := pick()
				switch op := rng.Intn(10); {
				case op == 0 || !ok: // new user with a post, in a transaction
					id = next
					next += int64(workers)
					name := fmt.Sprintf("new%d", id)
					tx, err := conn.Begin(ctx)
					if err == nil {
						_, err = tx.Exec(ctx, "INSERT INTO users (id, name, balance) VALUES ($1, $2, 5)", id, name)
						if err == nil {
							_, err = tx.Exec(ctx, "INSERT INTO posts (author_id, id, body) VALUES ($1, 1, $2)", id, "first "+name)
						}
						if err == nil {
							err = tx.Commit(ctx)
						} else {
							tx.Rollback(ctx)
						}
					}
					if err != nil {
						l.fail(fmt.Errorf("insert user %d: %w", id, err))
						continue
					}
					ref.users[id] = userRow{name, 5}
					ref.posts[[2]int64{id, 1}] = postRow{"first " + name, 0}
				case op <= 3: // update balance (extended protocol)
					u := ref.users[id]
					u.balance += 7
					if _, err := conn.Exec(ctx, "UPDATE users SET balance = $1 WHERE id = $2", u.balance, id); err != nil {
						l.fail(fmt.Errorf("update user %d: %w", id, err))
						continue
					}
					ref.users[id] = u
				case op == 4: // like a post (simple protocol)
					k := [2]int64{id, 1}
					p, has := ref.posts[k]
					if !has {
						continue
					}
					if _, err := conn.Exec(ctx, fmt.Sprintf("UPDATE posts SET likes = likes + 1 WHERE author_id = %d AND id = 1", id), pgx.QueryExecModeSimpleProtocol); err != nil {
						l.fail(fmt.Errorf("like %d: %w", id, err))
						continue
					}
					p.likes++
					ref.posts[k] = p
				case op == 5: // delete a user and their posts
					tx, err := conn.Begin(ctx)
					if err == nil {
						_, err = tx.Exec(ctx, "DELETE FROM posts WHERE author_id = $1", id)
						if err == nil {
							_, err = tx.Exec(ctx, "DELETE FROM users WHERE id = $1", id)
						}
						if err == nil {
							err = tx.Commit(ctx)
						} else {
							tx.Rollback(ctx)
						}
					}
					if err != nil {
						l.fail(fmt.Errorf("delete user %d: %w", id, err))
						continue
					}
					delete(ref.users, id)
					for k := range ref.posts {
						if k[0] == id {
							delete(ref.posts, k)
						}
					}
				default: // read own row: must equal the last acknowledged write
					var name string
					var balance int
					err := conn.QueryRow(ctx, "SELECT name, balance FROM users WHERE id = $1", id).Scan(&name, &balance)
					if err != nil {
						l.fail(fmt.Errorf("read user %d: %w", id, err))
						continue
					}
					if (userRow{name, balance}) != ref.users[id] {
						l.mismatch.Add(1)
						l.firstErr.CompareAndSwap(nil, fmt.Sprintf("read user %d: got %v, acknowledged %v", id, userRow{name, balance}, ref.users[id]))
					}
				}
			}
		}(w)
	}
	return l, &wg
}

// checkPlacement reads every row from every shard directly and checks that
// each is on exactly the shard the topology names, and that together they
// equal the reference.
func (e *moveEnv) checkPlacement(t *testing.T, l *moveLoad) {
	t.Helper()
	ctx := testCtx(t, 60*time.Second)
	r := router.For(e.store.Current())
	wantUsers := map[int64]userRow{}
	wantPosts := map[[2]int64]postRow{}
	for _, ref := range l.refs {
		for k, v := range ref.users {
			wantUsers[k] = v
		}
		for k, v := range ref.posts {
			wantPosts[k] = v
		}
	}
	gotUsers := map[int64]userRow{}
	gotPosts := map[[2]int64]postRow{}
	misplaced := 0
	for _, name := range e.store.Current().ShardNames() {
		sh, _ := e.store.Current().Shard(name)
		conn := connectPgx(t, ctx, "postgres://postgres@"+sh.Primary+"/postgres?sslmode=disable")
		rows, _ := conn.Query(ctx, "SELECT id, name, balance FROM users")
		var id int64
		var u userRow
		_, err := pgx.ForEachRow(rows, []any{&id, &u.name, &u.balance}, func() error {
			if owner, _ := r.ShardForKey("users", router.IntKey(id)); owner != name {
				misplaced++
			}
			if _, dup := gotUsers[id]; dup {
				t.Errorf("user %d is on two shards", id)
			}
			gotUsers[id] = u
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		rows, _ = conn.Query(ctx, "SELECT author_id, id, body, likes FROM posts")
		var a, pid int64
		var p postRow
		_, err = pgx.ForEachRow(rows, []any{&a, &pid, &p.body, &p.likes}, func() error {
			if owner, _ := r.ShardForKey("users", router.IntKey(a)); owner != name {
				misplaced++
			}
			if _, dup := gotPosts[[2]int64{a, pid}]; dup {
				t.Errorf("post %d/%d is on two shards", a, pid)
			}
			gotPosts[[2]int64{a, pid}] = p
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	if misplaced > 0 {
		t.Errorf("%d rows are on a shard that does not own their key", misplaced)
	}
	diff := func(what string, n int, missing, extra, stale []string) {
		if len(missing)+len(extra)+len(stale) > 0 {
			sort.Strings(missing)
			sort.Strings(extra)
			sort.Strings(stale)
			t.Errorf("%s (%d acknowledged): %d lost %v, %d unexpected %v, %d stale %v", what, n,
				len(missing), head(missing), len(extra), head(extra), len(stale), head(stale))
		}
	}
	var missing, extra, stale []string
	for k, v := range wantUsers {
		if g, ok := gotUsers[k]; !ok {
			missing = append(missing, fmt.Sprint(k))
		} else if g != v {
			stale = append(stale, fmt.Sprintf("%d:%v!=%v", k, g, v))
		}
	}
	for k := range gotUsers {
		if _, ok := wantUsers[k]; !ok {
			extra = append(extra, fmt.Sprint(k))
		}
	}
	diff("users", len(wantUsers), missing, extra, stale)
	missing, extra, stale = nil, nil, nil
	for k, v := range wantPosts {
		if g, ok := gotPosts[k]; !ok {
			missing = append(missing, fmt.Sprint(k))
		} else if g != v {
			stale = append(stale, fmt.Sprintf("%v:%v!=%v", k, g, v))
		}
	}
	for k := range gotPosts {
		if _, ok := wantPosts[k]; !ok {
			extra = append(extra, fmt.Sprint(k))
		}
	}
	diff("posts", len(wantPosts), missing, extra, stale)
}

func head(s []string) []string {
	if len(s) > 5 {
		return s[:5]
	}
	return s
}

// TestRebalanceAddShardUnderLoad adds a fifth shard to four and rebalances
// while workers insert, update, delete and read keys on every range: no
// client errors, every read sees the last acknowledged write, and
// afterwards every row is on the shard the topology names, equal to the
// reference of acknowledged writes; no replication objects are left.
func TestRebalanceAddShardUnderLoad(t *testing.T) {
	e := startMoveEnv(t, 5, 4, 4, 2*time.Second)
	stop := make(chan struct{})
	load, wg := runMoveLoad(t, e.proxy.dsn("postgres"), 8, 3000, stop)
	fanOut := startFanOutReader(t, e.proxy.dsn("postgres"), 500, stop, wg)
	defer func() {
		select {
		case <-stop:
		default:
			close(stop)
		}
		wg.Wait()
	}()
	added := e.addShard(t, 4)
	ctx := testCtx(t, 3*time.Minute)
	plan, err := e.ctrl.PlanNow(ctx, rebalance.PlanRequest{By: "size"})
	if err != nil {
		t.Fatal(err)
	}
	if len(plan.Moves) == 0 {
		t.Fatal("the plan moves nothing to the new shard")
	}
	toNew := 0
	for _, m := range plan.Moves {
		if m.To == added {
			toNew++
		}
		t.Logf("planned: %s → %s, %d ranges, %d rows, %d bytes: %s", m.From, m.To, len(m.Ranges), m.Rows, m.Bytes, m.Reason)
	}
	if toNew == 0 {
		t.Fatalf("no planned move goes to the new shard %s", added)
	}
	ids, err := e.ctrl.StartPlan(ctx, plan, 0)
	if err != nil {
		t.Fatal(err)
	}
	before := load.ops.Load()
	e.waitMovesDone(t, 2*time.Minute)
	close(stop)
	wg.Wait()
	t.Logf("%d moves, %d operations during the rebalance, %d in all", len(ids), load.ops.Load()-before, load.ops.Load())
	for _, p := range e.ctrl.Status() {
		t.Logf("move %s: %s, rows %d copied of %d, %d deleted, hold %.1f ms, last error %q", p.Move.ID, p.Phase, p.RowsCopied, p.RowsTotal, p.RowsDeleted, p.HoldMS, p.LastError)
		if p.Phase != "done" {
			t.Errorf("move %s ended %s", p.Move.ID, p.Phase)
		}
	}
	if n := load.errors.Load(); n > 0 {
		t.Errorf("%d client errors, first: %v", n, load.firstErr.Load())
	}
	if n := load.mismatch.Load(); n > 0 {
		t.Errorf("%d reads did not see the last acknowledged write, first: %v", n, load.firstErr.Load())
	}
	fanOut.check(t)
	load.refs = append(load.refs, fanOut.seeded)
	owned := 0
	for _, r := range mustDist(t, e.store.Current(), "users").Ranges {
		if r.Shard == added {
			owned++
		}
	}
	if owned == 0 {
		t.Errorf("%s owns no range after the rebalance", added)
	}
	e.checkPlacement(t, load)
	e.assertNoReplicationLeft(t)
}

func mustDist(t *testing.T, snap *topology.Snapshot, name string) topology.Distribution {
	d, ok := snap.Distribution(name)
	if !ok {
		t.Fatalf("no distribution %s", name)
	}
	return d
}

// TestRebalanceCancelMidCopy cancels a move while its subscription copies:
// the source is untouched (same rows, same checksum), the target holds none
// of the range, the range is still the source's, and no slot, publication
// or subscription is left.
func TestRebalanceCancelMidCopy(t *testing.T) {
	e := startMoveEnv(t, 2, 1, 1, 2*time.Second)
	target := e.addShard(t, 1)
	ctx := testCtx(t, 2*time.Minute)
	src := connectPgx(t, ctx, e.cluster.Shards[0].Primary.DSN("postgres"))
	if _, err := src.Exec(ctx, `INSERT INTO users SELECT g, 'user' || g, g % 100 FROM generate_series(1, 300000) g`); err != nil {
		t.Fatal(err)
	}
	sum := func(c *pgx.Conn) string {
		var s string
		if err := c.QueryRow(ctx, `SELECT count(*) || '/' || coalesce(sum(hashtextextended(u::text, 0)), 0) FROM users u`).Scan(&s); err != nil {
			t.Fatal(err)
		}
		return s
	}
	before := sum(src)
	d := mustDist(t, e.store.Current(), "users")
	rg := d.Ranges[0]
	id, err := e.ctrl.MoveRange(ctx, rebalance.MoveRequest{Distribution: "users", Lo: rg.Lo, Hi: rg.Hi, To: target})
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, time.Minute, "the move to start copying", func() bool {
		m, ok := e.store.Current().Move(id)
		return ok && m.State == topology.MoveCopying
	})
	if _, err := e.ctrl.Cancel(ctx, id); err != nil {
		t.Fatal(err)
	}
	e.waitMovesDone(t, time.Minute)
	if after := sum(src); after != before {
		t.Errorf("source changed by a cancelled move: %s before, %s after", before, after)
	}
	dst := connectPgx(t, ctx, e.cluster.Shards[1].Primary.DSN("postgres"))
	var n int
	if err := dst.QueryRow(ctx, `SELECT count(*) FROM users`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != 0 {
		t.Errorf("the target kept %d rows of a cancelled move", n)
	}
	if owner, _ := router.For(e.store.Current()).ShardForHash("users", rg.Lo); owner != rg.Shard {
		t.Errorf("range owner after cancel: %s, want %s", owner, rg.Shard)
	}
	for _, p := range e.ctrl.Status() {
		if p.Move.ID == id && p.Phase != "cancelled" {
			t.Errorf("move ended %s, want cancelled", p.Phase)
		}
	}
	e.assertNoReplicationLeft(t)
}
