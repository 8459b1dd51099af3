package plan

import (
	"fmt"
	"strconv"
	"strings"
)

// Evaluate computes output columns that are expressions over aggregates
// (`round(avg(x), 1)`, `count(*) + 1`, `stddev(x)`) after the Aggregate
// combined the shards' partials: PostgreSQL evaluates them, so results,
// types and rounding are the server's own. It sits directly above the
// Aggregate:
//
//	Scatter → Aggregate → Evaluate → Having → Sort → Distinct → Limit → Project
//
// For every batch of at most EvalBatchRows input rows the executor runs
// one statement (BatchSQL) on one connection of the statement's shards —
// the transaction's, inside a transaction block — whose VALUES carry the
// rows' Args columns as typed Bind parameters, and replaces each
// Columns[i].Column of the row with the statement's column i. The input
// row keeps its layout: the replaced columns are probes the shards
// computed without evaluating them (`(SELECT expr WHERE false HAVING
// false)`), so their RowDescription entries (name, type, type modifier)
// are already the ones one server would send, and Describe needs no
// round trip.
//
// Expressions reference the input values as v.c1, v.c2, … (Args[k] is
// v.c<k+1>) and the statement's own Bind parameters as $1..$m, where $i
// is the original 0-based parameter ParamIndexes[i-1]; the values follow
// as $m+1, …
//
// ExactInputs are input columns (partial sums of stddev/variance
// arguments) whose type must be integer or numeric: float variance is
// accumulated by PostgreSQL in a float-specific order whose last bits a
// merge cannot reproduce, so the executor refuses it with 0A000.
//
// TypeSQL, when the expressions use parameters, is the client's SELECT
// (deparsed, before the rewrite): the probes sit in the shards' select
// list, where PostgreSQL would infer a parameter's type before seeing it
// in WHERE, so for parameters the client sent untyped (OID 0) the executor
// first asks a shard which types the original statement gives them and
// sends those with the shards' statements and the evaluation.
type Evaluate struct {
	Input        Operator
	Columns      []EvalColumn
	Args         []int
	ParamIndexes []int
	ExactInputs  []int
	TypeSQL      string
}

// EvalColumn is one evaluated column: the input column it replaces and the
// SQL expression computing it.
type EvalColumn struct {
	Column int
	Expr   string
}

// EvalBatchRows bounds the rows one evaluation statement carries (and so
// the rows Evaluate holds at a time).
const EvalBatchRows = 1000

// BatchRows returns how many rows one evaluation statement may carry:
// EvalBatchRows, fewer when the rows' parameters would pass the protocol's
// limit.
func (o *Evaluate) BatchRows() int {
	return batchRows(EvalBatchRows, len(o.ParamIndexes), len(o.Args))
}

// BatchSQL is the evaluation statement for rows input rows: the
// expressions over VALUES rows of parameters, in input order.
func (o *Evaluate) BatchSQL(rows int) string {
	var b strings.Builder
	b.WriteString("SELECT ")
	for i, c := range o.Columns {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(c.Expr)
	}
	b.WriteString(" FROM (VALUES ")
	writeParamRows(&b, rows, len(o.Args), len(o.ParamIndexes), true)
	b.WriteString(") AS v(n")
	for k := range o.Args {
		b.WriteString(", c")
		b.WriteString(strconv.Itoa(k + 1))
	}
	b.WriteString(") ORDER BY v.n")
	return b.String()
}

var _ Operator = (*Evaluate)(nil)

func (o *Evaluate) Inputs() []Operator { return []Operator{o.Input} }

func (o *Evaluate) Describe() Description {
	cols := make([]any, len(o.Columns))
	for i, c := range o.Columns {
		cols[i] = fmt.Sprintf("%d: %s", c.Column, c.Expr)
	}
	args := make([]any, len(o.Args))
	for k, a := range o.Args {
		args[k] = fmt.Sprintf("v.c%d: %d", k+1, a)
	}
	f := map[string]any{"columns": cols, "args": args}
	if o.ParamIndexes != nil {
		f["params"] = intsToAny(o.ParamIndexes)
	}
	if len(o.ExactInputs) > 0 {
		f["exact_inputs"] = intsToAny(o.ExactInputs)
	}
	return Description{Name: "Evaluate", Fields: f}
}
