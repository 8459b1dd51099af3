package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestKeepNotesCarriesTheHandWrittenBlock(t *testing.T) {
	path := filepath.Join(t.TempDir(), "benchmarks.md")
	fresh := "# Benchmarks\n\nintro\n\n## Throughput and latency\n\n| table |\n"

	first := keepNotes(fresh, path) // no previous file: an empty block
	if !strings.Contains(first, notesBegin+"\n"+notesEnd) || strings.Index(first, notesBegin) > strings.Index(first, "## Throughput") {
		t.Fatalf("empty notes block missing or misplaced:\n%s", first)
	}
	edited := strings.Replace(first, notesBegin+"\n", notesBegin+"\nthe TPC-B run failed because X\n", 1)
	if err := os.WriteFile(path, []byte(edited), 0o644); err != nil {
		t.Fatal(err)
	}
	second := keepNotes(strings.Replace(fresh, "| table |", "| new table |", 1), path)
	if !strings.Contains(second, "the TPC-B run failed because X") || !strings.Contains(second, "| new table |") {
		t.Fatalf("notes not kept or tables not replaced:\n%s", second)
	}
	if strings.Count(second, notesBegin) != 1 {
		t.Fatalf("notes block duplicated:\n%s", second)
	}
}

func TestParsePgbenchOutput(t *testing.T) {
	out := `pgbench (15.18 (Debian 15.18-0+deb12u1))
transaction type: <builtin: select only>
number of transactions actually processed: 324025
number of failed transactions: 0 (0.000%)
latency average = 1.534 ms
initial connection time = 12.449 ms
tps = 32590.123456 (without initial connection time)
`
	if m := reTPS.FindStringSubmatch(out); m == nil || m[1] != "32590.123456" {
		t.Fatalf("tps: %v", m)
	}
	if m := reLatency.FindStringSubmatch(out); m == nil || m[1] != "1.534" {
		t.Fatalf("latency: %v", m)
	}
	if m := reProcessed.FindStringSubmatch(out); m == nil || m[1] != "324025" {
		t.Fatalf("processed: %v", m)
	}
	if got := firstError("x\npgbench: error: client 3 aborted in command 4\n"); !strings.Contains(got, "client 3 aborted") {
		t.Fatalf("firstError: %q", got)
	}
}
