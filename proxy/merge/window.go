package merge

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"strconv"

	"github.com/shardproxy/shardproxy/planner/plan"
)

// windower computes ranking window functions (plan.Window) over rows that
// arrive sorted by the window's ORDER BY.
type windower struct {
	in    iter
	keys  []sortKey
	cols  []windowCol
	vals  []value
	prev  []byte // the previous row's keys, canonically encoded (appendKey)
	cur   []byte
	part  int // the first part keys are the PARTITION BY
	prevP int // length of prev's PARTITION BY part
	// lead(x) reads one row ahead (nextAhead)
	lead     bool
	started  bool
	ahead    [][]byte // nil: no further row
	aheadKey []byte
	aheadP   int
	first    bool  // no row yet
	number   int64 // row_number of the row returned last
	rank     int64
	dense    int64
}

type windowCol struct {
	pos    int
	fn     string
	format int16
	kept   []byte // lag: the previous row's value; first_value: the partition's first
}

func (b *builder) window(in iter, lay layout, o *plan.Window) (iter, layout, error) {
	keys, err := b.keys(lay, o.Keys)
	if err != nil {
		return nil, layout{}, err
	}
	w := &windower{in: in, keys: keys, first: true, part: o.Partition}
	for _, c := range o.Columns {
		p, err := b.col(lay, c.Column, "window function")
		if err != nil {
			return nil, layout{}, err
		}
		switch c.Func {
		case "row_number", "rank", "dense_rank", "lag", "first_value":
		case "lead":
			w.lead = true
		default:
			return nil, layout{}, &Error{Code: "XX000", Message: "shardproxy merge: unexpected window function " + c.Func}
		}
		w.cols = append(w.cols, windowCol{pos: p, fn: c.Func, format: lay.fields[p].Format})
	}
	return w, lay, nil
}

func (w *windower) next() ([][]byte, error) {
	if w.lead {
		return w.nextAhead()
	}
	row, err := w.in.next()
	if err != nil {
		return nil, err
	}
	// The keys are copied (encoded): the row's bytes belong to its stream
	// and change once it moves on.
	key, p, err := w.encodeKeys(row, w.cur[:0])
	if err != nil {
		return nil, err
	}
	w.cur = key
	return w.apply(row, key, p, nil, nil, 0)
}

// nextAhead is next with one row read ahead, for lead(x): the rows are
// copied, since a stream's row changes once it moves on.
func (w *windower) nextAhead() ([][]byte, error) {
	if !w.started {
		w.started = true
		if err := w.readAhead(); err != nil {
			return nil, err
		}
	}
	if w.ahead == nil {
		return nil, io.EOF
	}
	row, key, p := w.ahead, w.aheadKey, w.aheadP
	if err := w.readAhead(); err != nil {
		return nil, err
	}
	return w.apply(row, key, p, w.ahead, w.aheadKey, w.aheadP)
}

// readAhead reads the next row into w.ahead (nil at the end).
func (w *windower) readAhead() error {
	r, err := w.in.next()
	if err == io.EOF {
		w.ahead = nil
		return nil
	}
	if err != nil {
		return err
	}
	w.ahead = CopyRow(r)
	w.aheadKey, w.aheadP, err = w.encodeKeys(w.ahead, nil)
	return err
}

// encodeKeys appends row's window keys, canonically encoded (appendKey),
// to dst; p is the length of the PARTITION BY part.
func (w *windower) encodeKeys(row [][]byte, dst []byte) (key []byte, p int, err error) {
	w.vals, err = decodeKeys(row, w.keys, w.vals)
	if err != nil {
		return nil, 0, err
	}
	p = -1
	for i, k := range w.keys {
		if i == w.part {
			p = len(dst)
		}
		dst = k.c.appendKey(dst, w.vals[i])
	}
	if p < 0 {
		p = len(dst)
	}
	return dst, p, nil
}

// apply fills row's window columns; key/p are its encoded keys, next,
// nextKey and nextP the following row's (nil next: none or not read).
func (w *windower) apply(row [][]byte, key []byte, p int, next [][]byte, nextKey []byte, nextP int) ([][]byte, error) {
	if !w.first && !bytes.Equal(w.prev[:w.prevP], key[:p]) {
		w.number, w.rank, w.dense = 0, 0, 0 // a new partition
	}
	w.number++
	if w.number == 1 || !bytes.Equal(w.prev, key) {
		w.rank, w.dense = w.number, w.dense+1 // a new peer group
	}
	w.first = false
	if w.lead {
		w.prev = key // owned: read ahead into its own slice
	} else {
		w.prev, w.cur = key, w.prev
	}
	w.prevP = p
	for i := range w.cols {
		c := &w.cols[i]
		if c.pos >= len(row) {
			return nil, fmt.Errorf("merge: a shard's row has %d columns, the window needs column %d", len(row), c.pos+1)
		}
		v := w.number
		switch c.fn {
		case "rank":
			v = w.rank
		case "dense_rank":
			v = w.dense
		case "lag":
			prev := c.kept
			if w.number == 1 {
				prev = nil // the partition's first row
			}
			c.kept = keepValue(c.kept[:0], row[c.pos])
			row[c.pos] = prev
			continue
		case "lead":
			var v []byte // the partition's last row: NULL
			if next != nil && bytes.Equal(nextKey[:nextP], key[:p]) {
				v = next[c.pos]
			}
			row[c.pos] = v
			continue
		case "first_value":
			if w.number == 1 {
				c.kept = keepValue(c.kept[:0], row[c.pos])
			}
			row[c.pos] = c.kept
			continue
		}
		if c.format == 1 {
			row[c.pos] = binary.BigEndian.AppendUint64(nil, uint64(v))
		} else {
			row[c.pos] = strconv.AppendInt(nil, v, 10)
		}
	}
	return row, nil
}

// keepValue copies v into dst (nil stays nil: NULL).
func keepValue(dst, v []byte) []byte {
	if v == nil {
		return nil
	}
	return append(dst[:0:0], v...)
}
