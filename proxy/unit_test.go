package proxy

import (
	"testing"

	"github.com/shardproxy/shardproxy/planner/plan"
)

func TestMayTrack(t *testing.T) {
	for sql, want := range map[string]bool{
		"SELECT abalance FROM pgbench_accounts WHERE aid = 1": false,
		"select 1":                                false,
		"SET search_path = x":                     true,
		"reset all":                               true,
		"select set_config('a','b',false)":        true,
		"DISCARD ALL":                             true,
		"PREPARE p AS SELECT 1":                   true,
		"EXECUTE p":                               true,
		"DEALLOCATE p":                            true,
		"LISTEN c":                                true,
		"SELECT pg_advisory_lock(1)":              true,
		"CREATE TEMP TABLE x()":                   true,
		"DECLARE c CURSOR WITH HOLD FOR SELECT 1": true,
		"UPDATE t SET a = 1":                      true, // false positive, fine
	} {
		if got := mayTrack([]byte(sql)); got != want {
			t.Errorf("mayTrack(%q) = %v", sql, got)
		}
	}
}

func TestParseOptions(t *testing.T) {
	got, err := parseOptions(`-c search_path=a,b --statement-timeout=5s -c x.y=hello\ world`)
	if err != nil {
		t.Fatal(err)
	}
	if got["search_path"] != "a,b" || got["statement_timeout"] != "5s" || got["x.y"] != "hello world" {
		t.Fatalf("%v", got)
	}
	if _, err := parseOptions("-X"); err == nil {
		t.Fatal("want error")
	}
}

func TestStmtIntern(t *testing.T) {
	in := newStmtIntern()
	a := in.protocol([]byte("SELECT 1"), []byte{0, 0})
	b := in.protocol([]byte("SELECT 1"), []byte{0, 0})
	c := in.protocol([]byte("SELECT 1"), []byte{0, 1, 0, 0, 0, 23})
	if a != b || a == c || a.name == c.name || !isServerStmtName(a.name) {
		t.Fatalf("%s %s %s", a.name, b.name, c.name)
	}
	s := in.sql("PREPARE \x01 AS SELECT 1")
	if s.name[:4] != "sps_" || !isServerStmtName(s.name) {
		t.Fatal(s.name)
	}
	// Retired entries are replaced by new ones under names never given
	// out before (server connections may keep the old ones prepared), and
	// a schema change keeps only the current generation's names.
	seen := map[string]bool{a.name: true, c.name: true, s.name: true}
	in.retire(a)
	a2 := in.protocol([]byte("SELECT 1"), []byte{0, 0})
	in.retireAll()
	a3 := in.protocol([]byte("SELECT 1"), []byte{0, 0})
	c3 := in.protocol([]byte("SELECT 1"), []byte{0, 1, 0, 0, 0, 23})
	in.retire(a3)
	a4 := in.protocol([]byte("SELECT 1"), []byte{0, 0})
	for _, e := range []*stmtEntry{a2, a3, c3, a4} {
		if seen[e.name] || !isServerStmtName(e.name) {
			t.Fatalf("name %q given out again (or not a server name)", e.name)
		}
		seen[e.name] = true
	}
	if in.protocol([]byte("SELECT 1"), []byte{0, 1, 0, 0, 0, 23}) != c3 || len(in.byName) != 3 {
		t.Fatalf("after retireAll: %d names held, want the 3 of this generation", len(in.byName))
	}
}

// TestPullOutWritesAreHeld: an UPDATE or DELETE whose subqueries run first
// routes its rows at run time, so a data move's cutover must hold it by
// its distribution; a pulled-out SELECT writes nothing.
func TestPullOutWritesAreHeld(t *testing.T) {
	read := &plan.PullOut{SQL: "SELECT 1"}
	write := &plan.PullOut{SQL: "DELETE FROM likes WHERE user_id IN (SELECT id FROM users)", Distribution: "posts"}
	if writes(read) || runtimeRouted(read) != "" {
		t.Errorf("pulled-out SELECT: writes=%v routed=%q, want false and none", writes(read), runtimeRouted(read))
	}
	if !writes(write) || runtimeRouted(write) != "posts" {
		t.Errorf("pulled-out DELETE: writes=%v routed=%q, want true and posts", writes(write), runtimeRouted(write))
	}
}
