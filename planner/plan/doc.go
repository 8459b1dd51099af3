// Package plan holds plan operators as data (Route, Scatter, Broadcast,
// SplitInsert, AllocateKeys, CopySplit, Explain, Session, Sequence; merge
// operators such as MergeSort, Limit and Aggregate will wrap a Scatter).
// Each operator describes itself (Describe, Tree, Lines) for EXPLAIN and
// golden tests; only leaf operators name shards and carry SQL. Executors
// (package proxy) switch on the concrete types; every field an executor
// needs is in the operator.
//
// CopySplitter is the pure row splitter for CopySplit. Error and
// Unsupported are the client-visible planning errors (SQLState method).
//
// Operators are immutable after planning and safe to share. plan may
// import router and topology; it does no I/O.
package plan
