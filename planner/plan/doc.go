// Package plan holds plan operators as data (Route, Scatter, MergeSort,
// Limit, Aggregate, SplitInsert, Broadcast …). Each operator describes
// itself for EXPLAIN and golden tests; only leaf operators name shards.
package plan
