package merge

import (
	"fmt"
	"io"

	"github.com/shardproxy/shardproxy/planner/plan"
)

// Evaluator runs the statements of a plan.Evaluate: the executor's side,
// which does the I/O this package must not. Evaluate runs sql on one
// connection of the statement's shards (the transaction's inside a
// transaction block) with op.ParamIndexes of the statement's Bind values
// as $1..$m followed by vals, asks for resultFormats, and returns every
// row's values (the merge keeps them) and the result columns' type OIDs.
type Evaluator interface {
	Evaluate(op *plan.Evaluate, sql string, vals EvalValues, resultFormats []int16) (rows [][][]byte, types []uint32, err error)
}

// EvalValues are the merged values an evaluation statement carries, as
// Bind parameters after the statement's own.
type EvalValues struct {
	Values  [][]byte
	Formats []int16
	OIDs    []uint32
}

// evaluateOp replaces the evaluated columns of its input's rows, a batch
// of at most op.BatchRows rows at a time.
type evaluateOp struct {
	in      iter
	op      *plan.Evaluate
	ev      Evaluator
	lay     layout
	mem     *budget
	cols    []int
	args    []int
	formats []int16
	batch   int

	rows [][][]byte
	held int64
	i    int
	eof  bool
}

func (b *builder) evaluate(in iter, lay layout, o *plan.Evaluate) (iter, layout, error) {
	e := &evaluateOp{in: in, op: o, ev: b.evaluator, lay: lay, mem: b.mem, batch: o.BatchRows()}
	for _, c := range o.Columns {
		p, err := b.col(lay, c.Column, "evaluated")
		if err != nil {
			return nil, layout{}, err
		}
		e.cols = append(e.cols, p)
		e.formats = append(e.formats, lay.fields[p].Format)
	}
	for _, a := range o.Args {
		p, err := b.col(lay, a, "evaluation argument")
		if err != nil {
			return nil, layout{}, err
		}
		e.args = append(e.args, p)
	}
	for _, x := range o.ExactInputs {
		p, err := b.col(lay, x, "variance argument")
		if err != nil {
			return nil, layout{}, err
		}
		if k := lay.codecs[p].kind; k != kInt && k != kNumeric {
			return nil, layout{}, &Error{Code: "0A000", Message: fmt.Sprintf("stddev/variance of values of type %d across shards is not supported: PostgreSQL accumulates float values in an order the merge cannot reproduce", lay.fields[p].DataTypeOID),
				Hint: "cast the argument to numeric (stddev(x::numeric)), or add a key condition"}
		}
	}
	return e, lay, nil
}

func (e *evaluateOp) next() ([][]byte, error) {
	if e.i < len(e.rows) {
		row := e.rows[e.i]
		e.rows[e.i] = nil
		e.i++
		return row, nil
	}
	e.mem.release(e.held)
	e.rows, e.held, e.i = e.rows[:0], 0, 0
	if e.eof {
		return nil, io.EOF
	}
	for len(e.rows) < e.batch {
		row, err := e.in.next()
		if err == io.EOF {
			e.eof = true
			break
		}
		if err != nil {
			return nil, err
		}
		n := rowSize(row)
		if err := e.mem.grow(n); err != nil {
			return nil, err
		}
		e.held += n
		e.rows = append(e.rows, CopyRow(row))
	}
	if len(e.rows) == 0 {
		return nil, io.EOF
	}
	if err := e.run(); err != nil {
		return nil, err
	}
	return e.next()
}

// run evaluates the buffered rows and puts the results in place.
func (e *evaluateOp) run() error {
	if e.ev == nil {
		return &Error{Code: "XX000", Message: "shardproxy merge: no evaluator for expressions over aggregates"}
	}
	vals := EvalValues{}
	for _, row := range e.rows {
		for _, a := range e.args {
			vals.Values = append(vals.Values, row[a])
			vals.Formats = append(vals.Formats, e.lay.fields[a].Format)
			vals.OIDs = append(vals.OIDs, e.lay.fields[a].DataTypeOID)
		}
	}
	out, types, err := e.ev.Evaluate(e.op, e.op.BatchSQL(len(e.rows)), vals, e.formats)
	if err != nil {
		return err
	}
	if len(out) != len(e.rows) || len(types) != len(e.cols) {
		return &Error{Code: "XX000", Message: fmt.Sprintf("shardproxy merge: evaluating %d rows returned %d rows of %d columns", len(e.rows), len(out), len(types))}
	}
	for k, c := range e.cols {
		if want := e.lay.fields[c].DataTypeOID; types[k] != want {
			return &Error{Code: "0A000", Message: fmt.Sprintf("the expression %s over merged aggregates evaluates to type %d, but one server gives type %d", e.op.Columns[k].Expr, types[k], want),
				Hint: "cast the expression to the type you need, or add a key condition"}
		}
	}
	for r, row := range e.rows {
		if len(out[r]) != len(e.cols) {
			return &Error{Code: "XX000", Message: "shardproxy merge: an evaluated row has the wrong number of columns"}
		}
		for k, c := range e.cols {
			n := int64(len(out[r][k]))
			if err := e.mem.grow(n); err != nil {
				return err
			}
			e.held += n
			row[c] = out[r][k]
		}
	}
	return nil
}
