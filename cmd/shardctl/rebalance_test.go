package main

import (
	"math"
	"testing"
	"time"

	"github.com/shardproxy/shardproxy/rebalance"
	"github.com/shardproxy/shardproxy/topology"
)

func TestParseRangeArg(t *testing.T) {
	for _, tc := range []struct {
		in     string
		lo, hi int64
		whole  bool
		bad    bool
	}{
		{in: "-9223372036854775808:-1", lo: math.MinInt64, hi: -1},
		{in: "5:9223372036854775807", lo: 5, hi: math.MaxInt64},
		{in: "-42", lo: -42, hi: -42, whole: true},
		{in: "7", lo: 7, hi: 7, whole: true},
		{in: "9:5", bad: true},
		{in: "a:b", bad: true},
		{in: "", bad: true},
	} {
		lo, hi, whole, err := parseRangeArg(tc.in)
		if (err != nil) != tc.bad || (!tc.bad && (lo != tc.lo || hi != tc.hi || whole != tc.whole)) {
			t.Errorf("parseRangeArg(%q) = %d, %d, %v, %v", tc.in, lo, hi, whole, err)
		}
	}
}

func TestMoveStatusFields(t *testing.T) {
	if got := spansString([]topology.Span{{Lo: 1, Hi: 4}, {Lo: 5, Hi: 9}, {Lo: 20, Hi: 30}}); got != "1:9,20:30" {
		t.Errorf("spansString = %q", got)
	}
	if got := progressBar(50, 200, 8); got != "[##......] 50/200" {
		t.Errorf("progressBar = %q", got)
	}
	now := time.Now()
	p := rebalance.Progress{Phase: "copying", RowsCopied: 100, RowsTotal: 400, Started: now.Add(-10 * time.Second)}
	if got := moveETA(p, now); got != "30s" {
		t.Errorf("moveETA = %q", got)
	}
	p.Phase = "catchup"
	p.LagBytes = 2048
	if moveETA(p, now) != "-" || moveLag(p) != "2.0 kB" {
		t.Errorf("catchup: eta %q lag %q", moveETA(p, now), moveLag(p))
	}
}
