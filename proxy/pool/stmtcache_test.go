package pool

import (
	"slices"
	"testing"
)

func TestStmtCacheLRU(t *testing.T) {
	c := NewStmtCache(3)
	for _, n := range []string{"a", "b", "c"} {
		if ev := c.Add(n); ev != nil {
			t.Fatalf("Add(%s) evicted %v", n, ev)
		}
	}
	if !c.Has("a") { // a becomes most recent: order a, c, b
		t.Fatal("Has(a) = false")
	}
	if ev := c.Add("d"); !slices.Equal(ev, []string{"b"}) {
		t.Fatalf("Add(d) evicted %v, want [b]", ev)
	}
	if got := c.Names(); !slices.Equal(got, []string{"d", "a", "c"}) {
		t.Fatalf("Names = %v", got)
	}
	if ev := c.Add("c"); ev != nil || c.Len() != 3 { // re-add: no eviction, bumped
		t.Fatalf("re-Add(c) evicted %v, len %d", ev, c.Len())
	}
	c.Remove("a")
	c.Remove("zz")
	if c.Has("a") || c.Len() != 2 {
		t.Fatalf("Remove failed: %v", c.Names())
	}
	c.Clear()
	if c.Len() != 0 || len(c.Names()) != 0 || c.Has("c") {
		t.Fatal("Clear failed")
	}
	if ev := c.Add("x"); ev != nil || !slices.Equal(c.Names(), []string{"x"}) {
		t.Fatalf("Add after Clear: %v %v", ev, c.Names())
	}
	if NewStmtCache(0).Max() != 1 {
		t.Fatal("max < 1 not clamped")
	}
}
