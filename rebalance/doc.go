// Package rebalance plans and runs online data moves between shards: the
// copy → catch-up → cutover → cleanup state machine and the controller that
// runs it on the Raft leader only.
//
// rebalance may import topology, router and pgconn; never proxy or planner.
package rebalance
