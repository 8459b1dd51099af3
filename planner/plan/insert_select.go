package plan

import (
	"strings"
)

// InsertSelectBatchRows is the most rows one INSERT of an InsertSelect
// carries (fewer when the rows have so many columns that the parameters
// would pass PostgreSQL's limit of 65535 per statement).
const InsertSelectBatchRows = 1000

// InsertSelectBatchBytes bounds the values one batch holds in memory: a
// batch is written once it reaches this size even with fewer rows.
const InsertSelectBatchBytes = 4 << 20

// InsertSelect is INSERT … SELECT whose rows must pass through the proxy
// (Citus' "INSERT … SELECT via coordinator"): the target's distribution
// key does not come, on each shard, from a colocated table's key on that
// same shard (it comes from another column, a reference table, a
// constant, a merge over several shards …), or the target is a reference
// table (or a table not in the topology) and the SELECT reads distributed
// tables.
//
// The executor runs Select (the SELECT planned on its own: a Route,
// Scatter with merge operators, or PullOut) as a cross-shard read fetched
// in batches, so at most one batch of rows (BatchRows rows, at most
// InsertSelectBatchBytes bytes) is held at a time. For each batch it
// builds a multi-row INSERT … VALUES (BatchSQL) whose values are the
// rows' binary values as parameters typed by the SELECT's result types,
// and plans and runs it like any INSERT (split by key, global IDs for
// omitted generated columns, broadcast to a reference table). Everything
// runs in one transaction: the client's, or an implicit one committed
// with two-phase commit when several shards were written, so a failure
// leaves no row anywhere. The command tag is INSERT 0 <sum>, RETURNING
// rows are those of the batches in order.
//
// Parameters: SelectSQL's $i is the original Bind value
// SelectParams[i-1]; Head's and Tail's $i are InsertParams[i-1]. The
// values of a batch follow as $len(InsertParams)+1, …
//
// SingleBatch (ON CONFLICT DO UPDATE): PostgreSQL fails when one command
// would update a row twice, which separate batches would not notice, so
// the SELECT may return at most one batch of rows (0A000 beyond it).
//
// SQL is the client's statement (the executor describes its result shape
// with it). InsertSelect is a leaf: Describe nests Select's plan.
type InsertSelect struct {
	Table        string
	SQL          string
	SelectSQL    string
	SelectParams []int
	Select       Operator
	Head         string
	Tail         string
	InsertParams []int
	Returning    bool
	SingleBatch  bool
	Reason       string
	// UntypedColumns are the SELECT's output columns that are bare string
	// literals or NULL: inside INSERT … SELECT PostgreSQL gives them the
	// target column's type, so their values go as text without a type and
	// the server reads them as that column's input (alone, the SELECT
	// would call them text).
	UntypedColumns []int
}

var _ Operator = (*InsertSelect)(nil)

func (*InsertSelect) Inputs() []Operator { return nil }

func (o *InsertSelect) Describe() Description {
	f := map[string]any{
		"mode":   "insert_select via proxy",
		"table":  o.Table,
		"insert": o.Head + "VALUES (…)" + o.Tail,
	}
	if o.Reason != "" {
		f["reason"] = o.Reason
	}
	if o.InsertParams != nil && len(o.InsertParams) > 0 {
		f["insert_params"] = intsToAny(o.InsertParams)
	}
	if o.Returning {
		f["returning"] = true
	}
	if o.SingleBatch {
		f["single_batch"] = true
	}
	if len(o.UntypedColumns) > 0 {
		f["untyped_columns"] = intsToAny(o.UntypedColumns)
	}
	sf := map[string]any{"sql": o.SelectSQL}
	if len(o.SelectParams) > 0 {
		sf["params"] = intsToAny(o.SelectParams)
	}
	sd := Description{Name: "Select", Fields: sf}
	if o.Select != nil {
		sd.Inputs = []Description{Tree(o.Select)}
	}
	return Description{Name: "InsertSelect", Fields: f, Inputs: []Description{sd}}
}

// BatchRows is how many rows of columns values each batch INSERT takes:
// InsertSelectBatchRows, or fewer so its parameters stay within
// PostgreSQL's limit (at least 1).
func (o *InsertSelect) BatchRows(columns int) int {
	return batchRows(InsertSelectBatchRows, len(o.InsertParams), columns)
}

// BatchSQL is the INSERT for rows rows of columns values each:
// Head + VALUES ($k+1, …), (…) + Tail with k = len(InsertParams). The
// values' types come with the Bind (the SELECT's result types), so the
// text is the same for every batch of the same size.
func (o *InsertSelect) BatchSQL(rows, columns int) string {
	var b strings.Builder
	b.Grow(len(o.Head) + len(o.Tail) + rows*columns*8 + 8)
	b.WriteString(o.Head)
	b.WriteString("VALUES ")
	writeParamRows(&b, rows, columns, len(o.InsertParams), false)
	b.WriteString(o.Tail)
	return b.String()
}

// EmptySQL is the INSERT of no rows with columns columns (NULLs under
// WHERE false): run for a RETURNING with no row, so the client still gets
// the RETURNING's row description.
func (o *InsertSelect) EmptySQL(columns int) string {
	nulls := make([]string, max(columns, 1))
	for i := range nulls {
		nulls[i] = "NULL"
	}
	return o.Head + "SELECT " + strings.Join(nulls, ", ") + " WHERE false" + o.Tail
}
