package e2e

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/shardproxy/shardproxy/proxy/config"
	"github.com/shardproxy/shardproxy/router"
	"github.com/shardproxy/shardproxy/test/pgcluster"
	"github.com/shardproxy/shardproxy/topology"
)

// shardedEnv is a proxy over four shards with users/posts distributed by
// user id and countries as a reference table.
type shardedEnv struct {
	cluster *pgcluster.Cluster
	proxy   *runningProxy
	snap    *topology.Snapshot
	direct  map[string]*pgx.Conn // shard name → direct connection
	names   []string
}

var shardedSpec = topology.Spec{
	Distributions: []topology.DistributionSpec{{Name: "users", Scheme: topology.Hash, KeyType: topology.Int}},
	Tables: []topology.TableSpec{
		{Name: "users", Key: "id", Distribution: "users"},
		{Name: "posts", Key: "author_id", Distribution: "users"},
		{Name: "countries", Kind: topology.Reference},
	},
}

func startSharded(t *testing.T) *shardedEnv {
	t.Helper()
	c := pgcluster.StartT(t, pgcluster.Options{Shards: 4})
	var cfg config.Config
	p := startProxy(t, c, func(cc *config.Config) {
		cc.Sharding = shardedSpec
		cc.Pool.Size = 10
		cfg = *cc
	})
	snap, err := cfg.Topology()
	if err != nil {
		t.Fatal(err)
	}
	env := &shardedEnv{cluster: c, proxy: p, snap: snap, direct: map[string]*pgx.Conn{}}
	ctx := testCtx(t, 30*time.Second)
	for _, sh := range c.Shards {
		env.direct[sh.Name] = connectPgx(t, ctx, sh.Primary.DSN("postgres"))
		env.names = append(env.names, sh.Name)
	}
	sort.Strings(env.names)
	return env
}

// port is the port of shard's primary.
func (e *shardedEnv) port(shard string) int {
	for _, sh := range e.cluster.Shards {
		if sh.Name == shard {
			return sh.Primary.Port
		}
	}
	return 0
}

// shardOf is where the topology puts user key k.
func (e *shardedEnv) shardOf(t *testing.T, k int64) string {
	s, err := router.For(e.snap).ShardForKey("users", router.IntKey(k))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// routes runs sql through conn with shardproxy.show_routes on and returns
// the route notices.
type noticeLog struct {
	mu  sync.Mutex
	msg []string
}

func (n *noticeLog) take() []string {
	n.mu.Lock()
	defer n.mu.Unlock()
	out := n.msg
	n.msg = nil
	return out
}

func connectWithNotices(t *testing.T, ctx context.Context, dsn string) (*pgx.Conn, *noticeLog) {
	t.Helper()
	cfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		t.Fatal(err)
	}
	log := &noticeLog{}
	cfg.OnNotice = func(_ *pgconn.PgConn, n *pgconn.Notice) {
		log.mu.Lock()
		log.msg = append(log.msg, n.Message)
		log.mu.Unlock()
	}
	c, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close(context.Background()) })
	return c, log
}

func mustExec(t *testing.T, ctx context.Context, c *pgx.Conn, sql string, args ...any) pgconn.CommandTag {
	t.Helper()
	tag, err := c.Exec(ctx, sql, args...)
	if err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	return tag
}

const routingSchema = `
CREATE TABLE users (id bigserial PRIMARY KEY, name text NOT NULL, country text);
CREATE TABLE posts (author_id bigint NOT NULL, id bigserial, body text, PRIMARY KEY (author_id, id));
CREATE TABLE countries (code text PRIMARY KEY, name text NOT NULL);
CREATE TABLE settings (k text PRIMARY KEY, v text)`

func TestShardedRouting(t *testing.T) {
	env := startSharded(t)
	ctx := testCtx(t, 2*time.Minute)
	app, notices := connectWithNotices(t, ctx, env.proxy.dsn("postgres"))

	// DDL reaches every shard (one statement at a time, as migrations do).
	for _, stmt := range strings.Split(routingSchema, ";") {
		mustExec(t, ctx, app, stmt)
	}
	for name, d := range env.direct {
		var users, countries, settings *string
		if err := d.QueryRow(ctx, "SELECT to_regclass('users')::text, to_regclass('countries')::text, to_regclass('settings')::text").Scan(&users, &countries, &settings); err != nil {
			t.Fatal(err)
		}
		if users == nil || countries == nil {
			t.Errorf("shard %s: distributed/reference tables missing after DDL through the proxy", name)
		}
		// settings is not in the topology: it lives on the default shard only.
		if (settings != nil) != (name == env.snap.DefaultShard()) {
			t.Errorf("shard %s: unlisted table present=%v, want only on default shard %s", name, settings != nil, env.snap.DefaultShard())
		}
	}

	t.Run("single-row inserts land where the hash says", func(t *testing.T) {
		for k := int64(1); k <= 200; k++ {
			mustExec(t, ctx, app, "INSERT INTO users (id, name) VALUES ($1, $2)", k, fmt.Sprintf("user%d", k))
		}
		total := 0
		for name, d := range env.direct {
			rows, err := d.Query(ctx, "SELECT id FROM users")
			if err != nil {
				t.Fatal(err)
			}
			ids, err := pgx.CollectRows(rows, pgx.RowTo[int64])
			if err != nil {
				t.Fatal(err)
			}
			for _, id := range ids {
				if want := env.shardOf(t, id); want != name {
					t.Errorf("user %d is on %s, the hash says %s", id, name, want)
				}
			}
			if len(ids) == 0 {
				t.Errorf("shard %s got no users out of 200", name)
			}
			total += len(ids)
		}
		if total != 200 {
			t.Errorf("%d users on the shards, want 200", total)
		}
	})

	mustExec(t, ctx, app, "SET shardproxy.show_routes = on")
	notices.take()

	t.Run("a key touches exactly its shard", func(t *testing.T) {
		for _, k := range []int64{1, 17, 42, 199} {
			var name string
			if err := app.QueryRow(ctx, "SELECT name FROM users WHERE id = $1", k).Scan(&name); err != nil {
				t.Fatal(err)
			}
			if name != fmt.Sprintf("user%d", k) {
				t.Errorf("user %d: name %q", k, name)
			}
			got := notices.take()
			want := "shard=" + env.shardOf(t, k)
			if len(got) != 1 || !strings.Contains(got[0], "Route "+want) {
				t.Errorf("key %d: route notices %q, want one Route %s", k, got, want)
			}
		}
	})

	t.Run("IN lists touch only their keys' shards", func(t *testing.T) {
		// Two keys on different shards.
		a, b := int64(1), int64(2)
		for env.shardOf(t, b) == env.shardOf(t, a) {
			b++
		}
		rows, err := app.Query(ctx, "SELECT id FROM users WHERE id IN ($1, $2)", a, b)
		if err != nil {
			t.Fatal(err)
		}
		ids, err := pgx.CollectRows(rows, pgx.RowTo[int64])
		if err != nil {
			t.Fatal(err)
		}
		sort.Slice(ids, func(i, j int) bool { return ids[i] < ids[j] })
		if fmt.Sprint(ids) != fmt.Sprint([]int64{a, b}) {
			t.Errorf("IN (%d, %d) returned %v", a, b, ids)
		}
		got := notices.take()
		want := []string{env.shardOf(t, a), env.shardOf(t, b)}
		sort.Strings(want)
		if len(got) != 1 || !strings.Contains(got[0], "Scatter shards="+strings.Join(want, ",")) {
			t.Errorf("route notices %q, want a Scatter over exactly %v", got, want)
		}
	})

	t.Run("multi-row INSERT splits and returns every row", func(t *testing.T) {
		// RETURNING rows come in VALUES order, as from one server (ORMs
		// such as Django's bulk_create match them to their objects by
		// position), in both protocols.
		rows, err := app.Query(ctx, "INSERT INTO users (id, name) VALUES (1004, 'd'), (1001, 'a'), (1006, 'f'), (1002, 'b'), (1005, 'e'), (1003, 'c') RETURNING id, name")
		if err != nil {
			t.Fatal(err)
		}
		got, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (string, error) {
			var id int64
			var name string
			err := r.Scan(&id, &name)
			return fmt.Sprintf("%d %s", id, name), err
		})
		if err != nil {
			t.Fatal(err)
		}
		tag := rows.CommandTag().String()
		if want := "[1004 d 1001 a 1006 f 1002 b 1005 e 1003 c]"; fmt.Sprint(got) != want || tag != "INSERT 0 6" {
			t.Errorf("RETURNING %v, tag %q; want %s in VALUES order, INSERT 0 6", got, tag, want)
		}
		shards := map[string]bool{}
		for k := int64(1001); k <= 1006; k++ {
			shards[env.shardOf(t, k)] = true
		}
		if len(shards) < 2 {
			t.Fatalf("keys 1001-1006 on %d shard(s): the test needs a split INSERT", len(shards))
		}
		// posts.id is generated (AllocateKeys, then the split).
		gen, err := rowsText(ctx, app, "INSERT INTO posts (author_id, body) VALUES (1004, 'p'), (1001, 'q'), (1006, 'r'), (1002, 's'), (1005, 't') RETURNING body", true)
		if err != nil || fmt.Sprint(gen) != "[p q r s t]" {
			t.Errorf("INSERT with generated ids RETURNING body: %v %v, want VALUES order", gen, err)
		}
		gen, err = rowsText(ctx, app, "INSERT INTO users (id, name) VALUES (1006, 'dup'), (4001, 'g'), (1001, 'dup'), (4002, 'h') ON CONFLICT DO NOTHING RETURNING id", false)
		sort.Strings(gen)
		if err != nil || fmt.Sprint(gen) != "[4001 4002]" {
			t.Errorf("ON CONFLICT DO NOTHING RETURNING id: %v %v, want the two new rows", gen, err)
		}
		notices.take()
		for k := int64(1001); k <= 1006; k++ {
			var n int
			if err := env.direct[env.shardOf(t, k)].QueryRow(ctx, "SELECT count(*) FROM users WHERE id = $1", k).Scan(&n); err != nil || n != 1 {
				t.Errorf("user %d not on its shard %s (n=%d, err=%v)", k, env.shardOf(t, k), n, err)
			}
		}
	})

	t.Run("COPY FROM STDIN spreads rows by key", func(t *testing.T) {
		var b strings.Builder
		for k := 2001; k <= 2100; k++ {
			fmt.Fprintf(&b, "%d\tcopied%d\n", k, k)
		}
		tag, err := app.PgConn().CopyFrom(ctx, strings.NewReader(b.String()), "COPY users (id, name) FROM STDIN")
		if err != nil {
			t.Fatal(err)
		}
		if tag.String() != "COPY 100" {
			t.Errorf("COPY tag %q, want COPY 100", tag)
		}
		notices.take()
		for name, d := range env.direct {
			rows, err := d.Query(ctx, "SELECT id FROM users WHERE id BETWEEN 2001 AND 2100")
			if err != nil {
				t.Fatal(err)
			}
			ids, _ := pgx.CollectRows(rows, pgx.RowTo[int64])
			for _, id := range ids {
				if env.shardOf(t, id) != name {
					t.Errorf("copied user %d on %s, hash says %s", id, name, env.shardOf(t, id))
				}
			}
		}
		var n int
		if err := app.QueryRow(ctx, "SELECT id FROM users WHERE name = 'copied2050'").Scan(&n); err != nil || n != 2050 {
			t.Errorf("scatter read of a copied row: %d, %v", n, err)
		}
		notices.take()
	})

	t.Run("binary COPY FROM STDIN (pgx CopyFrom) spreads rows by key", func(t *testing.T) {
		var rows [][]any
		for k := int64(2101); k <= 2300; k++ {
			rows = append(rows, []any{k, fmt.Sprintf("bin%d", k), nil})
		}
		n, err := app.CopyFrom(ctx, pgx.Identifier{"users"}, []string{"id", "name", "country"}, pgx.CopyFromRows(rows))
		if err != nil || n != 200 {
			t.Fatalf("CopyFrom: %d, %v", n, err)
		}
		notices.take()
		total := 0
		for name, d := range env.direct {
			r, err := d.Query(ctx, "SELECT id FROM users WHERE id BETWEEN 2101 AND 2300")
			if err != nil {
				t.Fatal(err)
			}
			ids, _ := pgx.CollectRows(r, pgx.RowTo[int64])
			total += len(ids)
			for _, id := range ids {
				if env.shardOf(t, id) != name {
					t.Errorf("copied user %d on %s, hash says %s", id, name, env.shardOf(t, id))
				}
			}
		}
		if total != 200 {
			t.Fatalf("%d binary-copied rows on the shards, want 200", total)
		}
		// A NULL key fails the whole COPY: nothing of it commits.
		bad := [][]any{{int64(2301), "ok", nil}, {nil, "no key", nil}}
		if _, err := app.CopyFrom(ctx, pgx.Identifier{"users"}, []string{"id", "name", "country"}, pgx.CopyFromRows(bad)); sqlState(err) != "23502" {
			t.Fatalf("binary COPY with a NULL key: %v, want 23502", err)
		}
		var left int
		if err := app.QueryRow(ctx, "SELECT count(*) FROM users WHERE id = 2301").Scan(&left); err != nil || left != 0 {
			t.Fatalf("row of the failed binary COPY: %d, %v", left, err)
		}
		// Not a binary COPY stream: PostgreSQL's error.
		_, err = app.PgConn().CopyFrom(ctx, strings.NewReader("2302\tplain text\n01234567890123456789"), "COPY users (id, name) FROM STDIN (FORMAT binary)")
		if sqlState(err) != "22P04" {
			t.Fatalf("text data in a binary COPY: %v, want 22P04", err)
		}
		notices.take()
	})

	t.Run("reference writes reach every shard", func(t *testing.T) {
		tag := mustExec(t, ctx, app, "INSERT INTO countries VALUES ('de', 'Germany'), ('fr', 'France')")
		if tag.String() != "INSERT 0 2" {
			t.Errorf("tag %q", tag)
		}
		notices.take()
		for name, d := range env.direct {
			var n int
			if err := d.QueryRow(ctx, "SELECT count(*) FROM countries").Scan(&n); err != nil || n != 2 {
				t.Errorf("shard %s has %d countries (%v), want 2", name, n, err)
			}
		}
		// A join of a distributed and a reference table runs on the key's shard.
		mustExec(t, ctx, app, "UPDATE users SET country = 'de' WHERE id = 7")
		var cname string
		if err := app.QueryRow(ctx, "SELECT c.name FROM users u JOIN countries c ON c.code = u.country WHERE u.id = 7").Scan(&cname); err != nil || cname != "Germany" {
			t.Errorf("join with reference table: %q, %v", cname, err)
		}
		notices.take()
	})

	t.Run("catalog queries work", func(t *testing.T) {
		var n int
		if err := app.QueryRow(ctx, "SELECT count(*) FROM pg_catalog.pg_class WHERE relname IN ('users', 'posts', 'countries')").Scan(&n); err != nil || n != 3 {
			t.Errorf("pg_class: %d, %v", n, err)
		}
		rows, err := app.Query(ctx, "SELECT column_name FROM information_schema.columns WHERE table_name = 'users' ORDER BY ordinal_position")
		if err != nil {
			t.Fatal(err)
		}
		cols, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil || strings.Join(cols, ",") != "id,name,country" {
			t.Errorf("information_schema columns %v, %v", cols, err)
		}
		notices.take()
	})

	t.Run("a transaction writing two shards commits on both (two-phase commit)", func(t *testing.T) {
		a, b := int64(3), int64(4)
		for env.shardOf(t, b) == env.shardOf(t, a) {
			b++
		}
		tx, err := app.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, k := range []int64{a, b} {
			if _, err := tx.Exec(ctx, "UPDATE users SET name = 'changed' WHERE id = $1", k); err != nil {
				t.Fatal(err)
			}
		}
		if err := tx.Commit(ctx); err != nil {
			t.Fatal(err)
		}
		var name string
		for _, k := range []int64{a, b} {
			if err := env.direct[env.shardOf(t, k)].QueryRow(ctx, "SELECT name FROM users WHERE id = $1", k).Scan(&name); err != nil || name != "changed" {
				t.Errorf("user %d after the two-shard commit: %q, %v", k, name, err)
			}
		}
		for s, d := range env.direct {
			var n int
			if err := d.QueryRow(ctx, "SELECT count(*) FROM pg_prepared_xacts").Scan(&n); err != nil || n != 0 {
				t.Errorf("shard %s: %d prepared transactions left (%v)", s, n, err)
			}
		}
		// A rolled-back two-shard transaction leaves nothing.
		tx, err = app.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, k := range []int64{a, b} {
			if _, err := tx.Exec(ctx, "UPDATE users SET name = 'rolled back' WHERE id = $1", k); err != nil {
				t.Fatal(err)
			}
		}
		if err := tx.Rollback(ctx); err != nil {
			t.Fatal(err)
		}
		for _, k := range []int64{a, b} {
			if err := env.direct[env.shardOf(t, k)].QueryRow(ctx, "SELECT name FROM users WHERE id = $1", k).Scan(&name); err != nil || name != "changed" {
				t.Errorf("user %d after ROLLBACK: %q, %v", k, name, err)
			}
		}
		notices.take()
	})

	t.Run("a one-shard transaction with reads elsewhere commits", func(t *testing.T) {
		a, b := int64(5), int64(6)
		for env.shardOf(t, b) == env.shardOf(t, a) {
			b++
		}
		tx, err := app.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := tx.Exec(ctx, "UPDATE users SET name = 'tx' WHERE id = $1", a); err != nil {
			t.Fatal(err)
		}
		if _, err := tx.Exec(ctx, "INSERT INTO posts (author_id, body) VALUES ($1, 'hello')", a); err != nil {
			t.Fatal(err)
		}
		var name string
		if err := tx.QueryRow(ctx, "SELECT name FROM users WHERE id = $1", b).Scan(&name); err != nil {
			t.Fatal(err)
		}
		if err := tx.Commit(ctx); err != nil {
			t.Fatal(err)
		}
		var n int
		if err := env.direct[env.shardOf(t, a)].QueryRow(ctx, "SELECT count(*) FROM posts WHERE author_id = $1", a).Scan(&n); err != nil || n != 1 {
			t.Errorf("post of user %d: %d, %v", a, n, err)
		}
		notices.take()
	})

	t.Run("unsupported cross-shard SQL gets 0A000", func(t *testing.T) {
		_, err := app.Exec(ctx, "UPDATE users SET name = 'all'")
		if sqlState(err) != "0A000" && err != nil {
			t.Errorf("UPDATE without key: %v", err)
		}
		notices.take()
	})

	t.Run("EXPLAIN shows the proxy plan and the shard's plan", func(t *testing.T) {
		rows, err := app.Query(ctx, "EXPLAIN SELECT * FROM users WHERE id = 42")
		if err != nil {
			t.Fatal(err)
		}
		lines, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			t.Fatal(err)
		}
		text := strings.Join(lines, "\n")
		if !strings.Contains(text, "Route shard="+env.shardOf(t, 42)) || !strings.Contains(text, "Scan") {
			t.Errorf("EXPLAIN output:\n%s", text)
		}
		notices.take()
	})

	t.Run("routing hints", func(t *testing.T) {
		target := env.names[len(env.names)-1]
		var port int
		if err := app.QueryRow(ctx, "/* shardproxy: shard="+target+" */ SELECT current_setting('port')::int").Scan(&port); err != nil {
			t.Fatal(err)
		}
		if want := env.port(target); port != want {
			t.Errorf("hinted query ran on port %d, want %s's %d", port, target, want)
		}
		mustExec(t, ctx, app, "SET shardproxy.shard = '"+env.names[1]+"'")
		if err := app.QueryRow(ctx, "SELECT current_setting('port')::int").Scan(&port); err != nil {
			t.Fatal(err)
		}
		if want := env.port(env.names[1]); port != want {
			t.Errorf("SET shardproxy.shard: ran on port %d, want %d", port, want)
		}
		mustExec(t, ctx, app, "RESET shardproxy.shard")
		notices.take()
	})

	t.Run("bigserial keys are unique across shards under concurrency", func(t *testing.T) {
		const workers, each = 8, 40
		// Explicit ids 1..2100 were inserted above; as on one server, the
		// sequence must be moved past them.
		mustExec(t, ctx, app, "SELECT setval('users_id_seq', 100000)")
		var mu sync.Mutex
		seen := map[int64]string{}
		var wg sync.WaitGroup
		errs := make(chan error, workers)
		for w := 0; w < workers; w++ {
			wg.Add(1)
			go func(w int) {
				defer wg.Done()
				c, err := pgx.Connect(ctx, env.proxy.dsn("postgres"))
				if err != nil {
					errs <- err
					return
				}
				defer c.Close(context.Background())
				for i := 0; i < each; i++ {
					name := fmt.Sprintf("gen-%d-%d", w, i)
					var id int64
					if err := c.QueryRow(ctx, "INSERT INTO users (name) VALUES ($1) RETURNING id", name).Scan(&id); err != nil {
						errs <- fmt.Errorf("insert %s: %w", name, err)
						return
					}
					mu.Lock()
					if prev, dup := seen[id]; dup {
						mu.Unlock()
						errs <- fmt.Errorf("id %d given to %s and %s", id, prev, name)
						return
					}
					seen[id] = name
					mu.Unlock()
					var got string
					if err := c.QueryRow(ctx, "SELECT name FROM users WHERE id = $1", id).Scan(&got); err != nil || got != name {
						errs <- fmt.Errorf("lookup of id %d: %q, %v", id, got, err)
						return
					}
				}
			}(w)
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Error(err)
		}
		if len(seen) != workers*each {
			t.Errorf("%d distinct ids, want %d", len(seen), workers*each)
		}
		// Rows are on the shard their id hashes to.
		onShards := 0
		for name, d := range env.direct {
			rows, err := d.Query(ctx, "SELECT id FROM users WHERE name LIKE 'gen-%'")
			if err != nil {
				t.Fatal(err)
			}
			ids, _ := pgx.CollectRows(rows, pgx.RowTo[int64])
			for _, id := range ids {
				if env.shardOf(t, id) != name {
					t.Errorf("generated id %d on %s, hash says %s", id, name, env.shardOf(t, id))
				}
			}
			onShards += len(ids)
		}
		if onShards != workers*each {
			t.Errorf("%d generated rows on the shards, want %d", onShards, workers*each)
		}
		notices.take()
	})
}
