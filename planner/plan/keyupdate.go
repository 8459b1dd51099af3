package plan

import (
	"fmt"
	"strings"

	"github.com/shardproxy/shardproxy/topology"
)

// MaxKeyUpdateRows bounds the rows one UPDATE of the distribution key
// may update: the executor holds each updated row's values in memory
// until its new shard has it. Beyond it the statement fails with 0A000
// and nothing it did stays (its transaction is rolled back, or the
// client's is aborted).
const MaxKeyUpdateRows = 10000

// KeyUpdate is an UPDATE of a distributed table that sets its
// distribution key column: updated rows whose new key belongs to another
// shard move there, inside one transaction (the client's, or one the
// executor opens on every shard it touches and commits with two-phase
// commit when it wrote on several). The executor must:
//
//  1. on the first shard of Source, inside the transaction, run
//     ColumnsSQL with TableSQL as its text parameter $1 (the table's
//     columns in attnum order: name, whether generated ALWAYS AS (…)
//     STORED, type OID, whether a foreign key references the table,
//     whether it is partitioned or has inheritance children); a
//     referenced table is refused (0A000: ON UPDATE CASCADE children would
//     stay on the old shard), and so is a partitioned or inherited one (its
//     rows' ctids are the partitions');
//  2. run Source on each of its shards (the client's values SourceParams
//     selects): it locks the rows the UPDATE would update and returns
//     each one's ctid and new key, at most MaxKeyUpdateRows in all; route
//     each new key like an INSERT's: a row stays when that is its shard;
//  3. on each shard with locked rows run Update with the client's values
//     UpdateParams selects followed by three text arrays (OID 0): the
//     ctids, the new keys and whether each row stays ("t"/"f"). It
//     applies the client's SET list to those rows, setting the key only
//     on the rows that stay (the others keep theirs, so the source shard
//     checks no foreign key of the key there), and returns ctid, the new
//     key (text) and the row (the key column in text format, columns of
//     built-in types in binary, others in text: exact whatever the
//     session's output settings);
//  4. delete the leaving rows on their source by ctid (DeleteSQL, the
//     ctids as a text array) and insert them with InsertSQL, the new key
//     in place of the old, planned by the planner like any INSERT (so it
//     splits by key), with the values as parameters (binary with the
//     column's type OID for built-in types, text with OID 0 otherwise),
//     generated columns left out;
//  5. with RETURNING (Returning != ""), run Returning on every shard that
//     holds updated rows (at least one) with the client's values
//     ReturningParams selects followed by the rows' ctids on that shard
//     (text tid[] array, OID 0), in the client's result formats; its rows
//     go to the client;
//  6. answer UPDATE n, n the number of rows Update updated.
//
// KeyUpdate is a leaf for plan.Leaves (Inputs is nil: the executor runs
// its parts itself); Describe nests Source so Lines shows it.
type KeyUpdate struct {
	// SQL is the client's statement (it describes the result shape).
	SQL          string
	Table        string // qualified name in the topology
	TableSQL     string // the table as the statement names it, quoted
	Distribution string
	KeyColumn    string
	KeyType      topology.KeyType
	// Source locks the rows to update and computes their new keys (a
	// SELECT … FOR UPDATE returning ctid and the new key as text): a Route
	// (one shard) or a Scatter. Its $i is the client's value
	// SourceParams[i-1] (then the Route's ParamIndexes apply as usual).
	Source       Operator
	SourceParams []int
	// Update updates the locked rows on a shard: the client's SET list
	// with the key set only on rows that stay, returning ctid, the new
	// key and <ref>.*. Its $i is the client's value UpdateParams[i-1] for
	// i ≤ len(UpdateParams), then three text arrays: the rows' ctids,
	// their new keys and whether each stays.
	Update          string
	UpdateParams    []int
	Returning       string
	ReturningParams []int
	Reason          string
}

var _ Operator = (*KeyUpdate)(nil)

func (*KeyUpdate) Inputs() []Operator { return nil }

func (o *KeyUpdate) Describe() Description {
	f := map[string]any{"table": o.Table, "key_column": o.KeyColumn, "distribution": o.Distribution,
		"max_rows": MaxKeyUpdateRows}
	if o.Reason != "" {
		f["reason"] = o.Reason
	}
	f["update"] = o.Update
	if len(o.UpdateParams) > 0 {
		f["update_params"] = intsToAny(o.UpdateParams)
	}
	if o.Returning != "" {
		f["returning"] = o.Returning
		if o.ReturningParams != nil {
			f["returning_params"] = intsToAny(o.ReturningParams)
		}
	}
	d := Description{Name: "KeyUpdate", Fields: f}
	if o.Source != nil {
		d.Inputs = []Description{Tree(o.Source)}
	}
	return d
}

// SourceShards returns the shards Source runs on.
func (o *KeyUpdate) SourceShards() []string {
	switch s := o.Source.(type) {
	case *Route:
		return []string{s.Shard}
	case *Scatter:
		return s.Shards
	}
	return nil
}

// SourceSQL returns the statement Source runs on shard and the original
// Bind values it takes (nil: all of them).
func (o *KeyUpdate) SourceSQL(shard string) (string, []int) {
	switch s := o.Source.(type) {
	case *Route:
		return s.SQL, s.ParamIndexes
	case *Scatter:
		return s.SQLFor(shard), nil
	}
	return "", nil
}

// ColumnsSQL reads the columns of the table named by $1 (see KeyUpdate).
const ColumnsSQL = `SELECT a.attname, (a.attgenerated <> '')::text, a.atttypid::text,
  EXISTS (SELECT 1 FROM pg_catalog.pg_constraint c WHERE c.confrelid = a.attrelid AND c.contype = 'f')::text,
  (SELECT r.relkind = 'p' OR r.relhassubclass FROM pg_catalog.pg_class r WHERE r.oid = a.attrelid)::text
FROM pg_catalog.pg_attribute a
WHERE a.attrelid = $1::regclass AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum`

// FirstNormalOID is PostgreSQL's first OID for user-defined objects:
// types below it are built in, with the same OID on every server, so
// their binary form can be sent back with that OID.
const FirstNormalOID = 16384

// DeleteSQL deletes the rows whose ctids are $1 (a text tid[] array).
func (o *KeyUpdate) DeleteSQL() string {
	return "DELETE FROM ONLY " + o.TableSQL + " WHERE ctid = ANY($1::pg_catalog.tid[])"
}

// InsertSQL inserts rows rows of the columns cols (unquoted names), as
// parameters $1 … in row order, giving identity columns their values
// (OVERRIDING SYSTEM VALUE); returnCtid appends RETURNING ctid.
func (o *KeyUpdate) InsertSQL(cols []string, rows int, returnCtid bool) string {
	var b strings.Builder
	b.WriteString("INSERT INTO ")
	b.WriteString(o.TableSQL)
	b.WriteString(" (")
	for i, c := range cols {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(QuoteIdent(c))
	}
	b.WriteString(") OVERRIDING SYSTEM VALUE VALUES ")
	writeParamRows(&b, rows, len(cols), 0, false)
	if returnCtid {
		b.WriteString(" RETURNING ctid")
	}
	return b.String()
}

// InsertBatchRows is how many rows one InsertSQL carries for ncols
// columns: at most 1000, and never more than PostgreSQL's 65535
// parameters.
func InsertBatchRows(ncols int) int {
	return batchRows(1000, 0, ncols)
}

// TidArray is ctids (text form, "(0,1)") as a text tid[] literal.
func TidArray(ctids []string) string { return TextArray(ctids) }

// TextArray is vals as a one-dimensional array literal in text form, each
// element quoted.
func TextArray(vals []string) string {
	var b strings.Builder
	b.WriteByte('{')
	for i, v := range vals {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteByte('"')
		for j := 0; j < len(v); j++ {
			if v[j] == '"' || v[j] == '\\' {
				b.WriteByte('\\')
			}
			b.WriteByte(v[j])
		}
		b.WriteByte('"')
	}
	b.WriteByte('}')
	return b.String()
}

// TooManyKeyUpdateRows is the refusal beyond MaxKeyUpdateRows.
func TooManyKeyUpdateRows(table string) error {
	return &Unsupported{Message: fmt.Sprintf("an UPDATE of the distribution key of %s may update at most %d rows in one statement (rows move between shards in memory); nothing was changed", table, MaxKeyUpdateRows),
		Hint: "update the rows in smaller batches (narrow the WHERE clause)"}
}

// QuoteIdent quotes an identifier (always: exact whatever the name).
func QuoteIdent(s string) string {
	return `"` + strings.ReplaceAll(s, `"`, `""`) + `"`
}
