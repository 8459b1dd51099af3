package e2e

import (
	"bytes"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/shardproxy/shardproxy/router"
	"github.com/shardproxy/shardproxy/test/pgcluster"
	"github.com/shardproxy/shardproxy/test/wait"
	"github.com/shardproxy/shardproxy/topology"
)

// TestKeyUpdate: an UPDATE that changes the distribution key moves each
// row to the shard its new key maps to — checked on every shard directly,
// nothing left on the old one — with the values exact (floats, arrays,
// a stored generated column recomputed), RETURNING and the command tag as
// PostgreSQL gives them, in the simple and the extended protocol; a unique
// violation on the target shard fails with 23505 and leaves the source
// untouched; inside BEGIN … ROLLBACK nothing changes and a later SELECT of
// the transaction sees the moved rows; a table referenced by a foreign key
// is refused with 0A000, and so is one updating more than
// plan.MaxKeyUpdateRows rows (nothing changes); EXPLAIN shows the plan.
func TestKeyUpdate(t *testing.T) {
	env := startSharded(t)
	ctx := testCtx(t, 3*time.Minute)
	app := connectPgx(t, ctx, env.proxy.dsn("postgres"))
	mustExec(t, ctx, app, `CREATE TABLE users (id bigint PRIMARY KEY, name text NOT NULL, score double precision,
		tags text[], doubled bigint GENERATED ALWAYS AS (id * 2) STORED)`)
	for id := 1; id <= 40; id++ {
		mustExec(t, ctx, app, "INSERT INTO users (id, name, score, tags) VALUES ($1, $2, 0.1 + $3::float8, ARRAY['a', $2])", id, fmt.Sprintf("u%d", id), float64(id)/3)
	}
	// where returns "shard:name score tags doubled" for every shard holding id.
	where := func(id int64) []string {
		t.Helper()
		var out []string
		for _, s := range env.names {
			rows := queryStrings(t, ctx, env.direct[s], "SELECT name, score::text, tags::text, doubled FROM users WHERE id = $1", id)
			for _, r := range rows {
				out = append(out, s+":"+r)
			}
		}
		return out
	}
	// Keys: one on another shard than key 1, one on the same shard.
	var other, same int64
	for k := int64(100); other == 0 || same == 0; k++ {
		if env.shardOf(t, k) != env.shardOf(t, 1) && other == 0 {
			other = k
		}
		if env.shardOf(t, k) == env.shardOf(t, 1) && same == 0 && k > 100 {
			same = k
		}
	}
	before1 := where(1)
	if len(before1) != 1 {
		t.Fatalf("user 1 before: %v", before1)
	}
	stored := strings.SplitN(before1[0], ":", 2)[1] // name score tags doubled
	storedFields := strings.Fields(stored)

	t.Run("to another shard, simple protocol, RETURNING", func(t *testing.T) {
		rows, err := app.Query(ctx, fmt.Sprintf("UPDATE users SET id = %d WHERE id = 1 RETURNING id, name, doubled, id * 10 AS x", other), pgx.QueryExecModeSimpleProtocol)
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for rows.Next() {
			v, _ := rows.Values()
			got = append(got, strings.TrimSuffix(fmt.Sprintln(v...), "\n"))
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			t.Fatal(err)
		}
		if tag := rows.CommandTag().String(); tag != "UPDATE 1" {
			t.Errorf("tag %q, want UPDATE 1", tag)
		}
		if want := fmt.Sprintf("[%d u1 %d %d]", other, 2*other, 10*other); fmt.Sprint(got) != want {
			t.Errorf("RETURNING %v, want %s", got, want)
		}
		want := fmt.Sprintf("%s:u1 %s %s %d", env.shardOf(t, other), storedFields[1], storedFields[2], 2*other)
		if got := where(other); fmt.Sprint(got) != "["+want+"]" {
			t.Errorf("moved row on the shards: %v, want [%s] (score and tags exact, doubled recomputed)", got, want)
		}
		if got := where(1); len(got) != 0 {
			t.Errorf("old key still on %v", got)
		}
	})

	t.Run("same shard, extended protocol with parameters", func(t *testing.T) {
		var id, doubled int64
		var name string
		if err := app.QueryRow(ctx, "UPDATE users SET id = $1, name = $2 WHERE id = $3 RETURNING id, name, doubled", same, "renamed", other).Scan(&id, &name, &doubled); err != nil {
			t.Fatal(err)
		}
		// other → same: from other's shard to key 1's shard.
		if id != same || name != "renamed" || doubled != 2*same {
			t.Errorf("RETURNING %d %s %d", id, name, doubled)
		}
		if got := where(same); len(got) != 1 || !strings.HasPrefix(got[0], env.shardOf(t, same)+":renamed ") {
			t.Errorf("row %d on %v, want only %s", same, got, env.shardOf(t, same))
		}
		if got := where(other); len(got) != 0 {
			t.Errorf("old key %d still on %v", other, got)
		}
		// A key change that stays on its shard.
		var same2 int64
		for k := same + 1; ; k++ {
			if env.shardOf(t, k) == env.shardOf(t, same) {
				same2 = k
				break
			}
		}
		tag := mustExec(t, ctx, app, "UPDATE users SET id = $1 WHERE id = $2", same2, same)
		if tag.String() != "UPDATE 1" || len(where(same2)) != 1 || len(where(same)) != 0 {
			t.Errorf("same-shard key change: tag %s, new %v, old %v", tag, where(same2), where(same))
		}
	})

	t.Run("several rows to several shards", func(t *testing.T) {
		tag := mustExec(t, ctx, app, "UPDATE users SET id = id + 1000 WHERE id BETWEEN 10 AND 29")
		if tag.String() != "UPDATE 20" {
			t.Errorf("tag %s, want UPDATE 20", tag)
		}
		targets := map[string]bool{}
		for id := int64(10); id <= 29; id++ {
			if got := where(id); len(got) != 0 {
				t.Errorf("old key %d still on %v", id, got)
			}
			got := where(id + 1000)
			if len(got) != 1 || !strings.HasPrefix(got[0], env.shardOf(t, id+1000)+":") {
				t.Errorf("key %d on %v, want %s", id+1000, got, env.shardOf(t, id+1000))
			}
			targets[env.shardOf(t, id+1000)] = true
		}
		if len(targets) < 2 {
			t.Errorf("test data moved to %d shards only", len(targets))
		}
		var total int64
		for _, s := range env.names {
			var n int64
			if err := env.direct[s].QueryRow(ctx, "SELECT count(*) FROM users").Scan(&n); err != nil {
				t.Fatal(err)
			}
			total += n
		}
		if total != 40 {
			t.Errorf("%d rows on the shards, want 40", total)
		}
	})

	t.Run("unique violation on the target leaves the source untouched", func(t *testing.T) {
		// Key 2 → the key of a row on another shard.
		var taken int64
		for id := int64(3); id <= 9; id++ {
			if env.shardOf(t, id) != env.shardOf(t, 2) {
				taken = id
				break
			}
		}
		if taken == 0 {
			t.Fatal("no key on another shard than 2 among 3..9")
		}
		before := where(2)
		for _, simple := range []bool{true, false} {
			_, err := rowsText(ctx, app, fmt.Sprintf("UPDATE users SET id = %d WHERE id = 2", taken), simple)
			if sqlState(err) != "23505" {
				t.Errorf("simple=%v: %v, want 23505 like PostgreSQL", simple, err)
			}
			if got := where(2); fmt.Sprint(got) != fmt.Sprint(before) {
				t.Errorf("source after the failure: %v, want %v", got, before)
			}
			if got := where(taken); len(got) != 1 {
				t.Errorf("target key %d: %v", taken, got)
			}
		}
	})

	t.Run("inside BEGIN … ROLLBACK", func(t *testing.T) {
		before3 := where(3)
		tx, err := app.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		defer tx.Rollback(ctx)
		var to int64
		for k := int64(5000); ; k++ {
			if env.shardOf(t, k) != env.shardOf(t, 3) {
				to = k
				break
			}
		}
		if _, err := tx.Exec(ctx, "UPDATE users SET id = $1 WHERE id = 3", to); err != nil {
			t.Fatal(err)
		}
		if got := queryStrings(t, ctx, tx, "SELECT id, name FROM users WHERE id IN (3, $1)", to); fmt.Sprint(got) != fmt.Sprintf("[%d u3]", to) {
			t.Errorf("in the transaction: %v, want [%d u3]", got, to)
		}
		if err := tx.Rollback(ctx); err != nil {
			t.Fatal(err)
		}
		if got := where(3); fmt.Sprint(got) != fmt.Sprint(before3) {
			t.Errorf("after ROLLBACK: %v, want %v", got, before3)
		}
		if got := where(to); len(got) != 0 {
			t.Errorf("after ROLLBACK key %d is on %v", to, got)
		}
		// And committed, with another write in the same transaction.
		tx2, err := app.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		defer tx2.Rollback(ctx)
		if _, err := tx2.Exec(ctx, "UPDATE users SET id = $1 WHERE id = 3", to); err != nil {
			t.Fatal(err)
		}
		if _, err := tx2.Exec(ctx, "UPDATE users SET name = 'w' WHERE id = 4"); err != nil {
			t.Fatal(err)
		}
		if err := tx2.Commit(ctx); err != nil {
			t.Fatal(err)
		}
		if got := where(to); len(got) != 1 || len(where(3)) != 0 {
			t.Errorf("after COMMIT: key %d on %v, key 3 on %v", to, got, where(3))
		}
	})

	t.Run("EXPLAIN shows the plan", func(t *testing.T) {
		far := int64(9001)
		for env.shardOf(t, far) == env.shardOf(t, 6) {
			far++
		}
		for _, simple := range []bool{true, false} {
			got, err := rowsText(ctx, app, fmt.Sprintf("EXPLAIN UPDATE users SET id = %d WHERE id = 6", far), simple)
			if err != nil {
				t.Fatal(err)
			}
			text := strings.Join(got, "\n")
			if !strings.Contains(text, "KeyUpdate") || !strings.Contains(text, "FOR UPDATE OF users") {
				t.Errorf("simple=%v: EXPLAIN output lacks the key update plan:\n%s", simple, text)
			}
		}
		if got := where(6); len(got) != 1 || len(where(far)) != 0 {
			t.Errorf("EXPLAIN changed rows: 6 on %v, %d on %v", got, far, where(far))
		}
		_, err := app.Exec(ctx, fmt.Sprintf("EXPLAIN ANALYZE UPDATE users SET id = %d WHERE id = 6", far))
		if sqlState(err) != "0A000" {
			t.Errorf("EXPLAIN ANALYZE: %v, want 0A000", err)
		}
	})

	t.Run("more rows than the bound: 0A000 and nothing changes", func(t *testing.T) {
		values := make([]string, 0, 10001)
		for id := 200000; id <= 210000; id++ {
			values = append(values, fmt.Sprintf("(%d, 'bulk')", id))
		}
		mustExec(t, ctx, app, "INSERT INTO users (id, name) VALUES "+strings.Join(values, ", "), pgx.QueryExecModeSimpleProtocol)
		count := func() string {
			return fmt.Sprint(queryStrings(t, ctx, app, "SELECT count(*) FILTER (WHERE id < 1000000), count(*) FILTER (WHERE id >= 1000000) FROM users WHERE id >= 200000"))
		}
		for _, inTx := range []bool{false, true} {
			var err error
			if inTx {
				tx, berr := app.Begin(ctx)
				if berr != nil {
					t.Fatal(berr)
				}
				_, err = tx.Exec(ctx, "UPDATE users SET id = id + 1000000 WHERE id >= 200000")
				tx.Rollback(ctx)
			} else {
				_, err = app.Exec(ctx, "UPDATE users SET id = id + 1000000 WHERE id >= 200000")
			}
			if sqlState(err) != "0A000" || !strings.Contains(err.Error(), "at most 10000 rows") {
				t.Errorf("in a transaction=%v: %v, want 0A000 naming the bound", inTx, err)
			}
			if got := count(); got != "[10001 0]" {
				t.Errorf("in a transaction=%v: rows at old/new keys %s, want [10001 0]", inTx, got)
			}
		}
		mustExec(t, ctx, app, "DELETE FROM users WHERE id >= 200000")
	})

	t.Run("a table referenced by a foreign key is refused", func(t *testing.T) {
		mustExec(t, ctx, app, "CREATE TABLE posts (author_id bigint NOT NULL REFERENCES users (id) ON UPDATE CASCADE, id bigint, PRIMARY KEY (author_id, id))")
		before := where(5)
		_, err := app.Exec(ctx, "UPDATE users SET id = 7005 WHERE id = 5")
		if sqlState(err) != "0A000" || !strings.Contains(err.Error(), "foreign key") {
			t.Errorf("got %v, want 0A000 naming the foreign key", err)
		}
		if got := where(5); fmt.Sprint(got) != fmt.Sprint(before) {
			t.Errorf("after the refusal: %v, want %v", got, before)
		}
		// The session serves on.
		if got := queryStrings(t, ctx, app, "SELECT name FROM users WHERE id = 6"); fmt.Sprint(got) != "[u6]" {
			t.Errorf("after the refusal: %v", got)
		}
		// The referencing table's own key moves: its foreign key is
		// checked on the new shard (where the new parent is), not on the
		// old one.
		var author int64
		for id := int64(30); id <= 40; id++ {
			if env.shardOf(t, id) != env.shardOf(t, 6) {
				author = id
				break
			}
		}
		mustExec(t, ctx, app, "INSERT INTO posts (author_id, id) VALUES (6, 1)")
		if tag := mustExec(t, ctx, app, "UPDATE posts SET author_id = $1 WHERE author_id = 6 AND id = 1", author); tag.String() != "UPDATE 1" {
			t.Errorf("moving a post to author %d: %s", author, tag)
		}
		for _, s := range env.names {
			var n int
			if err := env.direct[s].QueryRow(ctx, "SELECT count(*) FROM posts WHERE author_id = $1", author).Scan(&n); err != nil {
				t.Fatal(err)
			}
			if want := map[bool]int{true: 1, false: 0}[s == env.shardOf(t, author)]; n != want {
				t.Errorf("shard %s holds %d posts of author %d, want %d", s, n, author, want)
			}
		}
		// A new parent that exists nowhere: 23503 like PostgreSQL.
		_, err = app.Exec(ctx, "UPDATE posts SET author_id = 99999 WHERE author_id = $1", author)
		if sqlState(err) != "23503" {
			t.Errorf("moving a post to a missing author: %v, want 23503", err)
		}
	})
}

// TestKeyUpdateHeldDuringCutover: while a move of the table's
// distribution is in cutover, a key update whose new key lies in the
// moving range waits (its target is known only at run time); after the
// flip it runs on the new topology, so the moved row lands on the move's
// target and not on its old owner (where the cleanup would delete it).
func TestKeyUpdateHeldDuringCutover(t *testing.T) {
	c := pgcluster.StartT(t, pgcluster.Options{Shards: 3})
	store, p, _ := startMoveProxy(t, c, 3, 4)
	ctx := testCtx(t, 2*time.Minute)
	src, dst, other := c.Shards[0], c.Shards[1], c.Shards[2]
	d, _ := store.Current().Distribution("users")
	var moving topology.Span
	for _, r := range d.Ranges {
		if r.Shard == src.Name {
			moving = topology.Span{Lo: r.Lo, Hi: r.Hi}
			break
		}
	}
	in := func(id int64) bool { h := router.HashInt8(id); return moving.Lo <= h && h <= moving.Hi }
	shardOf := func(id int64) string {
		s, err := router.For(store.Current()).ShardForKey("users", router.IntKey(id))
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	var newAuthor, oldAuthor int64
	for id := int64(1); newAuthor == 0 || oldAuthor == 0; id++ {
		if newAuthor == 0 && in(id) {
			newAuthor = id
		}
		if oldAuthor == 0 && shardOf(id) == other.Name {
			oldAuthor = id
		}
	}
	app := connectPgx(t, ctx, p.dsn("postgres"))
	mustExec(t, ctx, app, "INSERT INTO users (id, name) VALUES ($1, 'new'), ($2, 'old')", newAuthor, oldAuthor)
	mustExec(t, ctx, app, "INSERT INTO posts (author_id, id, body) VALUES ($1, 1, 'moving post')", oldAuthor)

	direct := map[string]*pgx.Conn{}
	for _, sh := range c.Shards {
		direct[sh.Name] = connectPgx(t, ctx, sh.Primary.DSN("postgres"))
	}
	copyUsersRange := func() {
		t.Helper()
		f, err := router.MovingRowsFilter(d, "id", []topology.Span{moving})
		if err != nil {
			t.Fatal(err)
		}
		mustExec(t, ctx, direct[dst.Name], "DELETE FROM users WHERE "+f)
		var buf bytes.Buffer
		if _, err := direct[src.Name].PgConn().CopyTo(ctx, &buf, "COPY (SELECT * FROM users WHERE "+f+") TO STDOUT"); err != nil {
			t.Fatal(err)
		}
		if _, err := direct[dst.Name].PgConn().CopyFrom(ctx, &buf, "COPY users FROM STDIN"); err != nil {
			t.Fatal(err)
		}
	}
	apply := func(cmd topology.Command) {
		t.Helper()
		if _, err := store.Apply(ctx, cmd); err != nil {
			t.Fatal(err)
		}
	}
	apply(topology.StartMove{Move: topology.Move{ID: "keyupd", Distribution: "users", Ranges: []topology.Span{moving}, From: src.Name, To: dst.Name}})
	apply(topology.SetMoveState{ID: "keyupd", From: topology.MovePending, To: topology.MoveCopying})
	copyUsersRange()
	apply(topology.SetMoveState{ID: "keyupd", From: topology.MoveCopying, To: topology.MoveCatchup})
	apply(topology.SetMoveState{ID: "keyupd", From: topology.MoveCatchup, To: topology.MoveCutover})

	done := make(chan error, 1)
	go func() {
		_, err := app.Exec(ctx, "UPDATE posts SET author_id = $1 WHERE author_id = $2", newAuthor, oldAuthor)
		done <- err
	}()
	select {
	case err := <-done:
		t.Fatalf("the key update ran during the cutover (err %v); it must wait for the flip", err)
	case <-time.After(300 * time.Millisecond):
	}
	copyUsersRange()
	apply(topology.FlipMove{ID: "keyupd"})
	var err error
	wait.Until(t, 15*time.Second, "the held key update to finish after the flip", func() bool {
		select {
		case err = <-done:
			return true
		default:
			return false
		}
	})
	if err != nil {
		t.Fatalf("held key update: %v", err)
	}
	for _, sh := range c.Shards {
		var n int
		if err := direct[sh.Name].QueryRow(ctx, "SELECT count(*) FROM posts WHERE author_id = $1 AND id = 1", newAuthor).Scan(&n); err != nil {
			t.Fatal(err)
		}
		if want := map[bool]int{true: 1, false: 0}[sh.Name == dst.Name]; n != want {
			t.Errorf("shard %s holds %d copies of the moved post, want %d (the move's target owns its new key)", sh.Name, n, want)
		}
		if err := direct[sh.Name].QueryRow(ctx, "SELECT count(*) FROM posts WHERE author_id = $1", oldAuthor).Scan(&n); err != nil || n != 0 {
			t.Errorf("shard %s still holds %d posts of the old author (%v)", sh.Name, n, err)
		}
	}
}
