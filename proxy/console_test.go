package proxy

import (
	"testing"
	"time"

	"github.com/shardproxy/shardproxy/planner/plan"
	"github.com/shardproxy/shardproxy/proxy/config"
)

func TestSQLStateClass(t *testing.T) {
	for code, want := range map[string]string{"42P01": "42", "0A000": "0A", "23505": "23", "": "XX", "42p01": "XX", "4201": "XX", "XX000": "XX"} {
		if got := sqlstateClass(code); got != want {
			t.Errorf("sqlstateClass(%q) = %q, want %q", code, got, want)
		}
	}
}

func TestRouteKindOf(t *testing.T) {
	single := &plan.Route{Shard: "s1"}
	cases := []struct {
		op          plan.Operator
		kind, shard string
	}{
		{single, routeSingle, "s1"},
		{&plan.Scatter{Shards: []string{"s0", "s1"}}, routeMulti, routeAnyShard},
		{&plan.Limit{Input: &plan.Scatter{}}, routeMulti, routeAnyShard},
		{&plan.Broadcast{}, routeBroadcast, routeAnyShard},
		{&plan.Session{Kind: "transaction"}, routeSession, routeAnyShard},
		{&plan.Explain{Inner: single}, routeSingle, "s1"},
		// BEGIN; one-shard statement; COMMIT counts as single-shard.
		{&plan.Sequence{Statements: []plan.Operator{&plan.Session{}, single, &plan.Session{}}}, routeSingle, "s1"},
		{&plan.Sequence{Statements: []plan.Operator{single, &plan.Route{Shard: "s2"}}}, routeMulti, routeAnyShard},
		{&plan.Sequence{Statements: []plan.Operator{single, &plan.Broadcast{}}}, routeBroadcast, routeAnyShard},
	}
	for i, c := range cases {
		if k, s := routeKindOf(c.op); k != c.kind || s != c.shard {
			t.Errorf("case %d (%T): %s/%s, want %s/%s", i, c.op, k, s, c.kind, c.shard)
		}
	}
}

// A request's statements widen its route: two single-shard statements on
// different shards make a multi-shard request; a note of an earlier
// request is not carried over.
func TestNoteRouteWidens(t *testing.T) {
	ss := &session{start: time.Now()}
	ss.noteRoute(&plan.Route{Shard: "s0"})
	ss.noteRoute(&plan.Session{})
	if n := ss.reqRoute; n.kind != routeSingle || n.shard != "s0" {
		t.Fatalf("after single + session: %+v", n)
	}
	ss.noteRoute(&plan.Route{Shard: "s1"})
	if n := ss.reqRoute; n.kind != routeMulti || n.shard != routeAnyShard {
		t.Fatalf("after two shards: %+v", n)
	}
	ss.start = ss.start.Add(time.Second) // the next request
	ss.noteRoute(&plan.Route{Shard: "s1"})
	if n := ss.reqRoute; n.kind != routeSingle || n.shard != "s1" {
		t.Fatalf("next request: %+v", n)
	}
}

func TestShowConfigMasksSecretsAndMarksRestartKeys(t *testing.T) {
	cfg := config.Default()
	cfg.AdminToken = "tok"
	cfg.Users = []config.User{{Name: "app", Password: "secret"}}
	cfg.Pool.Size = 7
	rows := map[string][]string{}
	for _, r := range showConfig(cfg).rows {
		rows[r[0]] = r
	}
	if r := rows["pool.size"]; r == nil || r[1] != "7" || r[3] != "yes" {
		t.Errorf("pool.size row: %v", r)
	}
	if r := rows["admin_token"]; r == nil || r[1] != "********" {
		t.Errorf("admin_token row: %v", r)
	}
	if r := rows["users"]; r == nil || r[1] != `[{"name":"app","password":"********","pool_mode":"","pool_size":0}]` {
		t.Errorf("users row: %v", r)
	}
	if r := rows["listen"]; r == nil || r[3] != "no" {
		t.Errorf("listen row: %v", r)
	}
}

func TestPauseGate(t *testing.T) {
	var g pauseGate
	g.release = make(chan struct{})
	if g.engaged() || g.resume() {
		t.Fatal("a new gate is open")
	}
	if !g.pause() || g.pause() || !g.engaged() {
		t.Fatal("pause: first engages, second refuses")
	}
	ch := g.releaseChan()
	if !g.resume() || g.engaged() {
		t.Fatal("resume")
	}
	select {
	case <-ch:
	default:
		t.Fatal("resume did not release holders")
	}
}
