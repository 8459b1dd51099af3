// Package rebalance plans and runs online data moves between shards: the
// copy → catch-up → cutover → cleanup state machine and the controller that
// runs it on the Raft leader only (DESIGN.md decision 8, docs/rebalance.md).
//
// A move (topology.Move) takes some hash ranges of a distribution from one
// shard to another. Its state is recorded in the topology, so every proxy
// sees it and a new leader resumes it:
//
//	pending → copying → catchup → cutover → cleanup → (ended)
//	   └──────────┴─────────┴─────────┴──→ cancelling → (ended)
//
// pending: the tables of the distribution are described on the source
// (tables whose replica identity does not cover the key are refused before
// anything is created), created on the target, a publication with a row
// filter on the ranges (router.HashExpr: the router's own hash in SQL) is created
// on the source and a subscription (copy_data, streaming) on the target.
// copying: until every table finished its initial copy. catchup: until the
// slot lags less than Options.LagThreshold and a precheck (bucketed
// checksums, outside the hold) has compared source and target. cutover:
// proxies hold writes to the ranges (proxy/movehold.go); the controller
// fences the source (waits for transactions already writing), waits until
// the target confirmed the source's WAL position, verifies row counts per
// table and checksums of the buckets the precheck could not match, and
// flips the owner (topology.FlipMove) — or, past the hold timeout or on any
// failure, goes back to catchup so the held writes go to the source.
// cleanup: subscription, slot and publication dropped, moved rows deleted
// from the source in batches. cancelling: the same drops, and the copied
// rows deleted from the target; the source is never changed.
//
// At the flip the target's sequences are advanced past the source's
// (syncSequences), so rows inserted there later never take a value a moved
// row has.
//
// A shard added after the reference tables existed (topology
// ReferencesSyncing) is given them first (refsync.go, refsync_repl.go):
// tables with a usable replica identity are replicated logically like a
// move (publication, subscription with copy_data, precheck outside the
// hold; in a short hold of broadcasts: fence, the new shard past the fence
// position, counts and the precheck's suspect buckets compared, the
// subscription dropped), the others copied and corrected by bucket passes
// until a pass copies few rows, then corrected exactly in the hold; then
// ready. Moves to it wait in pending until then. Leftover reference-sync
// replication (a crash, a leader change, a removed shard) is swept by
// every controller when it starts and whenever a sync ends.
//
// Every step is idempotent, so a worker that restarts (a new leader) simply
// runs the step of the recorded state again; a move found in cutover by a
// worker that did not start that cutover is rolled back to catchup.
//
// Concurrency: Controller methods are safe for concurrent use; Run must run
// on the Raft leader only (RunWhileLeader). rebalance may import topology,
// router and pgx; never proxy or planner.
package rebalance
