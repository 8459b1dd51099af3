// Package plan holds plan operators as data (Route, Scatter, Broadcast,
// SplitInsert, AllocateKeys, CopySplit, Explain, Session, Sequence, and the
// merge operators MergeSort, Sort, Limit, Aggregate, Having, Distinct and
// Project over a Scatter, evaluated by proxy/merge; merge.go states their
// column-index and ordering contracts).
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
