package main

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func TestParseShardCounts(t *testing.T) {
	got, err := parseShardCounts(" 1, 2,4 ")
	if err != nil || !reflect.DeepEqual(got, []int{1, 2, 4}) {
		t.Fatalf("parseShardCounts: %v, %v", got, err)
	}
	for _, bad := range []string{"", ",", "0", "1,x", "2,1", "1,1", "-3"} {
		if _, err := parseShardCounts(bad); err == nil {
			t.Errorf("parseShardCounts(%q): no error", bad)
		}
	}
}

func TestParseProtocols(t *testing.T) {
	got, err := parseProtocols("prepared, extended")
	if err != nil || !reflect.DeepEqual(got, []string{"prepared", "extended"}) {
		t.Fatalf("parseProtocols: %v, %v", got, err)
	}
	for _, bad := range []string{"", "fast", "prepared,x"} {
		if _, err := parseProtocols(bad); err == nil {
			t.Errorf("parseProtocols(%q): no error", bad)
		}
	}
}

func TestParsePgbenchRun(t *testing.T) {
	out := "transaction type: /tmp/x/select.sql\nnumber of transactions actually processed: 1234\n" +
		"number of failed transactions: 0 (0.000%)\nlatency average = 2.500 ms\ntps = 3200.5 (without initial connection time)\n"
	r := parsePgbench(out, nil)
	if r.tps != 3200.5 || r.latencyMs != 2.5 || r.processed != 1234 || r.failure != "" {
		t.Fatalf("parsePgbench: %+v", r)
	}
	if r := parsePgbench(out, errors.New("exit status 2")); r.failure == "" {
		t.Fatal("an exit error must fail the run")
	}
	if r := parsePgbench("pgbench: error: connection refused\n", nil); !strings.Contains(r.failure, "connection refused") {
		t.Fatalf("no transactions: %q", r.failure)
	}
	failed := strings.Replace(out, "failed transactions: 0 ", "failed transactions: 3 ", 1)
	if r := parsePgbench(failed, nil); !strings.HasPrefix(r.failure, "3 failed") {
		t.Fatalf("failed transactions: %q", r.failure)
	}
}

func TestAggregateScaleoutAndRatio(t *testing.T) {
	rs := []soResult{
		{shards: 1, round: 0, workload: "select", protocol: "prepared", target: "shardproxy", tps: 99999, processed: 1}, // warm-up: ignored
		{shards: 1, round: 1, workload: "select", protocol: "prepared", target: "shardproxy", tps: 1000, processed: 10000, proxyCPU: 0.5},
		{shards: 1, round: 2, workload: "select", protocol: "prepared", target: "shardproxy", tps: 1200, processed: 12000, proxyCPU: 0.6},
		{shards: 4, round: 1, workload: "select", protocol: "prepared", target: "shardproxy", tps: 4000, processed: 40000, proxyCPU: 2},
		{shards: 4, round: 2, workload: "select", protocol: "prepared", target: "shardproxy", failure: "boom"},
	}
	base := aggregateScaleout(rs, 1, "select", "prepared", "shardproxy")
	if base.good != 2 || base.runs != 2 || base.tps != 1100 || base.processed != 22000 {
		t.Fatalf("base: %+v", base)
	}
	if got := base.usPer(base.proxyCPU); got != "50.0" {
		t.Fatalf("µs per query: %s", got)
	}
	four := aggregateScaleout(rs, 4, "select", "prepared", "shardproxy")
	if four.good != 1 || four.runs != 2 || four.failure != "boom" || !strings.Contains(four.tpsCell(), "1/2 runs failed") {
		t.Fatalf("four: %+v %s", four, four.tpsCell())
	}
	if r, s := scaleRatio(four, base); s != "3.64×" || r < 3.63 || r > 3.64 {
		t.Fatalf("ratio: %v %s", r, s)
	}
	if _, s := scaleRatio(aggregateScaleout(rs, 2, "select", "prepared", "shardproxy"), base); s != "n/a" {
		t.Fatalf("missing runs: %s", s)
	}
}

func TestReplaceScaleoutKeepsNotesAndTheRest(t *testing.T) {
	section := func(table string) string {
		return scaleoutBegin + "\n## Scale-out\n\n" + scaleoutNotesBegin + "\n" + scaleoutNotesEnd + "\n\n" + table + "\n" + scaleoutEnd
	}
	// A new file gets a heading; an existing one gets the block appended.
	if doc := replaceScaleout("", section("| a |")); !strings.HasPrefix(doc, "# Benchmarks\n") || !strings.Contains(doc, "| a |") {
		t.Fatalf("new file:\n%s", doc)
	}
	compare := "# Benchmarks\n\nintro\n\n## Machine\n\n- CPU\n"
	doc := replaceScaleout(compare, section("| a |"))
	if !strings.HasPrefix(doc, compare) || !strings.Contains(doc, "| a |") {
		t.Fatalf("append:\n%s", doc)
	}
	// Hand-written notes inside the block survive; the table is replaced;
	// the text around the block is untouched.
	doc = strings.Replace(doc, scaleoutNotesBegin+"\n", scaleoutNotesBegin+"\nproxy-bound at 4 shards\n", 1) + "\ntrailer\n"
	doc2 := replaceScaleout(doc, section("| b |"))
	if !strings.Contains(doc2, "proxy-bound at 4 shards") || strings.Contains(doc2, "| a |") || !strings.Contains(doc2, "| b |") ||
		!strings.HasPrefix(doc2, compare) || !strings.HasSuffix(doc2, "\ntrailer\n") || strings.Count(doc2, scaleoutBegin) != 1 {
		t.Fatalf("replace:\n%s", doc2)
	}

	// The comparison report keeps the scale-out block of the previous file
	// and the sections after it.
	path := filepath.Join(t.TempDir(), "benchmarks.md")
	if err := os.WriteFile(path, []byte(doc2), 0o644); err != nil {
		t.Fatal(err)
	}
	fresh := keepScaleout("# Benchmarks\n\nnew tables\n", path)
	if !strings.Contains(fresh, "new tables") || !strings.Contains(fresh, "| b |") || !strings.Contains(fresh, "proxy-bound at 4 shards") ||
		!strings.HasSuffix(fresh, "\ntrailer\n") {
		t.Fatalf("keepScaleout:\n%s", fresh)
	}
	if got := keepScaleout("x\n", filepath.Join(t.TempDir(), "missing.md")); got != "x\n" {
		t.Fatalf("no previous file: %q", got)
	}
}
