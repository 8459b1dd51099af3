// Package merge evaluates the planner's merge operators (planner/plan:
// MergeSort, Sort, Limit, Aggregate, Having, Distinct, SetOp, Window,
// Evaluate, Project over a Scatter) on the shards' result streams and produces the rows and the
// RowDescription one PostgreSQL server holding all the data would send.
// It is pure: no I/O, no goroutines; it must not import package proxy.
//
// # Contract with the executor
//
//  1. Send the Scatter's SQL (already rewritten by the planner) with the
//     original Bind values to every shard in Scatter.Shards. Ask the shards
//     for any result formats: the merge decodes both. Asking for the
//     client's format for the visible columns avoids a conversion; for
//     timestamptz, date, time and timestamp columns it is required when
//     the client wants text (their text form depends on session settings
//     the merge does not know), and DateStyle must be ISO and
//     IntervalStyle postgres when those types come as text.
//  2. Take the RowDescription from one shard (they are identical) and call
//     New with the plan root, that description, one Stream per shard (for a
//     plan without MergeSort one fan-in Stream is fine), the client's
//     result format codes, the memory limit and the shards' collation.
//  3. Send Result.RowDescription to the client, then the rows of
//     Result.Next until io.EOF. An error from Next (a shard's, or a merge
//     error with SQLSTATE: 53200 memory limit, 22003 overflow, 0A000, XX000)
//     ends the statement: cancel the shards still running and send one
//     ErrorResponse. After a Limit is satisfied Next returns io.EOF without
//     draining the shards: cancel or drain them.
//  4. Command tag: SELECT <rows sent>.
//
// Column indexes in the operators address the shards' rows; negative ones
// count from the end (plan.Resolve). Rows from a Stream must stay valid
// until that stream's next Next; a row from Result.Next until the next
// call.
//
// # Semantics
//
// Values are compared decoded (int2/4/8, oid, numeric, float4/8 with NaN
// largest, text/varchar/bpchar/name/"char", bytea, bool, date, time,
// timestamp, timestamptz, interval by its 30-day-month span, uuid,
// one-dimensional arrays of those as array_cmp, jsonb as jsonb_cmp: see
// jsonb.go), in text or binary format, NULLs placed as the sort key says. Text compares
// bytewise: that is PostgreSQL's order only for the collations C, POSIX and
// C.UTF-8 (glibc's C.UTF-8 sorts by code point, which for UTF-8 is byte
// order). Other locales (en_US.UTF-8 ...) order text by rules that
// golang.org/x/text/collate does not reproduce exactly (glibc's tables
// differ in punctuation, case and tie-breaking), so New refuses text sort
// keys and text min/max under them with 0A000 and the hint to sort with
// COLLATE "C"; Options.Collation names the shards' collation.
//
// Aggregates combine partials: count sums counts (bigint); sum is exact
// (integers with big integers: sum(int2/int4) is bigint and fails with
// 22003 like PostgreSQL beyond its range, sum(int8) and sum(numeric) are
// numeric with the largest scale of the inputs); avg divides like
// numeric_div (scale from select_div_scale, half away from zero) for
// integer and numeric inputs, float8 for floats. Float sums add the shards'
// partial sums, so the last bits may differ from one server's sum (float
// addition is not associative; PostgreSQL's parallel aggregation has the
// same property); avg(float4) sums in float4 on the shards. count/sum/avg
// (DISTINCT x) get x's distinct values from the shards and deduplicate them
// by value. min/max keep the extreme partial; bool_and/bool_or combine;
// string_agg and array_agg concatenate partials (in arrival order: their
// order is unspecified without ORDER BY, as in PostgreSQL), and with
// ORDER BY inside merge the shards' arrays of values by the arrays of sort
// keys.
//
// Evaluate (expressions over aggregates, stddev/variance) hands batches of
// at most plan.Evaluate.BatchRows merged rows to Options.Evaluator, the
// executor's I/O, and puts PostgreSQL's results in the probe columns,
// whose descriptions the shards already gave; stddev/variance inputs that
// are not integer or numeric fail New with 0A000.
//
// SetOp (set operations the shards cannot run themselves) reads its whole
// input first and keeps one row and a count per part for each distinct row; json columns fail with 42883
// as on PostgreSQL, other types it cannot compare with 0A000.
//
// Memory: Sort rows, Aggregate groups and their state, Distinct keys and
// SetOp's rows are accounted (an estimate of their bytes); beyond Options.MemoryLimit
// Next fails with 53200. MergeSort holds one row per shard, Evaluate one
// batch, Limit and Project nothing.
package merge
