package merge

import (
	"container/heap"
	"fmt"
	"io"
	"math"
	"math/big"
	"sort"
	"strings"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/shardproxy/shardproxy/planner/plan"
)

// mergeSort is a k-way heap merge of sorted streams. It holds one row per
// stream (the stream's current row, valid until its next Next).
type mergeSort struct {
	streams []Stream
	keys    []sortKey
	h       mergeHeap
	started bool
	last    int // stream whose row was returned last (-1 none)
}

type head struct {
	row    [][]byte
	vals   []value
	stream int
}

type mergeHeap struct {
	items []*head
	keys  []sortKey
}

func (h *mergeHeap) Len() int { return len(h.items) }
func (h *mergeHeap) Less(i, j int) bool {
	c := compareKeys(h.items[i].vals, h.items[j].vals, h.keys)
	if c != 0 {
		return c < 0
	}
	return h.items[i].stream < h.items[j].stream
}
func (h *mergeHeap) Swap(i, j int) { h.items[i], h.items[j] = h.items[j], h.items[i] }
func (h *mergeHeap) Push(x any)    { h.items = append(h.items, x.(*head)) }
func (h *mergeHeap) Pop() any {
	x := h.items[len(h.items)-1]
	h.items = h.items[:len(h.items)-1]
	return x
}

func newMergeSort(streams []Stream, keys []sortKey) *mergeSort {
	return &mergeSort{streams: streams, keys: keys, h: mergeHeap{keys: keys}, last: -1}
}

// advance reads stream s's next row into hd; false at EOF.
func (m *mergeSort) advance(hd *head) (bool, error) {
	row, err := m.streams[hd.stream].Next()
	if err == io.EOF {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	hd.row = row
	hd.vals, err = decodeKeys(row, m.keys, hd.vals)
	return err == nil, err
}

func (m *mergeSort) next() ([][]byte, error) {
	if !m.started {
		m.started = true
		for i := range m.streams {
			hd := &head{stream: i}
			ok, err := m.advance(hd)
			if err != nil {
				return nil, err
			}
			if ok {
				m.h.items = append(m.h.items, hd)
			}
		}
		heap.Init(&m.h)
	} else if m.last >= 0 {
		// The row returned last is still the heap's top: replace it.
		hd := m.h.items[0]
		ok, err := m.advance(hd)
		if err != nil {
			return nil, err
		}
		if ok {
			heap.Fix(&m.h, 0)
		} else {
			heap.Pop(&m.h)
		}
		m.last = -1
	}
	if len(m.h.items) == 0 {
		return nil, io.EOF
	}
	top := m.h.items[0]
	m.last = top.stream
	return top.row, nil
}

// sorter buffers every input row and returns them sorted (stable).
type sorter struct {
	in   iter
	keys []sortKey
	mem  *budget
	rows []sortedRow
	done bool
	i    int
}

type sortedRow struct {
	row  [][]byte
	vals []value
}

func (s *sorter) next() ([][]byte, error) {
	if !s.done {
		for {
			row, err := s.in.next()
			if err == io.EOF {
				break
			}
			if err != nil {
				return nil, err
			}
			if err := s.mem.grow(rowSize(row) + int64(32*len(s.keys))); err != nil {
				return nil, err
			}
			r := CopyRow(row)
			vals, err := decodeKeys(r, s.keys, nil)
			if err != nil {
				return nil, err
			}
			s.rows = append(s.rows, sortedRow{r, vals})
		}
		sort.SliceStable(s.rows, func(i, j int) bool { return compareKeys(s.rows[i].vals, s.rows[j].vals, s.keys) < 0 })
		s.done = true
	}
	if s.i >= len(s.rows) {
		return nil, io.EOF
	}
	r := s.rows[s.i].row
	s.rows[s.i] = sortedRow{}
	s.i++
	return r, nil
}

// having keeps rows whose condition is true.
type having struct {
	in   iter
	lay  layout
	cond *plan.Cond
}

// resolveCond copies c with column indexes resolved (plans are shared and
// must not be modified).
func (b *builder) resolveCond(lay layout, c *plan.Cond) (*plan.Cond, error) {
	if c == nil {
		return nil, &Error{Code: "XX000", Message: "shardproxy merge: empty HAVING condition"}
	}
	out := *c
	out.Args = nil
	if c.Op == "column" {
		p, err := b.col(lay, c.Column, "HAVING")
		if err != nil {
			return nil, err
		}
		out.Column = p
	}
	for _, a := range c.Args {
		ra, err := b.resolveCond(lay, a)
		if err != nil {
			return nil, err
		}
		out.Args = append(out.Args, ra)
	}
	return &out, nil
}

func (h *having) next() ([][]byte, error) {
	for {
		row, err := h.in.next()
		if err != nil {
			return nil, err
		}
		v, err := h.eval(row, h.cond)
		if err != nil {
			return nil, err
		}
		if v == 1 {
			return row, nil
		}
	}
}

// eval returns 1 true, 0 false, -1 NULL.
func (h *having) eval(row [][]byte, c *plan.Cond) (int, error) {
	switch c.Op {
	case "and", "or":
		res := 1
		if c.Op == "or" {
			res = 0
		}
		null := false
		for _, a := range c.Args {
			v, err := h.eval(row, a)
			if err != nil {
				return 0, err
			}
			switch {
			case v == -1:
				null = true
			case c.Op == "and" && v == 0:
				return 0, nil
			case c.Op == "or" && v == 1:
				return 1, nil
			}
		}
		if null {
			return -1, nil
		}
		return res, nil
	case "not":
		v, err := h.eval(row, c.Args[0])
		if err != nil || v == -1 {
			return v, err
		}
		return 1 - v, nil
	case "is_null", "is_not_null":
		a := c.Args[0]
		isNull := a.Op == "const" && a.Null || a.Op == "column" && row[a.Column] == nil
		if isNull == (c.Op == "is_null") {
			return 1, nil
		}
		return 0, nil
	}
	if len(c.Args) != 2 {
		return 0, &Error{Code: "XX000", Message: "shardproxy merge: bad HAVING condition " + c.Op}
	}
	cmp, null, err := h.compare(row, c.Args[0], c.Args[1])
	if err != nil || null {
		return -1, err
	}
	var ok bool
	switch c.Op {
	case "=":
		ok = cmp == 0
	case "<>":
		ok = cmp != 0
	case "<":
		ok = cmp < 0
	case "<=":
		ok = cmp <= 0
	case ">":
		ok = cmp > 0
	case ">=":
		ok = cmp >= 0
	default:
		return 0, &Error{Code: "XX000", Message: "shardproxy merge: bad HAVING operator " + c.Op}
	}
	if ok {
		return 1, nil
	}
	return 0, nil
}

// operand decodes a leaf: its codec (nil for a constant) and value.
func (h *having) operand(row [][]byte, c *plan.Cond) (*codec, value, []byte, error) {
	if c.Op == "const" {
		if c.Null {
			return nil, value{null: true}, nil, nil
		}
		return nil, value{}, []byte(c.Value), nil
	}
	if c.Op != "column" {
		return nil, value{}, nil, &Error{Code: "XX000", Message: "shardproxy merge: bad HAVING operand " + c.Op}
	}
	cd := h.lay.codecs[c.Column]
	v, err := cd.decode(row[c.Column], h.lay.fields[c.Column].Format)
	return cd, v, nil, err
}

func (h *having) compare(row [][]byte, l, r *plan.Cond) (int, bool, error) {
	lc, lv, lt, err := h.operand(row, l)
	if err != nil {
		return 0, false, err
	}
	rc, rv, rt, err := h.operand(row, r)
	if err != nil {
		return 0, false, err
	}
	if lv.null || rv.null {
		return 0, true, nil
	}
	// A constant takes the other side's type; numbers of different kinds
	// compare as numbers.
	if lc == nil {
		lc, lv, err = constAs(rc, lt)
	} else if rc == nil {
		rc, rv, err = constAs(lc, rt)
	}
	if err != nil {
		return 0, false, err
	}
	if lc.kind == rc.kind {
		return lc.compare(lv, rv), false, nil
	}
	if numeric(lc.kind) && numeric(rc.kind) {
		if lc.kind == kFloat || rc.kind == kFloat {
			return cmpFloat(toFloat(lc, lv), toFloat(rc, rv)), false, nil
		}
		return cmpDecimal(toDecimal(lc, lv), toDecimal(rc, rv)), false, nil
	}
	return 0, false, &Error{Code: "0A000", Message: fmt.Sprintf("shardproxy merge: cannot compare types %d and %d in HAVING", lc.oid, rc.oid)}
}

func numeric(k kind) bool { return k == kInt || k == kNumeric || k == kFloat }

// constAs decodes a constant's text for comparison with a value of codec
// c: integers as numeric (count(*) > 2.5 compares as numbers).
func constAs(c *codec, text []byte) (*codec, value, error) {
	if numeric(c.kind) {
		nc := codecFor(oidNumeric)
		if c.kind == kFloat {
			nc = codecFor(oidFloat8)
		}
		v, err := nc.decode(text, 0)
		if err != nil {
			return nil, value{}, &Error{Code: "22P02", Message: fmt.Sprintf("invalid input syntax for type numeric: %q", string(text))}
		}
		return nc, v, nil
	}
	v, err := c.decode(text, 0)
	return c, v, err
}

func toFloat(c *codec, v value) float64 {
	switch c.kind {
	case kInt:
		return float64(v.i)
	case kNumeric:
		switch v.d.special {
		case nanSpecial:
			return math.NaN()
		case posInf:
			return math.Inf(1)
		case negInf:
			return math.Inf(-1)
		}
		f, _ := new(big.Rat).SetFrac(&v.d.unscaled, pow10(v.d.scale)).Float64()
		return f
	}
	return v.f
}

func toDecimal(c *codec, v value) *decimal {
	if c.kind == kInt {
		d := &decimal{}
		d.unscaled.SetInt64(v.i)
		return d
	}
	return v.d
}

// field returns a FieldDescription for a computed column of type oid.
func field(name []byte, oid uint32, format int16) pgproto3.FieldDescription {
	size := int16(-1)
	switch oid {
	case oidInt8, oidFloat8:
		size = 8
	case oidFloat4, oidInt4:
		size = 4
	case oidBool:
		size = 1
	case oidInterval:
		size = 16
	}
	return pgproto3.FieldDescription{Name: name, DataTypeOID: oid, DataTypeSize: size, TypeModifier: -1, Format: format}
}

var sumType = map[uint32]uint32{
	oidInt2: oidInt8, oidInt4: oidInt8, oidInt8: oidNumeric, oidNumeric: oidNumeric,
	oidFloat4: oidFloat4, oidFloat8: oidFloat8, oidInterval: oidInterval,
}

func errUnsupportedAgg(fn string, oid uint32) error {
	return &Error{Code: "0A000", Message: fmt.Sprintf("%s of a value of type %d across shards is not supported", fn, oid),
		Hint: "add a key condition, or GROUP BY the distribution key"}
}

var _ = strings.TrimSpace
