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
	// Distribution is set for an UPDATE or DELETE: the distribution of
	// the table it writes, whose rows the outer statement routes at run
	// time (a data move's cutover must hold it). Its subqueries read from
	// primaries.
	Distribution string
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
	// Relation, when set, makes this a table of the FROM clause read
	// first (SQL selects all its columns): its slot becomes
	// `unnest($n::t1[], $n+1::t2[], …) AS Relation(c1, c2, …)`, one array
	// per column, and its rows are PulledRows.Columns.
	Relation string
}

// PulledRows are the rows a subquery returned: the type of its one
// column (from its RowDescription) and the values in binary format, nil
// for NULL. Binary values read back exactly whatever the session's output
// settings (extra_float_digits, DateStyle, IntervalStyle, TimeZone).
type PulledRows struct {
	TypeOID uint32
	Values  [][]byte
	// Columns are a Relation subquery's rows, column by column.
	Columns []PulledColumn
}

// PulledColumn is one column of a pulled-out relation: its name and type
// (from the RowDescription) and its values in binary format, nil for NULL,
// one per row.
type PulledColumn struct {
	Name    string
	TypeOID uint32
	Typmod  int32 // -1: none
	Values  [][]byte
}

var _ Operator = (*PullOut)(nil)

func (*PullOut) Inputs() []Operator { return nil }

func (o *PullOut) Describe() Description {
	f := map[string]any{"outer": o.OuterTemplate()}
	if o.Reason != "" {
		f["reason"] = o.Reason
	}
	if o.Distribution != "" {
		f["writes"] = o.Distribution
	}
	if o.OuterParams != nil {
		f["outer_params"] = intsToAny(o.OuterParams)
	}
	d := Description{Name: "PullOut", Fields: f}
	for i, s := range o.Subqueries {
		sf := map[string]any{"slot": fmt.Sprintf("$subquery%d", i+1), "sql": s.SQL, "scalar": s.Scalar}
		if s.Relation != "" {
			delete(sf, "scalar")
			sf["relation"] = s.Relation
		}
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
	n := len(o.OuterParams) + 1 // the next parameter
	var b strings.Builder
	b.WriteString(o.Outer[0])
	for i, s := range o.Subqueries {
		r := rows[i]
		if s.Relation != "" {
			if err := relationSlot(&b, &pp, &n, s, r); err != nil {
				return "", pp, err
			}
			b.WriteString(o.Outer[i+1])
			continue
		}
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
		n++
		b.WriteString(o.Outer[i+1])
	}
	return b.String(), pp, nil
}

// relationSlot writes a Relation subquery's slot, `unnest($n::t1[], …)
// AS name(c1, …)`, and adds its arrays to pp (n is the next parameter).
// Columns with a type modifier (varchar(80), numeric(10,2), …) are cast
// back to it in a subquery around the unnest, since a function's result
// has none: `(SELECT c1::varchar(80) AS c1, … FROM unnest(…) AS
// name(c1, …)) AS name`, so the statement's result columns are described
// as the table's are.
func relationSlot(b *strings.Builder, pp *PulledParams, n *int, s *PulledSubquery, r PulledRows) error {
	var casts []string
	for _, c := range r.Columns {
		if m := typeWithModifier(c.TypeOID, c.Typmod); m != "" {
			casts = append(casts, quoteName(c.Name)+"::"+m+" AS "+quoteName(c.Name))
		} else {
			casts = append(casts, quoteName(c.Name))
		}
	}
	wrapped := false
	for i, c := range r.Columns {
		wrapped = wrapped || casts[i] != quoteName(c.Name)
	}
	if wrapped {
		b.WriteString("(SELECT " + strings.Join(casts, ", ") + " FROM ")
	}
	if err := unnestColumns(b, pp, n, s, r); err != nil {
		return err
	}
	if wrapped {
		b.WriteString(") AS " + quoteName(s.Relation))
	}
	return nil
}

// typeWithModifier is the SQL type of a column whose type modifier
// matters (character varying(80), numeric(10,2), timestamp(3), …); "" when
// it has none or it is not one of these.
func typeWithModifier(oid uint32, typmod int32) string {
	if typmod < 0 {
		return ""
	}
	switch oid {
	case 1042:
		return fmt.Sprintf("character(%d)", typmod-4)
	case 1043:
		return fmt.Sprintf("character varying(%d)", typmod-4)
	case 1562:
		return fmt.Sprintf("bit varying(%d)", typmod)
	case 1700:
		t := typmod - 4
		scale := ((t & 0x7ff) ^ 1024) - 1024
		return fmt.Sprintf("numeric(%d,%d)", (t>>16)&0xffff, scale)
	case 1083, 1114, 1184, 1266:
		return fmt.Sprintf("%s(%d)", map[uint32]string{1083: "time", 1114: "timestamp", 1184: "timestamptz", 1266: "timetz"}[oid], typmod)
	}
	return ""
}

// unnestColumns writes `unnest($n::t1[], …) AS name(c1, …)`.
func unnestColumns(b *strings.Builder, pp *PulledParams, n *int, s *PulledSubquery, r PulledRows) error {
	if len(r.Columns) == 0 {
		return &Unsupported{Message: "a table read before the rest of the statement has no columns: " + s.SQL}
	}
	rows := len(r.Columns[0].Values)
	if rows > MaxPulledRows {
		return &Unsupported{Message: fmt.Sprintf("%s has too many rows to read before the rest of the statement (more than %d): %s", s.Relation, MaxPulledRows, s.SQL),
			Hint: "restrict it further, or join the distributed tables on their distribution keys"}
	}
	b.WriteString("unnest(")
	for j, c := range r.Columns {
		typ, ok := literalTypes[c.TypeOID]
		if !ok {
			return &Unsupported{Message: fmt.Sprintf("column %s of %s has a type (OID %d) that cannot be read before the rest of the statement: %s", c.Name, s.Relation, c.TypeOID, s.SQL),
				Hint: "join the distributed tables on their distribution keys"}
		}
		if len(c.Values) != rows {
			return &Error{Code: "XX000", Message: fmt.Sprintf("pull-out: column %s has %d values for %d rows", c.Name, len(c.Values), rows)}
		}
		if j > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(b, "$%d::%s[]", *n, typ)
		*n++
		pp.Values = append(pp.Values, binaryArray(c.TypeOID, c.Values))
		pp.OIDs = append(pp.OIDs, 0)
	}
	b.WriteString(") AS " + quoteName(s.Relation) + "(")
	for j, c := range r.Columns {
		if j > 0 {
			b.WriteString(", ")
		}
		b.WriteString(quoteName(c.Name))
	}
	b.WriteString(")")
	return nil
}

// quoteName is a name as a quoted SQL identifier.
func quoteName(s string) string {
	return `"` + strings.ReplaceAll(s, `"`, `""`) + `"`
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
