package e2e

import (
	"context"
	"testing"

	"github.com/shardproxy/shardproxy/test/pgcluster"
)

// TestRebalanceSourceRestartDuringCatchup restarts the source shard's
// PostgreSQL (a clean stop and start) while a move is in catchup
// (subscription streaming, precheck running) with a client inserting
// through the proxy: the move must end (done, or cancelled), every
// acknowledged row must be readable through the proxy exactly once, the
// shards together must hold no extra copies, and no slot, publication or
// subscription may be left (sourceOutageDuringCatchup, in
// rebalance_crash_test.go, which also has the SIGKILL variant).
func TestRebalanceSourceRestartDuringCatchup(t *testing.T) {
	sourceOutageDuringCatchup(t, "restarted", func(ctx context.Context, source *pgcluster.Instance) error {
		return source.Restart(ctx)
	})
}
