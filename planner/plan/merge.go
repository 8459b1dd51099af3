package plan

import (
	"fmt"
	"strconv"
	"strings"
)

// Merge operators sit above a Scatter (directly or through each other) and
// turn the shards' result streams into the rows one server holding all the
// data would return. They are evaluated by package proxy/merge; see its
// doc for the runtime contract. Every column index in them is a position
// in the rows of the operator's input, which (because no merge operator
// reorders columns) is a position in the rows the Scatter's SQL returns on
// each shard:
//
//   - an index ≥ 0 counts from the first column;
//   - an index < 0 counts from the last (-1 is the last column). The
//     planner uses these for hidden columns it appended to a select list
//     whose width it cannot know (SELECT *).
//
// Resolve turns an index into a position once the width is known (from the
// shards' RowDescription).
//
// The order of operators from the Scatter up is fixed, any of them may be
// absent:
//
//	Scatter → MergeSort → Window → Distinct → Limit → Project   (no Aggregate)
//	Scatter → Aggregate → Evaluate → Having → Sort → Distinct → Limit → Project
//
// MergeSort merges streams the shards sorted; after an Aggregate rows
// must be sorted again, so Sort buffers them.

// Resolve returns the position of column index i in rows of width n (see
// the package comment on merge operators), or -1 when it is out of range.
func Resolve(i, n int) int {
	if i < 0 {
		i += n
	}
	if i < 0 || i >= n {
		return -1
	}
	return i
}

// SortKey is one ORDER BY key.
type SortKey struct {
	// Column is the input column holding the key value (see Resolve).
	Column int
	// Desc sorts descending.
	Desc bool
	// NullsFirst places NULLs before non-NULL values. The planner sets it
	// from NULLS FIRST/LAST, defaulting like PostgreSQL: NULLs are larger
	// than every value, so first with DESC and last with ASC.
	NullsFirst bool
	// Collation is the collation named by an explicit COLLATE on the key
	// ("" when none: the column's or database's collation). Text is
	// compared bytewise, which is right for "C", "POSIX" and "C.UTF-8"
	// only; the executor must refuse other collations (see proxy/merge).
	Collation string
}

func (k SortKey) String() string {
	s := strconv.Itoa(k.Column)
	if k.Desc {
		s += " desc"
	}
	if k.NullsFirst {
		s += " nulls first"
	} else {
		s += " nulls last"
	}
	if k.Collation != "" {
		s += " collate " + k.Collation
	}
	return s
}

// MergeSort merges its input's streams, each already sorted by Keys on the
// shard (the Scatter's SQL has the ORDER BY), into one stream sorted by
// Keys: a k-way heap merge that sends a row as soon as it is the smallest
// head. Ties keep no particular order (as on PostgreSQL).
type MergeSort struct {
	Input Operator
	Keys  []SortKey
}

// Sort buffers all input rows and sorts them by Keys (a stable sort). It
// is used above an Aggregate, whose output is not in any order. Buffered
// rows count against the memory limit.
type Sort struct {
	Input Operator
	Keys  []SortKey
}

// Limit skips Offset rows and then passes at most Count rows (Count < 0:
// no limit). When the statement took them from Bind parameters,
// CountParam and OffsetParam are their 0-based indexes (-1 otherwise) and
// Count and Offset hold the values the planner read from the execution's
// parameters (a NULL parameter is no limit / offset 0, like PostgreSQL).
// The Scatter below asks each shard for at most Count+Offset rows, unless
// an Aggregate or Having sits between them. The executor may stop reading
// (and cancel the shards) once Count rows are out.
type Limit struct {
	Input       Operator
	Count       int64
	Offset      int64
	CountParam  int
	OffsetParam int
}

// Aggregate functions of AggColumn.Func.
const (
	AggKey              = "key"                // a GROUP BY column: the group's value
	AggAny              = "any"                // an expression of the group keys: any (the first) value
	AggCount            = "count"              // partial count(...) per shard: the sum, bigint
	AggSum              = "sum"                // partial sum: the sum, exact; NULL when all partials are NULL
	AggAvg              = "avg"                // partial sum (this column) and partial count (Arg): sum/count
	AggMin              = "min"                // partial min: the smallest non-NULL
	AggMax              = "max"                // partial max: the largest non-NULL
	AggBoolAnd          = "bool_and"           // partial bool_and: AND of non-NULL partials
	AggBoolOr           = "bool_or"            // partial bool_or: OR of non-NULL partials
	AggCountDst         = "count_distinct"     // the shards return the argument's values (pushed into GROUP BY): count distinct non-NULL
	AggSumDst           = "sum_distinct"       // as count_distinct: sum of distinct non-NULL values
	AggAvgDst           = "avg_distinct"       // as count_distinct: avg of distinct non-NULL values
	AggStringAgg        = "string_agg"         // partial string_agg(x, Sep): concatenation with Sep between non-NULL partials
	AggArrayAgg         = "array_agg"          // partial array_agg(x): concatenation of the arrays
	AggOrderedStringAgg = "string_agg_ordered" // see AggColumn.Arg/OrderArg
	AggOrderedArrayAgg  = "array_agg_ordered"  // see AggColumn.Arg/OrderArg
	AggJsonbAgg         = "jsonb_agg"          // partial jsonb_agg(x): the elements of the arrays, concatenated
	AggOrderedJsonbAgg  = "jsonb_agg_ordered"  // partial jsonb_agg(x ORDER BY k), merged by Arg as the ordered array_agg
)

// Ordered reports whether f is an ordered aggregate, whose Arg column holds
// the partial array_agg of its ORDER BY key.
func Ordered(f string) bool {
	return f == AggOrderedStringAgg || f == AggOrderedArrayAgg || f == AggOrderedJsonbAgg
}

// AggColumn says how one output column of an Aggregate is computed from
// the rows of a group. The output column has the same position as the
// input column it reads (Aggregate keeps the row layout).
type AggColumn struct {
	// Func is one of the Agg* constants.
	Func string
	// Arg is a second input column: for avg/avg_distinct... the partial
	// count (avg only); for the ordered aggregates the column holding
	// array_agg(<order key> ORDER BY ...) of the same rows; -1 otherwise.
	Arg int
	// Sep is string_agg's delimiter (a constant in the statement).
	Sep string
	// Desc, NullsFirst: the ORDER BY inside an ordered string_agg/array_agg/jsonb_agg.
	Desc       bool
	NullsFirst bool
	// Distinct: an ordered aggregate of DISTINCT values (ordered by the
	// value itself): equal keys after the sort are kept once.
	Distinct bool
	// MoreKeys are an ordered aggregate's ORDER BY keys after the first:
	// each Column holds array_agg(<key> ORDER BY ...) of the same rows.
	MoreKeys []SortKey
	// Name is the output column name the client sees (the planner aliases
	// the partials with it, so it is also the shard's column name).
	Name string
}

func (c AggColumn) String() string {
	s := c.Func
	if c.Arg >= 0 {
		s += "(" + strconv.Itoa(c.Arg) + ")"
	}
	if c.Sep != "" {
		s += " sep " + strconv.Quote(c.Sep)
	}
	if Ordered(c.Func) {
		s += SortKey{Column: c.Arg, Desc: c.Desc, NullsFirst: c.NullsFirst}.String()[len(strconv.Itoa(c.Arg)):]
		for _, k := range c.MoreKeys {
			s += ", " + k.String()
		}
		if c.Distinct {
			s += " distinct"
		}
	}
	return s
}

// Aggregate groups its input rows by the GroupBy columns (NULLs equal,
// values compared decoded, so the same value in text or binary form is
// one group) and emits one row per group: column i is Columns[i] applied
// to the group's values of column i (len(Columns) is the input width).
// Scalar (no GROUP BY) means exactly one output row, even with no input
// rows (count gives 0, other aggregates NULL). Groups are emitted in the
// order they first appear. Group state counts against the memory limit.
type Aggregate struct {
	Input   Operator
	GroupBy []int
	Columns []AggColumn
	Scalar  bool
}

// Having filters rows by Cond (kept when it is true; false and NULL drop
// the row), evaluated on the output of an Aggregate.
type Having struct {
	Input Operator
	Cond  *Cond
}

// Cond is a boolean expression over the columns of a row: Op "and", "or",
// "not" over Args; a comparison ("=", "<>", "<", "<=", ">", ">=") of
// Args[0] and Args[1]; "is_null" / "is_not_null" of Args[0]; or a leaf:
// "column" (Column) or "const" (Value as text, Null for NULL). Comparing
// a column with a constant decodes the constant as the column's type;
// comparisons follow SQL three-valued logic.
type Cond struct {
	Op     string
	Args   []*Cond
	Column int
	Value  string
	Null   bool
}

func (c *Cond) String() string {
	switch c.Op {
	case "column":
		return "$" + strconv.Itoa(c.Column)
	case "const":
		if c.Null {
			return "NULL"
		}
		return "'" + strings.ReplaceAll(c.Value, "'", "''") + "'"
	case "and", "or":
		parts := make([]string, len(c.Args))
		for i, a := range c.Args {
			parts[i] = a.String()
		}
		return "(" + strings.Join(parts, " "+strings.ToUpper(c.Op)+" ") + ")"
	case "not":
		return "NOT " + c.Args[0].String()
	case "is_null", "is_not_null":
		return c.Args[0].String() + " " + strings.ToUpper(strings.ReplaceAll(c.Op, "_", " "))
	}
	if len(c.Args) == 2 {
		return c.Args[0].String() + " " + c.Op + " " + c.Args[1].String()
	}
	return c.Op
}

// Distinct passes the first row of each distinct combination of Columns
// (nil: all columns; values compared decoded; NULLs equal) and drops later
// ones, so a sorted input stays sorted. For SELECT DISTINCT and UNION, Columns are all
// visible columns; for DISTINCT ON the ON expressions (the input is
// sorted by them first, so the first row is the one PostgreSQL keeps).
// Seen keys count against the memory limit.
type Distinct struct {
	Input   Operator
	Columns []int
	On      bool
}

// SetOp computes a set operation over its parts (UNION, INTERSECT, EXCEPT,
// each with or without ALL, nested as the statement nests them) from its
// input, which holds the rows of every part (the shards run the parts as
// one UNION ALL), each with a last column — an int the shards fill in —
// naming its part, 1 to Parts in the statement's order. Rows are equal
// when their other columns are (values compared decoded; NULLs equal).
// SetOp counts each distinct row's copies per part — dividing by Shards
// the counts of the Replicated parts, which read no distributed table, so
// every shard returned all their rows — and returns the row as many times
// as Root says: UNION ALL adds the counts, INTERSECT ALL takes the lower,
// EXCEPT ALL subtracts (not below 0), and without ALL the result is 1 when
// that count would be positive. Rows come out in the order their first
// copy arrived, still with the part column. SetOp reads its whole input
// before its first row; the rows and counts it keeps count against the
// memory limit.
type SetOp struct {
	Input      Operator
	Root       *SetNode
	Parts      int
	Replicated []int // 1-based parts
	Shards     int
}

// SetNode is one node of a set operation: a part (Part > 0), or Op
// ("UNION", "INTERSECT", "EXCEPT"; All for ALL) over Left and Right.
type SetNode struct {
	Part        int
	Op          string
	All         bool
	Left, Right *SetNode
}

// String shows the node as SQL-like text over part numbers:
// "(1 UNION ALL 2) EXCEPT 3".
func (n *SetNode) String() string {
	if n.Part > 0 {
		return strconv.Itoa(n.Part)
	}
	side := func(c *SetNode) string {
		if c.Part > 0 {
			return c.String()
		}
		return "(" + c.String() + ")"
	}
	op := n.Op
	if n.All {
		op += " ALL"
	}
	return side(n.Left) + " " + op + " " + side(n.Right)
}

// Window computes ranking window functions over its input, which arrives
// sorted by Keys (the window's PARTITION BY, then its ORDER BY, merged
// from the shards): each of Columns is a bigint column the shards left NULL
// that gets the function's value — row_number() counts rows, rank() is the
// row number of the first of a row's peers (rows equal on Keys),
// dense_rank() counts distinct peer groups — counting again from 1 where
// the first Partition keys change. For lag and first_value the shards
// return the function's argument in the column: lag(x, N) gets the x of
// the row N rows before in the partition (NULL when there is none), lead(x) the next
// row's (NULL on its last), first_value(x) the partition's first row's x,
// last_value(x) the last peer's (ROWS: the row's own), nth_value(x, N) the
// partition's N-th row's once the frame reaches it.
// For the running aggregates count, sum, min and max the shards return
// each row's own aggregate (the function over a one-row frame, so typed as
// its result) and the proxy combines them from the partition's start
// (frame RANGE or ROWS UNBOUNDED PRECEDING … CURRENT ROW; without ORDER
// BY every row of a partition is a peer: the partition's total).
type Window struct {
	Input     Operator
	Keys      []SortKey
	Partition int
	Columns   []WindowColumn
}

// WindowColumn is one ranking function's output column (see Resolve).
type WindowColumn struct {
	Column int
	Func   string // row_number, rank, dense_rank, lag, lead, first_value, last_value, nth_value, count, sum, min or max
	// Rows: an aggregate's frame is ROWS … CURRENT ROW (up to the row
	// itself); otherwise RANGE (up to the row's last peer), the default.
	Rows bool
	// FrameRows > 0 (with Rows): the frame is the row and the FrameRows-1
	// rows before it in its partition (ROWS BETWEEN FrameRows-1 PRECEDING
	// AND CURRENT ROW, a moving aggregate); 0: from the partition's start.
	FrameRows int64
	// N is nth_value's position, lag's offset (1 for lag(x)) or ntile's
	// bucket count.
	N int64
	// Arg is avg's hidden input column: each row's exact sum(x) (Column
	// holds avg(x) over the row itself, for the result's type); with
	// Default, lag's or lead's hidden column of each row's default value
	// (typed as the result), taken where no row is N rows away.
	Arg     int
	Default bool
	// OfGroups: a running count, sum, avg, min or max of an aggregate over
	// the proxy's groups (sum(count(*)) OVER (ORDER BY month)): Arg holds
	// each group's merged aggregate, Column only types the result; count
	// counts the groups whose aggregate is not NULL, avg averages those
	// aggregates.
	OfGroups bool
}

// Project drops the last Hidden columns of every row and of the
// RowDescription: columns the planner appended for sorting, grouping or
// HAVING that the client did not ask for.
type Project struct {
	Input  Operator
	Hidden int
}

var (
	_ Operator = (*MergeSort)(nil)
	_ Operator = (*Sort)(nil)
	_ Operator = (*Limit)(nil)
	_ Operator = (*Aggregate)(nil)
	_ Operator = (*Having)(nil)
	_ Operator = (*Distinct)(nil)
	_ Operator = (*Project)(nil)
	_ Operator = (*Window)(nil)
)

func (o *Window) Inputs() []Operator { return []Operator{o.Input} }
func (o *Window) Describe() Description {
	cols := make([]any, len(o.Columns))
	for i, c := range o.Columns {
		cols[i] = fmt.Sprintf("%d %s", c.Column, c.Func)
		if c.Rows {
			cols[i] = cols[i].(string) + " rows"
		}
		if c.FrameRows > 0 {
			cols[i] = fmt.Sprintf("%s frame(%d)", cols[i], c.FrameRows)
		}
		if c.Default {
			cols[i] = fmt.Sprintf("%s default(%d)", cols[i], c.Arg)
		}
	}
	f := map[string]any{"keys": keysToAny(o.Keys), "columns": cols}
	if o.Partition > 0 {
		f["partition"] = o.Partition
	}
	return Description{Name: "Window", Fields: f}
}

func keysToAny(keys []SortKey) []any {
	out := make([]any, len(keys))
	for i, k := range keys {
		out[i] = k.String()
	}
	return out
}

func (o *MergeSort) Inputs() []Operator { return []Operator{o.Input} }
func (o *MergeSort) Describe() Description {
	return Description{Name: "MergeSort", Fields: map[string]any{"keys": keysToAny(o.Keys)}}
}

func (o *Sort) Inputs() []Operator { return []Operator{o.Input} }
func (o *Sort) Describe() Description {
	return Description{Name: "Sort", Fields: map[string]any{"keys": keysToAny(o.Keys)}}
}

func (o *Limit) Inputs() []Operator { return []Operator{o.Input} }
func (o *Limit) Describe() Description {
	f := map[string]any{"count": o.Count, "offset": o.Offset}
	if o.CountParam >= 0 {
		f["count_param"] = o.CountParam
	}
	if o.OffsetParam >= 0 {
		f["offset_param"] = o.OffsetParam
	}
	return Description{Name: "Limit", Fields: f}
}

func (o *Aggregate) Inputs() []Operator { return []Operator{o.Input} }
func (o *Aggregate) Describe() Description {
	cols := make([]any, len(o.Columns))
	for i, c := range o.Columns {
		cols[i] = fmt.Sprintf("%d %s: %s", i, c.Name, c.String())
	}
	f := map[string]any{"columns": cols}
	if len(o.GroupBy) > 0 {
		f["group_by"] = intsToAny(o.GroupBy)
	}
	if o.Scalar {
		f["scalar"] = true
	}
	return Description{Name: "Aggregate", Fields: f}
}

func (o *Having) Inputs() []Operator { return []Operator{o.Input} }
func (o *Having) Describe() Description {
	return Description{Name: "Having", Fields: map[string]any{"cond": o.Cond.String()}}
}

func (o *Distinct) Inputs() []Operator { return []Operator{o.Input} }
func (o *Distinct) Describe() Description {
	f := map[string]any{"columns": "all"}
	if o.Columns != nil {
		f["columns"] = intsToAny(o.Columns)
	}
	if o.On {
		f["on"] = true
	}
	return Description{Name: "Distinct", Fields: f}
}

func (o *SetOp) Inputs() []Operator { return []Operator{o.Input} }
func (o *SetOp) Describe() Description {
	f := map[string]any{"op": o.Root.String()}
	if len(o.Replicated) > 0 {
		f["replicated"] = intsToAny(o.Replicated)
	}
	return Description{Name: "SetOp", Fields: f}
}

func (o *Project) Inputs() []Operator { return []Operator{o.Input} }
func (o *Project) Describe() Description {
	return Description{Name: "Project", Fields: map[string]any{"hidden": o.Hidden}}
}
