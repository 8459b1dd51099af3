package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/shardproxy/shardproxy/test/pgcluster"
)

// TestCommands runs migrate (twice), seed and load as a user would.
func TestCommands(t *testing.T) {
	c := pgcluster.StartT(t, pgcluster.Options{})
	dsn := c.Shards[0].Primary.DSN("postgres")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	runOK := func(args ...string) (string, string) {
		t.Helper()
		var out, errb bytes.Buffer
		if err := run(ctx, args, &out, &errb); err != nil {
			t.Fatalf("socialapp %s: %v\nstderr: %s", strings.Join(args, " "), err, errb.String())
		}
		return out.String(), errb.String()
	}
	runOK("migrate", "--dsn", dsn)
	runOK("migrate", "--dsn", dsn)
	out, progress := runOK("seed", "--dsn", dsn, "--users", "100", "--posts", "500")
	if !strings.Contains(out, "seeded 100 users") || !strings.Contains(out, "500 posts") {
		t.Errorf("seed output: %q", out)
	}
	for _, stage := range []string{"users", "follows", "posts", "comments", "100%"} {
		if !strings.Contains(progress, stage) {
			t.Errorf("progress bar lacks %q: %q", stage, progress)
		}
	}
	out, _ = runOK("load", "--dsn", dsn, "--users", "2", "--duration", "300ms")
	if !strings.Contains(out, "0 errors") || !strings.Contains(out, "p99") {
		t.Errorf("load output: %q", out)
	}
	var errb bytes.Buffer
	if err := run(ctx, []string{"frobnicate"}, &errb, &errb); err == nil || !strings.Contains(errb.String(), "usage") {
		t.Errorf("unknown command: err %v, output %q", err, errb.String())
	}
	if err := run(ctx, []string{"migrate", "--dsn", ""}, &errb, &errb); err == nil {
		t.Error("migrate without a DSN succeeded")
	}
}
