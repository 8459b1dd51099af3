package plan

import (
	"encoding/binary"
	"fmt"
	"strings"
)

// MaxPulledRows bounds the rows one pulled-out subquery may return: the
// executor keeps them all in memory and substitutes them as literals.
const MaxPulledRows = 10000

// PullOut is a SELECT whose uncorrelated subqueries need other shards than
// the rest of the statement (Vitess's "pulled-out subquery"): the executor
// runs each subquery first, as a statement of its own, capturing its rows
// in binary format, then builds the outer statement with their values
// substituted as typed parameters (OuterSQL), plans it like any statement
// (so `key = ANY($n::bigint[])` routes to exactly those keys' shards)
// and runs it, its rows and command tag going to the client.
//
// The subqueries are sublinks among the top-level AND conjuncts of the
// WHERE clause: `expr IN (SELECT c …)` / `expr = ANY (SELECT c …)`
// (List: the values become `= ANY($n::type[])`, NULLs kept) and a
// scalar `(SELECT c …)` as an operand of a comparison (a NULL for no row;
// more than one row fails with 21000, as in PostgreSQL).
//
// Parameters: SQL is the client's statement and takes the Bind values
// unchanged (the executor describes the result shape with it). Each
// subquery's SQL uses $1..$k where $i is the original value
// ParamIndexes[i-1]; the outer statement likewise with OuterParams. nil
// means the statement has no parameters.
//
// PullOut is a leaf (Inputs is nil, so plan.Leaves does not descend into
// it: the subqueries' plans run only through the executor's PullOut
// handling, which also explains them); Describe nests the subqueries'
// plans so Lines and Tree show both parts.
type PullOut struct {
	SQL        string
	Subqueries []*PulledSubquery
	// Outer is the statement's text around the subqueries, in text
	// order: Outer[0] + value of Subqueries[0] + Outer[1] + … Its $n are
	// renumbered by OuterParams.
	Outer       []string
	OuterParams []int
	Reason      string
}

// PulledSubquery is one subquery a PullOut runs first.
type PulledSubquery struct {
	SQL          string
	ParamIndexes []int
	// Plan is SQL planned for this execution (with the values
	// ParamIndexes selects): a Route, a Scatter with merge operators, or
	// another PullOut.
	Plan Operator
	// Scalar: (SELECT …) used as a value (at most one row); otherwise the
	// right side of IN / = ANY, replaced with `= ANY (<array>)`.
	Scalar bool
}

// PulledRows are the rows a subquery returned: the type of its one
// column (from its RowDescription) and the values in binary format, nil
// for NULL. Binary values read back exactly whatever the session's output
// settings (extra_float_digits, DateStyle, IntervalStyle, TimeZone).
type PulledRows struct {
	TypeOID uint32
	Values  [][]byte
}

var _ Operator = (*PullOut)(nil)

func (*PullOut) Inputs() []Operator { return nil }

func (o *PullOut) Describe() Description {
	f := map[string]any{"outer": o.OuterTemplate()}
	if o.Reason != "" {
		f["reason"] = o.Reason
	}
	if o.OuterParams != nil {
		f["outer_params"] = intsToAny(o.OuterParams)
	}
	d := Description{Name: "PullOut", Fields: f}
	for i, s := range o.Subqueries {
		sf := map[string]any{"slot": fmt.Sprintf("$subquery%d", i+1), "sql": s.SQL, "scalar": s.Scalar}
		if s.ParamIndexes != nil {
			sf["params"] = intsToAny(s.ParamIndexes)
		}
		sd := Description{Name: "Subquery", Fields: sf}
		if s.Plan != nil {
			sd.Inputs = []Description{Tree(s.Plan)}
		}
		d.Inputs = append(d.Inputs, sd)
	}
	return d
}

// OuterTemplate is the outer statement with $subqueryN where the values
// go (for EXPLAIN).
func (o *PullOut) OuterTemplate() string {
	var b strings.Builder
	for i, part := range o.Outer {
		if i > 0 {
			fmt.Fprintf(&b, "$subquery%d", i)
		}
		b.WriteString(part)
	}
	return b.String()
}

// PulledParams are the Bind values OuterSQL adds for the outer
// statement: they follow its own (OuterParams) as $k+1, $k+2, … in
// binary format; OIDs are the scalars' types, 0 for arrays (typed by the
// cast in the text; the array's element type is the column's).
type PulledParams struct {
	Values [][]byte
	OIDs   []uint32
}

// OuterSQL builds the outer statement for the subqueries' rows (one
// PulledRows per subquery, in order): a scalar's slot becomes
// `$n::type`, an IN / = ANY slot `= ANY ($n::type[])`, with the values
// as extra parameters after the statement's own k (n = k+1, …), so the
// text — and the planner's cached analysis of it — is the same for every
// execution with the same result types. A scalar subquery with more
// than one row fails with 21000 like PostgreSQL; a result type without a
// known text form, or more than MaxPulledRows values, with 0A000.
func (o *PullOut) OuterSQL(rows []PulledRows) (string, PulledParams, error) {
	var pp PulledParams
	if len(rows) != len(o.Subqueries) {
		return "", pp, &Error{Code: "XX000", Message: fmt.Sprintf("pull-out: %d results for %d subqueries", len(rows), len(o.Subqueries))}
	}
	first := len(o.OuterParams) + 1
	var b strings.Builder
	b.WriteString(o.Outer[0])
	for i, s := range o.Subqueries {
		r := rows[i]
		if s.Scalar && len(r.Values) > 1 {
			return "", pp, &Error{Code: "21000", Message: "more than one row returned by a subquery used as an expression"}
		}
		if len(r.Values) > MaxPulledRows {
			return "", pp, &Unsupported{Message: fmt.Sprintf("subquery returned too many rows to pull out (more than %d): %s", MaxPulledRows, s.SQL),
				Hint: "restrict the subquery, correlate it with the outer query on the distribution key, or join on the keys"}
		}
		typ, ok := literalTypes[r.TypeOID]
		if !ok {
			return "", pp, &Unsupported{Message: fmt.Sprintf("the result type (OID %d) of a subquery run before the rest of the statement is not supported here: %s", r.TypeOID, s.SQL),
				Hint: "cast the subquery's column to a built-in type such as text, bigint or numeric"}
		}
		n := first + i
		if s.Scalar {
			fmt.Fprintf(&b, "$%d::%s", n, typ)
			var v []byte
			if len(r.Values) == 1 {
				v = r.Values[0]
			}
			pp.Values = append(pp.Values, v)
			pp.OIDs = append(pp.OIDs, r.TypeOID)
		} else {
			fmt.Fprintf(&b, "= ANY ($%d::%s[])", n, typ)
			pp.Values = append(pp.Values, binaryArray(r.TypeOID, r.Values))
			pp.OIDs = append(pp.OIDs, 0)
		}
		b.WriteString(o.Outer[i+1])
	}
	return b.String(), pp, nil
}

// literalTypes maps the built-in type OIDs whose text form reads back as
// the same value to their SQL type names (for the slots' casts).
var literalTypes = map[uint32]string{
	16: "boolean", 17: "bytea", 18: `"char"`, 19: "name", 20: "bigint", 21: "smallint", 23: "integer",
	25: "text", 26: "oid", 114: "json", 650: "cidr", 700: "real", 701: "double precision", 829: "macaddr",
	869: "inet", 1042: "bpchar", 1043: "varchar", 1082: "date", 1083: "time", 1114: "timestamp",
	1184: "timestamptz", 1186: "interval", 1266: "timetz", 1562: "varbit", 1700: "numeric",
	2950: "uuid", 3802: "jsonb",
}

// binaryArray is vs (binary values of type elem, nil for NULL) as a
// one-dimensional array in binary format (array_recv's input).
func binaryArray(elem uint32, vs [][]byte) []byte {
	ndim, hasNull := uint32(1), uint32(0)
	if len(vs) == 0 {
		ndim = 0
	}
	for _, v := range vs {
		if v == nil {
			hasNull = 1
		}
	}
	b := binary.BigEndian.AppendUint32(nil, ndim)
	b = binary.BigEndian.AppendUint32(b, hasNull)
	b = binary.BigEndian.AppendUint32(b, elem)
	if ndim == 0 {
		return b
	}
	b = binary.BigEndian.AppendUint32(b, uint32(len(vs)))
	b = binary.BigEndian.AppendUint32(b, 1) // lower bound
	for _, v := range vs {
		if v == nil {
			b = binary.BigEndian.AppendUint32(b, 0xFFFFFFFF) // -1: NULL
			continue
		}
		b = binary.BigEndian.AppendUint32(b, uint32(len(v)))
		b = append(b, v...)
	}
	return b
}
