package plan

import (
	"fmt"
	"sort"
	"strings"

	"github.com/shardproxy/shardproxy/topology"
)

// Operator is one node of a plan tree. Plans are plain data: an executor
// (package proxy) switches on the concrete type. Leaf operators (Route,
// Scatter, Broadcast, CopySplit, Session) name shards and carry the SQL to
// send; inner operators (SplitInsert, AllocateKeys, Explain, Sequence) only
// combine their inputs. Operators are immutable once returned by the
// planner and may be shared between goroutines.
type Operator interface {
	// Inputs returns the child operators (nil for leaves).
	Inputs() []Operator
	// Describe returns the node's name, shards and fields for EXPLAIN and
	// golden tests (children are not included; see Tree).
	Describe() Description
}

// Description is what an operator says about itself. Fields hold only
// strings, numbers, bools and slices of them, so a Description encodes to
// stable JSON (map keys sorted).
type Description struct {
	Name   string         `json:"name"`
	Shards []string       `json:"shards,omitempty"`
	Fields map[string]any `json:"fields,omitempty"`
	Inputs []Description  `json:"inputs,omitempty"`
}

// Tree returns op's Description with the Descriptions of all its inputs
// filled in recursively.
func Tree(op Operator) Description {
	d := op.Describe()
	for _, in := range op.Inputs() {
		d.Inputs = append(d.Inputs, Tree(in))
	}
	return d
}

// Lines renders the plan as indented text lines, one per operator, the
// form the proxy prints before each shard's own EXPLAIN output:
//
//	Route shard=s2 reason="public.users.id = $1"
func Lines(op Operator) []string {
	var out []string
	var walk func(d Description, depth int)
	walk = func(d Description, depth int) {
		var b strings.Builder
		b.WriteString(strings.Repeat("  ", depth))
		b.WriteString(d.Name)
		if len(d.Shards) == 1 {
			fmt.Fprintf(&b, " shard=%s", d.Shards[0])
		} else if len(d.Shards) > 1 {
			fmt.Fprintf(&b, " shards=%s", strings.Join(d.Shards, ","))
		}
		keys := make([]string, 0, len(d.Fields))
		for k := range d.Fields {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			switch v := d.Fields[k].(type) {
			case string:
				fmt.Fprintf(&b, " %s=%q", k, v)
			default:
				fmt.Fprintf(&b, " %s=%v", k, v)
			}
		}
		out = append(out, b.String())
		for _, in := range d.Inputs {
			walk(in, depth+1)
		}
	}
	walk(Tree(op), 0)
	return out
}

// String renders op as Lines joined by newlines.
func String(op Operator) string { return strings.Join(Lines(op), "\n") }

// Route sends one statement to one shard.
//
// SQL is the text to send. When ParamIndexes is nil the Bind values (and
// their formats and types) go with it unchanged; otherwise the statement
// uses $1..$k where $i takes the original Bind value ParamIndexes[i-1]
// (0-based). Results (rows, command tag, errors) go to the client as the
// shard sends them.
type Route struct {
	Shard        string
	SQL          string
	ParamIndexes []int
	// Reason says why this shard, e.g. `public.users.id = $1` or
	// "default shard: catalog query".
	Reason string
	// ReadOnly: the statement does not write (as far as the SQL shows; see
	// planner's doc for functions). The proxy may use a replica.
	ReadOnly bool
	// ReadAnyShard: the data is on every shard (reference tables), so any
	// shard (or its replicas) gives the same answer; Shard is a suggestion.
	ReadAnyShard bool
}

// Scatter sends the same statement to several shards. Alone (the root of
// a plan) its results are concatenated in unspecified order: the planner
// emits it bare only when that is exactly what one server holding all the
// data would return. Under merge operators (MergeSort, Aggregate, Limit,
// ... see merge.go) SQL is the statement rewritten for the shards (sort
// keys kept, LIMIT count+offset, partial aggregates, hidden columns
// appended) and the operators above it say how to combine the streams.
//
// Bind values go with SQL unchanged to every shard. For a COPY ... TO the
// client gets one CopyOutResponse; CopyHeader means each shard sends a CSV
// header line and only the first shard's must be passed on; CopyBinary
// means each shard's stream is a binary COPY file: the first shard's file
// header and the last shard's trailer are passed on, the others dropped.
//
// Write marks an UPDATE or DELETE (without a key condition selecting one
// shard) run on every listed shard: the client gets one command tag with
// the shards' row counts summed (UPDATE 42) and the RETURNING rows of all
// shards concatenated. All shards must commit or none (two-phase commit's
// job); until the executor has it, it must run such a Scatter only
// outside an explicit transaction block, or refuse it.
type Scatter struct {
	Shards     []string
	SQL        string
	Reason     string
	ReadOnly   bool
	CopyHeader bool
	CopyBinary bool
	Write      bool
	// ShardSQL, when it has an entry for a shard, is the statement that
	// shard runs instead of SQL: the same statement with its distributed
	// tables restricted to the rows the shard owns, while a move has a
	// range's rows on two of the scanned shards (see planner's doc). It
	// takes the same Bind values and returns the same columns as SQL.
	ShardSQL map[string]string
}

// SQLFor returns the statement shard runs.
func (o *Scatter) SQLFor(shard string) string {
	if s, ok := o.ShardSQL[shard]; ok {
		return s
	}
	return o.SQL
}

// Broadcast runs the same statement on every listed shard (writes to
// reference tables, DDL on distributed and reference tables). ReturnFrom is
// the shard whose rows and command tag go to the client; the others must
// succeed too, and any error fails the statement. NeedsAtomic means a
// partial success must not commit (two-phase commit's job); it is false
// for statements that cannot run inside a transaction block (CREATE INDEX
// CONCURRENTLY, VACUUM), which the executor runs one shard at a time. For
// COPY FROM STDIN into a reference table, Copy is true and the executor
// streams the client's CopyData to every shard.
type Broadcast struct {
	Shards      []string
	SQL         string
	Reason      string
	ReturnFrom  string
	NeedsAtomic bool
	Copy        bool
}

// SplitInsert is a multi-row INSERT into a distributed table whose rows
// belong to several shards: each part is a Route with its own SQL holding
// only its rows (and ParamIndexes renumbering parameters). The client gets
// one command tag, INSERT 0 <sum of the parts' counts>, and the RETURNING
// rows in the order of the statement's VALUES rows (Rows[i] lists the
// positions, 0-based, of part i's rows in the statement, in its order);
// when a part returns fewer rows than it inserted (ON CONFLICT DO
// NOTHING), the parts' rows concatenated. NeedsAtomic: all parts commit or
// none.
type SplitInsert struct {
	Table       string
	Returning   bool
	NeedsAtomic bool
	Parts       []*Route
	Rows        [][]int
}

// AllocateKeys is an INSERT into a distributed table whose key column was
// omitted (or given as DEFAULT) and is generated (bigserial, identity).
// The executor must:
//
//  1. allocate Count new key values of KeyType from the cluster-wide
//     allocator for Table.Column;
//  2. run SQL — the statement rewritten to supply the key column as
//     parameters $FirstParam .. $FirstParam+Count-1, in VALUES-row order —
//     with the original Bind values followed by the Count allocated values
//     in text format (planner.AppendKeys does this); SQL is a
//     plain statement that the planner plans again (Analyze + Plan) into
//     a Route or SplitInsert.
//
// The original Bind values keep their positions, so ParamIndexes of the
// resulting plan refer to the extended list.
//
// Count is 0 when the key was given and only Extra columns need values.
// Extra are other generated columns of Table (e.g. posts.id beside the key
// author_id) that the statement omitted: for each, in order, the executor
// allocates its Count values from the allocator for Table.Column too; they
// follow the key's values as parameters $FirstParam+Count, ... (column by
// column, in VALUES-row order within a column).
type AllocateKeys struct {
	Table        string
	Column       string
	Distribution string
	KeyType      topology.KeyType
	Count        int
	FirstParam   int
	SQL          string
	Extra        []AllocColumn
}

// AllocColumn is a generated non-key column AllocateKeys fills.
type AllocColumn struct {
	Column string
	Count  int
}

// CopySplit is COPY <distributed table> FROM STDIN: the executor sends SQL
// to every shard in Shards (each gets a COPY FROM STDIN) and feeds rows from
// the client's CopyData stream through a CopySplitter, which routes each
// row by its key field. The command tag is COPY <sum>. NeedsAtomic as for
// SplitInsert.
//
// KeyColumnIndex is the 0-based position of the key in each row, from the
// COPY column list; -1 when the statement has no column list, in which case
// the executor must resolve it (the key column's attnum order among the
// table's visible columns) and set it before splitting.
type CopySplit struct {
	Table          string
	Distribution   string
	KeyColumn      string
	KeyType        topology.KeyType
	KeyColumnIndex int
	Format         string // "text", "csv" or "binary"
	Delimiter      byte
	Quote          byte // csv only
	Escape         byte // csv only
	Null           string
	Header         bool
	SQL            string
	Shards         []string
	NeedsAtomic    bool
}

// Explain is EXPLAIN of an inner plan. The proxy prints Lines(Inner)
// first, then runs Prefix + the SQL of each leaf of Inner on that leaf's
// shards and appends their output. Analyze means the inner statement is
// really executed (EXPLAIN ANALYZE).
type Explain struct {
	Inner   Operator
	Prefix  string
	Analyze bool
}

// Session is a statement the proxy handles itself or forwards by its own
// session rules: transaction control (Kind "transaction", Name begin,
// commit, rollback, savepoint, release, rollback_to, prepare, commit_prepared,
// rollback_prepared), "set", "reset", "show", "discard", "listen",
// "unlisten", "notify", "prepare", "execute", "deallocate", "fetch"/"close"
// (cursors) and "empty" (an empty query string). Name is the setting,
// command or object name, Value the value set (SET) in text form. Proxy is
// true for settings in the shardproxy.* namespace, which the proxy keeps
// and must not send to a server.
type Session struct {
	Kind  string
	Name  string
	Value string
	SQL   string
	Proxy bool
	Fetch *Fetch // FETCH/MOVE (Kind "fetch"): direction and count
}

// Sequence is a query string with several statements (simple query
// protocol): each is planned on its own and run in order; the proxy must
// keep PostgreSQL's implicit-transaction semantics for the string.
type Sequence struct {
	Statements []Operator
}

var (
	_ Operator = (*Route)(nil)
	_ Operator = (*Scatter)(nil)
	_ Operator = (*Broadcast)(nil)
	_ Operator = (*SplitInsert)(nil)
	_ Operator = (*AllocateKeys)(nil)
	_ Operator = (*CopySplit)(nil)
	_ Operator = (*Explain)(nil)
	_ Operator = (*Session)(nil)
	_ Operator = (*Sequence)(nil)
)

func (*Route) Inputs() []Operator { return nil }
func (o *Route) Describe() Description {
	f := map[string]any{"sql": o.SQL}
	if o.Reason != "" {
		f["reason"] = o.Reason
	}
	if o.ParamIndexes != nil {
		f["params"] = intsToAny(o.ParamIndexes)
	}
	if o.ReadOnly {
		f["read_only"] = true
	}
	if o.ReadAnyShard {
		f["read_any_shard"] = true
	}
	return Description{Name: "Route", Shards: []string{o.Shard}, Fields: f}
}

func (*Scatter) Inputs() []Operator { return nil }
func (o *Scatter) Describe() Description {
	f := map[string]any{"sql": o.SQL}
	if o.Reason != "" {
		f["reason"] = o.Reason
	}
	if o.ReadOnly {
		f["read_only"] = true
	}
	if o.CopyHeader {
		f["copy_header"] = true
	}
	if o.CopyBinary {
		f["copy_binary"] = true
	}
	if o.Write {
		f["write"] = true
	}
	if len(o.ShardSQL) > 0 {
		owned := make([]string, 0, len(o.ShardSQL))
		for s := range o.ShardSQL {
			owned = append(owned, s)
		}
		sort.Strings(owned)
		f["owned_rows_only"] = owned
	}
	return Description{Name: "Scatter", Shards: append([]string(nil), o.Shards...), Fields: f}
}

func (*Broadcast) Inputs() []Operator { return nil }
func (o *Broadcast) Describe() Description {
	f := map[string]any{"sql": o.SQL, "return_from": o.ReturnFrom}
	if o.Reason != "" {
		f["reason"] = o.Reason
	}
	if o.NeedsAtomic {
		f["needs_atomic"] = true
	}
	if o.Copy {
		f["copy"] = true
	}
	return Description{Name: "Broadcast", Shards: append([]string(nil), o.Shards...), Fields: f}
}

func (o *SplitInsert) Inputs() []Operator {
	out := make([]Operator, len(o.Parts))
	for i, p := range o.Parts {
		out[i] = p
	}
	return out
}
func (o *SplitInsert) Describe() Description {
	f := map[string]any{"table": o.Table}
	if o.Returning {
		f["returning"] = true
	}
	if o.NeedsAtomic {
		f["needs_atomic"] = true
	}
	return Description{Name: "SplitInsert", Fields: f}
}

func (*AllocateKeys) Inputs() []Operator { return nil }
func (o *AllocateKeys) Describe() Description {
	f := map[string]any{
		"table": o.Table, "column": o.Column, "distribution": o.Distribution,
		"key_type": string(o.KeyType), "count": o.Count, "first_param": o.FirstParam, "sql": o.SQL,
	}
	if len(o.Extra) > 0 {
		extra := make([]string, len(o.Extra))
		for i, e := range o.Extra {
			extra[i] = fmt.Sprintf("%s×%d", e.Column, e.Count)
		}
		f["extra"] = extra
	}
	return Description{Name: "AllocateKeys", Fields: f}
}

func (*CopySplit) Inputs() []Operator { return nil }
func (o *CopySplit) Describe() Description {
	f := map[string]any{
		"table": o.Table, "distribution": o.Distribution, "key_column": o.KeyColumn,
		"key_type": string(o.KeyType), "key_index": o.KeyColumnIndex, "format": o.Format,
		"delimiter": string(o.Delimiter), "null": o.Null, "sql": o.SQL,
	}
	if o.Format == "csv" {
		f["quote"] = string(o.Quote)
		f["escape"] = string(o.Escape)
	}
	if o.Header {
		f["header"] = true
	}
	if o.NeedsAtomic {
		f["needs_atomic"] = true
	}
	return Description{Name: "CopySplit", Shards: append([]string(nil), o.Shards...), Fields: f}
}

func (o *Explain) Inputs() []Operator { return []Operator{o.Inner} }
func (o *Explain) Describe() Description {
	f := map[string]any{"prefix": o.Prefix}
	if o.Analyze {
		f["analyze"] = true
	}
	return Description{Name: "Explain", Fields: f}
}

func (*Session) Inputs() []Operator { return nil }
func (o *Session) Describe() Description {
	f := map[string]any{"kind": o.Kind, "sql": o.SQL}
	if o.Name != "" {
		f["name"] = o.Name
	}
	if o.Value != "" {
		f["value"] = o.Value
	}
	if o.Proxy {
		f["proxy"] = true
	}
	return Description{Name: "Session", Fields: f}
}

func (o *Sequence) Inputs() []Operator { return append([]Operator(nil), o.Statements...) }
func (o *Sequence) Describe() Description {
	return Description{Name: "Sequence", Fields: map[string]any{"statements": len(o.Statements)}}
}

func intsToAny(v []int) []any {
	out := make([]any, len(v))
	for i, x := range v {
		out[i] = x
	}
	return out
}

// Leaves returns the leaf operators of op in order (for EXPLAIN and
// show_routes).
func Leaves(op Operator) []Operator {
	in := op.Inputs()
	if len(in) == 0 {
		return []Operator{op}
	}
	var out []Operator
	for _, c := range in {
		out = append(out, Leaves(c)...)
	}
	return out
}
