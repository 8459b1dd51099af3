package merge

import (
	"fmt"
	"io"
	"strings"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/shardproxy/shardproxy/planner/plan"
)

// Error is a merge failure the client may see; Code is its SQLSTATE (53200
// out of memory, 22003 numeric overflow, 0A000 unsupported, XX000 bad
// shard data).
type Error struct {
	Code    string
	Message string
	Hint    string
}

func (e *Error) Error() string { return e.Message }

// SQLState returns Code.
func (e *Error) SQLState() string { return e.Code }

// Stream is one shard's result rows. Next returns the next row's column
// values (nil is NULL) in the formats of the shard's RowDescription, or
// io.EOF after the last row, or the shard's error. A returned row must stay
// valid until the next call of Next on the same stream (the merge copies
// what it keeps longer).
type Stream interface {
	Next() ([][]byte, error)
}

// DefaultMemoryLimit bounds the state buffering operators keep when
// Options.MemoryLimit is 0.
const DefaultMemoryLimit = 64 << 20

// Options configure one merge.
type Options struct {
	// MemoryLimit bounds, in bytes, what Sort, Aggregate and Distinct
	// buffer (rows, groups, seen keys, as estimated). Beyond it Next fails
	// with SQLSTATE 53200. 0 means DefaultMemoryLimit; negative, no limit.
	MemoryLimit int64
	// ResultFormats are the client's result format codes as in Bind: none
	// (all text), one (for every column) or one per visible column.
	ResultFormats []int16
	// Collation is the shards' database collation (pg_database.datcollate).
	// Text sort keys and text min/max compare bytewise, which is the order
	// of "C", "POSIX" and "C.UTF-8" only; with any other collation (unless
	// the key has an explicit COLLATE "C") New fails with 0A000. "" means
	// the executor checked it is one of those.
	Collation string
	// Evaluator runs the statements of a plan.Evaluate (expressions over
	// aggregates). Only needed to read rows: New builds the description
	// without it.
	Evaluator Evaluator
}

// Result is a merge in progress: RowDescription is what the client must
// see, Next the rows. Not safe for concurrent use.
type Result struct {
	desc    *pgproto3.RowDescription
	it      iter
	convert []conv
	out     [][]byte
	buf     []byte
	mem     *budget
	lay     layout // the rows' shape before conversion
}

type conv struct {
	from, to int16
	c        *codec
}

// RowDescription returns the description the client sees: hidden columns
// dropped, aggregate columns with the types PostgreSQL reports, formats as
// requested.
func (r *Result) RowDescription() *pgproto3.RowDescription { return r.desc }

// MemoryInUse returns the bytes currently accounted to buffering operators.
func (r *Result) MemoryInUse() int64 { return r.mem.used }

// Next returns the next row for the client, or io.EOF. The row is valid
// until the next call.
func (r *Result) Next() ([][]byte, error) {
	row, err := r.it.next()
	if err != nil {
		return nil, err
	}
	if r.convert == nil {
		return row, nil
	}
	r.out = r.out[:0]
	r.buf = r.buf[:0]
	var spans [][2]int
	for i, v := range row {
		cv := r.convert[i]
		if v == nil || cv.c == nil {
			spans = append(spans, [2]int{-1, i})
			continue
		}
		d, err := cv.c.decode(v, cv.from)
		if err != nil {
			return nil, err
		}
		start := len(r.buf)
		r.buf, err = cv.c.encode(r.buf, d, cv.to)
		if err != nil {
			return nil, err
		}
		spans = append(spans, [2]int{start, len(r.buf)})
	}
	for i, s := range spans {
		if s[0] < 0 {
			r.out = append(r.out, row[i])
			continue
		}
		r.out = append(r.out, r.buf[s[0]:s[1]:s[1]])
	}
	return r.out, nil
}

// New builds the merge for root, a tree of merge operators over one
// plan.Scatter (a bare Scatter concatenates). shardDesc is the
// RowDescription of the Scatter's SQL as the shards sent it (with the
// formats the executor asked them for); streams are the shards' rows, one
// per shard (or one fan-in stream when root has no MergeSort).
func New(root plan.Operator, shardDesc *pgproto3.RowDescription, streams []Stream, opts Options) (*Result, error) {
	mem := &budget{limit: opts.MemoryLimit}
	if mem.limit == 0 {
		mem.limit = DefaultMemoryLimit
	}
	b := &builder{desc: shardDesc, streams: streams, mem: mem, collation: opts.Collation, evaluator: opts.Evaluator}
	it, lay, err := b.build(root)
	if err != nil {
		return nil, err
	}
	// buf is never nil, so an empty value stays non-NULL after conversion.
	r := &Result{it: it, mem: mem, buf: make([]byte, 0, 256), lay: lay}
	r.SetResultFormats(opts.ResultFormats)
	return r, nil
}

// SetResultFormats sets the formats (format codes as in Bind) of the rows
// Next returns from now on and of RowDescription; New sets
// Options.ResultFormats. A cursor whose FETCH asks for other formats than
// its DECLARE uses it between rows.
func (r *Result) SetResultFormats(formats []int16) {
	r.desc = &pgproto3.RowDescription{}
	r.convert = nil
	need := false
	convs := make([]conv, len(r.lay.fields))
	for i, f := range r.lay.fields {
		want := resultFormat(formats, i)
		if f.Format != want {
			need = true
			convs[i] = conv{from: f.Format, to: want, c: r.lay.codecs[i]}
			f.Format = want
		}
		r.desc.Fields = append(r.desc.Fields, f)
	}
	if need {
		r.convert = convs
	}
}

func resultFormat(formats []int16, i int) int16 {
	switch len(formats) {
	case 0:
		return 0
	case 1:
		return formats[0]
	}
	if i < len(formats) {
		return formats[i]
	}
	return 0
}

// CollationIsBytewise reports whether a collation name sorts text in byte
// order (what the merge compares): C, POSIX, C.UTF-8 / C.utf8, ucs_basic.
func CollationIsBytewise(name string) bool {
	switch strings.ToLower(strings.Trim(name, `"`)) {
	case "", "c", "posix", "c.utf-8", "c.utf8", "ucs_basic", "pg_c_utf8":
		return true
	}
	return false
}

// budget accounts buffered bytes against a limit.
type budget struct {
	limit, used int64
}

func (m *budget) grow(n int64) error {
	m.used += n
	if m.limit > 0 && m.used > m.limit {
		return &Error{Code: "53200", Message: fmt.Sprintf("out of memory: merging the shards' results needs more than %d bytes", m.limit),
			Hint: "add conditions or a LIMIT that reduce the rows to sort, group or deduplicate, or raise the proxy's merge memory limit"}
	}
	return nil
}

func (m *budget) release(n int64) { m.used -= n }

func rowSize(row [][]byte) int64 {
	n := int64(24 + 24*len(row))
	for _, v := range row {
		n += int64(len(v))
	}
	return n
}

// CopyRow copies a row's values into one allocation (nil stays NULL), so
// the row outlives the buffer it was read from.
func CopyRow(row [][]byte) [][]byte {
	n := 0
	for _, v := range row {
		n += len(v)
	}
	buf := make([]byte, 0, n)
	out := make([][]byte, len(row))
	for i, v := range row {
		if v == nil {
			continue
		}
		s := len(buf)
		buf = append(buf, v...)
		out[i] = buf[s:len(buf):len(buf)]
	}
	return out
}

// iter is one operator's output.
type iter interface {
	next() ([][]byte, error)
}

// layout describes an operator's output columns.
type layout struct {
	fields []pgproto3.FieldDescription
	codecs []*codec
}

func layoutOf(desc *pgproto3.RowDescription) layout {
	l := layout{}
	for _, f := range desc.Fields {
		l.fields = append(l.fields, f)
		l.codecs = append(l.codecs, codecFor(f.DataTypeOID))
	}
	return l
}

type builder struct {
	desc      *pgproto3.RowDescription
	streams   []Stream
	mem       *budget
	collation string
	evaluator Evaluator
}

func (b *builder) col(l layout, i int, what string) (int, error) {
	p := plan.Resolve(i, len(l.fields))
	if p < 0 {
		return 0, &Error{Code: "XX000", Message: fmt.Sprintf("shardproxy merge: %s column %d is out of range (the shards return %d columns)", what, i, len(l.fields))}
	}
	return p, nil
}

func (b *builder) checkCollation(c *codec, explicit string) error {
	if c.kind == kArray {
		c = c.elem // text[] sorts by its elements' collation
	}
	if c.kind != kText && c.kind != kBpchar && c.kind != kJSONB { // jsonb strings sort by the database collation
		return nil
	}
	name := explicit
	if name == "" {
		name = b.collation
	}
	if CollationIsBytewise(name) {
		return nil
	}
	if c.kind == kJSONB {
		return &Error{Code: "0A000", Message: fmt.Sprintf("sorting jsonb across shards compares its strings by the database collation, which must be byte-order, but the shards use %q", name),
			Hint: `sort by a text expression with COLLATE "C" (e.g. (data->>'name') COLLATE "C"), or use a database with LC_COLLATE C or C.UTF-8`}
	}
	return &Error{Code: "0A000", Message: fmt.Sprintf("sorting text across shards needs a byte-order collation, but the shards use %q", name),
		Hint: `add COLLATE "C" to the text ORDER BY keys, or use a database with LC_COLLATE C or C.UTF-8`}
}

func (b *builder) build(op plan.Operator) (iter, layout, error) {
	switch o := op.(type) {
	case *plan.Scatter:
		return &concat{streams: b.streams}, layoutOf(b.desc), nil
	case *plan.MergeSort:
		if _, ok := o.Input.(*plan.Scatter); !ok {
			return nil, layout{}, &Error{Code: "XX000", Message: "shardproxy merge: MergeSort must be directly above the Scatter"}
		}
		lay := layoutOf(b.desc)
		keys, err := b.keys(lay, o.Keys)
		if err != nil {
			return nil, layout{}, err
		}
		return newMergeSort(b.streams, keys), lay, nil
	}
	inputs := op.Inputs()
	if len(inputs) != 1 {
		return nil, layout{}, &Error{Code: "XX000", Message: fmt.Sprintf("shardproxy merge: unexpected operator %T", op)}
	}
	in, lay, err := b.build(inputs[0])
	if err != nil {
		return nil, layout{}, err
	}
	switch o := op.(type) {
	case *plan.Sort:
		keys, err := b.keys(lay, o.Keys)
		if err != nil {
			return nil, layout{}, err
		}
		return &sorter{in: in, keys: keys, mem: b.mem}, lay, nil
	case *plan.Limit:
		return &limiter{in: in, count: o.Count, offset: o.Offset}, lay, nil
	case *plan.Window:
		return b.window(in, lay, o)
	case *plan.Distinct:
		var cols []int
		if o.Columns == nil {
			for i := range lay.fields {
				cols = append(cols, i)
			}
		}
		for _, c := range o.Columns {
			p, err := b.col(lay, c, "DISTINCT")
			if err != nil {
				return nil, layout{}, err
			}
			cols = append(cols, p)
		}
		return &distinct{in: in, cols: cols, lay: lay, mem: b.mem, seen: map[string]struct{}{}}, lay, nil
	case *plan.SetOp:
		s, err := newSetOp(in, lay, o, b.mem)
		if err != nil {
			return nil, layout{}, err
		}
		return s, lay, nil
	case *plan.Project:
		n := len(lay.fields) - o.Hidden
		if n < 0 {
			return nil, layout{}, &Error{Code: "XX000", Message: "shardproxy merge: more hidden columns than columns"}
		}
		return &project{in: in, n: n}, layout{fields: lay.fields[:n], codecs: lay.codecs[:n]}, nil
	case *plan.Having:
		c, err := b.resolveCond(lay, o.Cond)
		if err != nil {
			return nil, layout{}, err
		}
		return &having{in: in, lay: lay, cond: c}, lay, nil
	case *plan.Aggregate:
		return b.aggregate(in, lay, o)
	case *plan.Evaluate:
		return b.evaluate(in, lay, o)
	}
	return nil, layout{}, &Error{Code: "XX000", Message: fmt.Sprintf("shardproxy merge: unexpected operator %T", op)}
}

type sortKey struct {
	col        int
	desc       bool
	nullsFirst bool
	c          *codec
	format     int16
}

func (b *builder) keys(lay layout, keys []plan.SortKey) ([]sortKey, error) {
	var out []sortKey
	for _, k := range keys {
		p, err := b.col(lay, k.Column, "sort key")
		if err != nil {
			return nil, err
		}
		c := lay.codecs[p]
		if !c.ordered() {
			return nil, &Error{Code: "0A000", Message: fmt.Sprintf("ORDER BY a column of type %d across shards is not supported", c.oid),
				Hint: "sort by an integer, numeric, float, text, bytea, bool, date/time, interval, uuid or jsonb expression (or a one-dimensional array of those), or add a key condition"}
		}
		if err := b.checkCollation(c, k.Collation); err != nil {
			return nil, err
		}
		out = append(out, sortKey{col: p, desc: k.Desc, nullsFirst: k.NullsFirst, c: c, format: lay.fields[p].Format})
	}
	return out, nil
}

// decodeKeys decodes row's key columns.
func decodeKeys(row [][]byte, keys []sortKey, dst []value) ([]value, error) {
	dst = dst[:0]
	for _, k := range keys {
		if k.col >= len(row) {
			return nil, fmt.Errorf("merge: a shard's row has %d columns, sorting needs column %d", len(row), k.col+1)
		}
		v, err := k.c.decode(row[k.col], k.format)
		if err != nil {
			return nil, err
		}
		dst = append(dst, v)
	}
	return dst, nil
}

// compareKeys orders two decoded key tuples.
func compareKeys(a, b []value, keys []sortKey) int {
	for i, k := range keys {
		x, y := a[i], b[i]
		var c int
		switch {
		case x.null && y.null:
			continue
		case x.null:
			c = 1
			if k.nullsFirst {
				c = -1
			}
			return c
		case y.null:
			c = -1
			if k.nullsFirst {
				c = 1
			}
			return c
		}
		c = k.c.compare(x, y)
		if k.desc {
			c = -c
		}
		if c != 0 {
			return c
		}
	}
	return 0
}

// concat reads the streams one after another.
type concat struct {
	streams []Stream
	i       int
}

func (c *concat) next() ([][]byte, error) {
	for c.i < len(c.streams) {
		row, err := c.streams[c.i].Next()
		if err == io.EOF {
			c.i++
			continue
		}
		return row, err
	}
	return nil, io.EOF
}

type limiter struct {
	in            iter
	count, offset int64
	sent          int64
}

func (l *limiter) next() ([][]byte, error) {
	for l.offset > 0 {
		if _, err := l.in.next(); err != nil {
			return nil, err
		}
		l.offset--
	}
	if l.count >= 0 && l.sent >= l.count {
		return nil, io.EOF
	}
	row, err := l.in.next()
	if err != nil {
		return nil, err
	}
	l.sent++
	return row, nil
}

type project struct {
	in iter
	n  int
}

func (p *project) next() ([][]byte, error) {
	row, err := p.in.next()
	if err != nil {
		return nil, err
	}
	if len(row) < p.n {
		return nil, &Error{Code: "XX000", Message: "shardproxy merge: a shard returned a row with too few columns"}
	}
	return row[:p.n], nil
}

// appendRowKey appends the equality key of row's cols (decoded values, so
// equal values of different text forms match; NULLs equal).
func appendRowKey(dst []byte, row [][]byte, cols []int, lay layout) ([]byte, error) {
	for _, c := range cols {
		v, err := lay.codecs[c].decode(row[c], lay.fields[c].Format)
		if err != nil {
			return nil, err
		}
		dst = lay.codecs[c].appendKey(dst, v)
	}
	return dst, nil
}

type distinct struct {
	in   iter
	cols []int
	lay  layout
	mem  *budget
	seen map[string]struct{}
	key  []byte
}

func (d *distinct) next() ([][]byte, error) {
	for {
		row, err := d.in.next()
		if err != nil {
			return nil, err
		}
		if d.key, err = appendRowKey(d.key[:0], row, d.cols, d.lay); err != nil {
			return nil, err
		}
		if _, ok := d.seen[string(d.key)]; ok {
			continue
		}
		if err := d.mem.grow(int64(len(d.key) + 48)); err != nil {
			return nil, err
		}
		d.seen[string(d.key)] = struct{}{}
		return row, nil
	}
}
