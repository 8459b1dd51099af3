package e2e

import (
	"bytes"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/shardproxy/shardproxy/router"
	"github.com/shardproxy/shardproxy/test/pgcluster"
	"github.com/shardproxy/shardproxy/topology"
)

// TestRebalanceFanOutReadsDuringMove checks that statements over every
// shard answer exactly while a move has a range's rows on two scanned
// shards: first on the target before the flip (the copy), then on the
// source after it (cleanup). The move's data states are produced by hand
// (rows copied between the shards directly, move states applied to the
// topology store), so each state can be held as long as the checks take;
// the rebalance tests cover the controller that drives real moves. Each
// statement runs through the proxy and on a reference database holding
// the same rows, in the simple and the extended protocol; keyless UPDATE
// and DELETE must touch every row once (equal command tags), COPY TO and a
// cross-shard cursor must return every row once. A key pinned by an
// override to the target, whose hash lies in the moving range, stays
// visible.
func TestRebalanceFanOutReadsDuringMove(t *testing.T) {
	c := pgcluster.StartT(t, pgcluster.Options{Shards: 3})
	store, p, _ := startMoveProxy(t, c, 3, 4)
	ctx := testCtx(t, 3*time.Minute)
	src, dst := c.Shards[0], c.Shards[1]

	snap := store.Current()
	d, _ := snap.Distribution("users")
	var moving topology.Span
	for _, r := range d.Ranges {
		if r.Shard == src.Name {
			moving = topology.Span{Lo: r.Lo, Hi: r.Hi}
			break
		}
	}
	in := func(id int64) bool { h := router.HashInt8(id); return moving.Lo <= h && h <= moving.Hi }
	var pinned int64
	for id := int64(1); pinned == 0; id++ {
		if in(id) {
			pinned = id
		}
	}
	if _, err := store.Apply(ctx, topology.SetOverride{Distribution: "users", Key: strconv.FormatInt(pinned, 10), Shard: dst.Name}); err != nil {
		t.Fatal(err)
	}

	app := connectPgx(t, ctx, p.dsn("postgres"))
	mustExec(t, ctx, connectPgx(t, ctx, src.Primary.DSN("postgres")), "CREATE DATABASE fanout_reference")
	ref := connectPgx(t, ctx, src.Primary.DSN("fanout_reference"))
	for _, stmt := range strings.Split(moveSchema, ";\n") {
		mustExec(t, ctx, ref, stmt)
	}
	inMoving := 0
	var users, posts []string
	for id := int64(1); id <= 400; id++ {
		users = append(users, fmt.Sprintf("(%d, 'user-%03d', %d)", id, id%97, id%50))
		for j := int64(0); j < id%4; j++ {
			posts = append(posts, fmt.Sprintf("(%d, %d, 'post %d of %d', %d)", id, id*10+j, j, id, (id+j)%10))
		}
		if in(id) {
			inMoving++
		}
	}
	for _, db := range []*pgx.Conn{app, ref} {
		mustExec(t, ctx, db, "INSERT INTO users (id, name, balance) VALUES "+strings.Join(users, ", "))
		mustExec(t, ctx, db, "INSERT INTO posts (author_id, id, body, likes) VALUES "+strings.Join(posts, ", "))
	}
	if inMoving < 5 {
		t.Fatalf("only %d seeded users in the moving range", inMoving)
	}
	srcConn := connectPgx(t, ctx, src.Primary.DSN("postgres"))
	dstConn := connectPgx(t, ctx, dst.Primary.DSN("postgres"))
	d, _ = store.Current().Distribution("users")
	// copyRange puts a copy of the moving range's rows of from on to, as
	// the move's subscription does (the pinned key is not moved).
	copyRange := func(from, to *pgx.Conn) {
		t.Helper()
		for _, tc := range []struct{ table, key string }{{"users", "id"}, {"posts", "author_id"}} {
			f, err := router.MovingRowsFilter(d, tc.key, []topology.Span{moving})
			if err != nil {
				t.Fatal(err)
			}
			var buf bytes.Buffer
			if _, err := from.PgConn().CopyTo(ctx, &buf, "COPY (SELECT * FROM "+tc.table+" WHERE "+f+") TO STDOUT"); err != nil {
				t.Fatal(err)
			}
			if _, err := to.PgConn().CopyFrom(ctx, &buf, "COPY "+tc.table+" FROM STDIN"); err != nil {
				t.Fatal(err)
			}
		}
	}
	deleteRange := func(on *pgx.Conn) {
		t.Helper()
		for _, tc := range []struct{ table, key string }{{"posts", "author_id"}, {"users", "id"}} {
			f, err := router.MovingRowsFilter(d, tc.key, []topology.Span{moving})
			if err != nil {
				t.Fatal(err)
			}
			mustExec(t, ctx, on, "DELETE FROM "+tc.table+" WHERE "+f)
		}
	}
	apply := func(cmd topology.Command) {
		t.Helper()
		if _, err := store.Apply(ctx, cmd); err != nil {
			t.Fatalf("%T: %v", cmd, err)
		}
	}

	step := 0
	check := func(phase string) {
		t.Helper()
		step++
		for _, q := range []struct {
			sql     string
			ordered bool
			args    []any
		}{
			{sql: "SELECT count(*), sum(balance), count(DISTINCT name) FROM users"},
			{sql: "SELECT id, name, balance FROM users ORDER BY id", ordered: true},
			{sql: "SELECT u.id, count(p.id), sum(p.likes) FROM users u JOIN posts p ON p.author_id = u.id GROUP BY u.id ORDER BY u.id", ordered: true},
			{sql: "SELECT author_id, id, likes FROM posts WHERE likes > $1 ORDER BY likes DESC, author_id, id LIMIT 25", ordered: true, args: []any{4}},
			{sql: "SELECT likes, count(*) FROM posts GROUP BY likes HAVING count(*) > 3 ORDER BY likes", ordered: true},
			{sql: "SELECT DISTINCT balance FROM users"},
			{sql: "SELECT count(*) FROM users WHERE id IN (SELECT author_id FROM posts WHERE likes = 3)"},
			{sql: "WITH per AS (SELECT author_id, count(*) AS n FROM posts GROUP BY author_id) SELECT count(*), sum(n) FROM per"},
			{sql: "SELECT id FROM users WHERE balance = $1 UNION SELECT author_id FROM posts WHERE likes = $1", args: []any{7}},
			{sql: "SELECT name FROM users u WHERE EXISTS (SELECT 1 FROM posts p WHERE p.author_id = u.id AND p.likes > 8)"},
			{sql: "SELECT * FROM users WHERE id = $1", args: []any{pinned}},
		} {
			for _, simple := range []bool{true, false} {
				got, err := rowsText(ctx, app, q.sql, simple, q.args...)
				if err != nil {
					t.Fatalf("%s: %s (simple=%v): %v", phase, q.sql, simple, err)
				}
				want, err := rowsText(ctx, ref, q.sql, simple, q.args...)
				if err != nil {
					t.Fatalf("reference: %s: %v", q.sql, err)
				}
				if !q.ordered {
					slices.Sort(got)
					slices.Sort(want)
				}
				if !slices.Equal(got, want) {
					t.Fatalf("%s: %s (simple=%v): got %d rows, want %d\ngot  %.300v\nwant %.300v", phase, q.sql, simple, len(got), len(want), got, want)
				}
			}
		}
		// Keyless writes touch each row once.
		for _, w := range []string{
			fmt.Sprintf("UPDATE posts SET likes = likes + 1 WHERE likes = %d", step%10),
			fmt.Sprintf("DELETE FROM posts WHERE id %% 97 = %d", step),
		} {
			got, err := app.Exec(ctx, w)
			if err != nil {
				t.Fatalf("%s: %s: %v", phase, w, err)
			}
			want := mustExec(t, ctx, ref, w)
			if got.String() != want.String() {
				t.Fatalf("%s: %s: proxy says %q, one server %q", phase, w, got, want)
			}
		}
		// COPY TO and a cursor return every row once.
		var buf bytes.Buffer
		tag, err := app.PgConn().CopyTo(ctx, &buf, "COPY posts (author_id, id) TO STDOUT")
		if err != nil {
			t.Fatalf("%s: COPY TO: %v", phase, err)
		}
		var want int64
		if err := ref.QueryRow(ctx, "SELECT count(*) FROM posts").Scan(&want); err != nil {
			t.Fatal(err)
		}
		if lines := int64(strings.Count(buf.String(), "\n")); tag.RowsAffected() != want || lines != want {
			t.Fatalf("%s: COPY posts TO STDOUT gave %d lines, tag %q; one server has %d rows", phase, lines, tag, want)
		}
		tx, err := app.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		mustExec(t, ctx, tx.Conn(), "DECLARE c CURSOR FOR SELECT author_id, id FROM posts ORDER BY author_id, id")
		got, err := rowsText(ctx, tx.Conn(), "FETCH ALL FROM c", false)
		if err != nil {
			t.Fatalf("%s: FETCH: %v", phase, err)
		}
		if err := tx.Rollback(ctx); err != nil {
			t.Fatal(err)
		}
		wantRows, _ := rowsText(ctx, ref, "SELECT author_id, id FROM posts ORDER BY author_id, id", false)
		if !slices.Equal(got, wantRows) {
			t.Fatalf("%s: cursor over posts: %d rows, one server %d", phase, len(got), len(wantRows))
		}
	}

	check("no move")
	// Copying: the target holds a copy of the range it does not own yet.
	apply(topology.StartMove{Move: topology.Move{ID: "fanout", Distribution: "users", Ranges: []topology.Span{moving}, From: src.Name, To: dst.Name}})
	apply(topology.SetMoveState{ID: "fanout", From: topology.MovePending, To: topology.MoveCopying})
	copyRange(srcConn, dstConn)
	check("copying (rows on the target too)")
	// The writes above changed the source's rows only: bring the copy up
	// to date as replication would, then flip.
	deleteRange(dstConn)
	copyRange(srcConn, dstConn)
	apply(topology.SetMoveState{ID: "fanout", From: topology.MoveCopying, To: topology.MoveCatchup})
	apply(topology.SetMoveState{ID: "fanout", From: topology.MoveCatchup, To: topology.MoveCutover})
	check("cutover")
	deleteRange(dstConn)
	copyRange(srcConn, dstConn)
	apply(topology.FlipMove{ID: "fanout"})
	check("cleanup (rows still on the source)")
	deleteRange(srcConn)
	apply(topology.EndMove{ID: "fanout"})
	check("moved")

	// EXPLAIN names the shards that read only their own rows.
	apply(topology.StartMove{Move: topology.Move{ID: "explain", Distribution: "users", Ranges: []topology.Span{moving}, From: dst.Name, To: src.Name}})
	lines, err := rowsText(ctx, app, "EXPLAIN SELECT count(*) FROM users", true)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(strings.Join(lines, "\n"), "owned_rows_only=["+src.Name+"]") {
		t.Fatalf("EXPLAIN during a move does not show the ownership filter:\n%s", strings.Join(lines, "\n"))
	}
}

// fanOutReader reads rows no load worker touches with statements over
// every shard while moves run, and counts answers that differ from the
// seeded truth.
type fanOutReader struct {
	reads, wrong, errors atomic.Int64
	first                atomic.Value
	seeded               *reference // the rows it added, for checkPlacement
}

// startFanOutReader seeds n users (ids from 50,000,000, two posts each)
// that the move load never touches and reads them in a loop until stop.
func startFanOutReader(t *testing.T, dsn string, n int, stop <-chan struct{}, wg *sync.WaitGroup) *fanOutReader {
	t.Helper()
	ctx := testCtx(t, 5*time.Minute)
	conn := connectPgx(t, ctx, dsn)
	var us, ps []string
	sum := 0
	seeded := &reference{users: map[int64]userRow{}, posts: map[[2]int64]postRow{}}
	for i := 0; i < n; i++ {
		id := 50_000_000 + i
		us = append(us, fmt.Sprintf("(%d, 'static%d', %d)", id, i, i%7))
		ps = append(ps, fmt.Sprintf("(%d, 1, 'static', 1), (%d, 2, 'static', 2)", id, id))
		sum += i % 7
		seeded.users[int64(id)] = userRow{fmt.Sprintf("static%d", i), i % 7}
		seeded.posts[[2]int64{int64(id), 1}] = postRow{"static", 1}
		seeded.posts[[2]int64{int64(id), 2}] = postRow{"static", 2}
	}
	mustExec(t, ctx, conn, "INSERT INTO users VALUES "+strings.Join(us, ","))
	mustExec(t, ctx, conn, "INSERT INTO posts VALUES "+strings.Join(ps, ","))
	want := map[string]string{
		"SELECT count(*), sum(balance) FROM users WHERE name LIKE 'static%'":                                                 fmt.Sprint(n, sum),
		"SELECT count(*), sum(p.likes) FROM users u JOIN posts p ON p.author_id = u.id WHERE u.name LIKE 'static%'":          fmt.Sprint(2*n, 3*n),
		"SELECT id FROM users WHERE name LIKE 'static%' ORDER BY id OFFSET 10 LIMIT 1":                                       fmt.Sprint(50_000_010),
		"SELECT count(DISTINCT author_id) FROM posts WHERE body = 'static'":                                                  fmt.Sprint(n),
		"SELECT count(*) FROM users WHERE name LIKE 'static%' AND id IN (SELECT author_id FROM posts WHERE body = 'static')": fmt.Sprint(n),
	}
	r := &fanOutReader{seeded: seeded}
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			for q, w := range want {
				select {
				case <-stop:
					return
				default:
				}
				got, err := rowsText(ctx, conn, q, r.reads.Load()%2 == 0)
				r.reads.Add(1)
				switch {
				case err != nil:
					r.errors.Add(1)
					r.first.CompareAndSwap(nil, fmt.Sprintf("%s: %v", q, err))
				case len(got) != 1 || got[0] != w:
					r.wrong.Add(1)
					r.first.CompareAndSwap(nil, fmt.Sprintf("%s: got %v, want %s", q, got, w))
				}
			}
		}
	}()
	return r
}

// check fails t unless every read was right.
func (r *fanOutReader) check(t *testing.T) {
	t.Helper()
	t.Logf("%d fan-out reads during the moves", r.reads.Load())
	if r.reads.Load() == 0 || r.errors.Load() > 0 || r.wrong.Load() > 0 {
		t.Errorf("fan-out reads: %d, %d errors, %d wrong answers; first: %v", r.reads.Load(), r.errors.Load(), r.wrong.Load(), r.first.Load())
	}
}
