// Package planner turns SQL text (and Bind values) into a plan: it parses
// with pg_query_go, caches analyses by SQL text, finds shard keys and emits a
// tree of planner/plan operators. It does no I/O.
//
// planner may import router, topology and pg_query_go; never proxy.
package planner
