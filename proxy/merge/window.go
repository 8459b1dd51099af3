package merge

import (
	"bytes"
	"fmt"
	"io"
	"math"

	"github.com/shardproxy/shardproxy/planner/plan"
)

// windower computes window functions (plan.Window) over rows that arrive
// sorted by the window's PARTITION BY, then ORDER BY. It reads one peer
// group (rows equal on every key) at a time, plus the first row of the
// next group: rank() and the running aggregates need the whole group,
// lead() the row after. Buffered rows are copies (a stream's row changes
// once it moves on) and count against the memory limit.
type windower struct {
	in        iter
	keys      []sortKey
	cols      []windowCol
	vals      []value
	part      int // the first part keys are the PARTITION BY
	mem       *budget
	group     []windowRow // the peer group being sent
	at        int         // next row of group to send
	held      int64       // memory of group
	following *windowRow  // first row of the following group (nil: none or not read)
	eof       bool
	prev      []byte // the keys of the group sent before, to see a new partition
	prevP     int

	number, rank, dense int64
	outs                [][]byte
	// whole: ntile, percent_rank or cume_dist need the partition's size:
	// a group is then the whole partition, peers found within it.
	whole   bool
	peerEnd int // whole: index in group of the current row's last peer
}

type windowRow struct {
	row [][]byte
	key []byte // the keys, canonically encoded (appendKey)
	p   int    // length of key's PARTITION BY part
}

type windowCol struct {
	pos    int
	fn     string
	format int16
	rows   bool // aggregates: ROWS frame (up to the row itself), else RANGE (to its last peer)
	// slide > 0: a moving aggregate over the row and the slide-1 rows
	// before it (ROWS n PRECEDING); frame holds their inputs, oldest first.
	slide int64
	frame [][]byte
	kept  []byte   // lag: the previous row's value; first_value: the partition's first; last_value: the group's last
	nth   []byte   // nth_value: the partition's n-th row's value, once read
	n     int64    // nth_value's and lag's position (lag(x): 1)
	dflt  int      // lag/lead: the column of the row's default value, -1 for NULL
	back  [][]byte // lag: the partition's last n values
	c     *codec
	// in is the column an aggregate reads: pos, avg's hidden exact sum, or
	// (ofGroups) each group's merged aggregate
	in       int
	ofGroups bool
	inC      *codec
	inFormat int16
	acc      aggState // aggregates: the partition's running state
	// ntile's state in the partition (PostgreSQL's window_ntile)
	tile, tileRows, tileBoundary, tileRemainder int64
}

func (b *builder) window(in iter, lay layout, o *plan.Window) (iter, layout, error) {
	keys, err := b.keys(lay, o.Keys)
	if err != nil {
		return nil, layout{}, err
	}
	w := &windower{in: in, keys: keys, part: o.Partition, mem: b.mem}
	for _, c := range o.Columns {
		p, err := b.col(lay, c.Column, "window function")
		if err != nil {
			return nil, layout{}, err
		}
		col := windowCol{pos: p, fn: c.Func, format: lay.fields[p].Format, rows: c.Rows, c: lay.codecs[p], n: c.N, in: p, slide: c.FrameRows}
		if col.slide > 0 && (!c.Rows || !isWindowAgg(c.Func)) {
			return nil, layout{}, &Error{Code: "XX000", Message: "shardproxy merge: a moving frame for " + c.Func}
		}
		if c.Func == "avg" || c.OfGroups {
			if col.in, err = b.col(lay, c.Arg, "window function"); err != nil {
				return nil, layout{}, err
			}
		}
		col.ofGroups = c.OfGroups
		col.dflt = -1
		if c.Default {
			if c.Func != "lag" && c.Func != "lead" {
				return nil, layout{}, &Error{Code: "XX000", Message: "shardproxy merge: a default for " + c.Func}
			}
			if col.dflt, err = b.col(lay, c.Arg, "window function"); err != nil {
				return nil, layout{}, err
			}
			if lay.codecs[col.dflt].oid != col.c.oid {
				// Over groups the values are the aggregate's, the
				// default is in the common type of both.
				return nil, layout{}, &Error{Code: "0A000", Message: fmt.Sprintf("%s() with a default of another type (%d) than its value (%d) across shards is not supported", c.Func, lay.codecs[col.dflt].oid, col.c.oid),
					Hint: "cast the default to the value's type"}
			}
		}
		col.inC, col.inFormat = lay.codecs[col.in], lay.fields[col.in].Format
		switch c.Func {
		case "row_number", "rank", "dense_rank", "lag", "first_value", "last_value", "nth_value", "count", "min", "max":
		case "ntile", "percent_rank", "cume_dist":
			w.whole = true
		case "lead":
			w.whole = w.whole || c.N > 1 // reads n rows ahead within the partition
		case "sum", "avg":
			// Floats are added in the window's order, as PostgreSQL's
			// float8pl/float4pl and float8_accum do row by row; rows equal
			// on the window's ORDER BY may arrive in another order than on
			// one server, which can change the last bits (as PostgreSQL's
			// own order of such peers is unspecified).
			if k := col.inC.kind; k != kInt && k != kNumeric && k != kFloat {
				return nil, layout{}, &Error{Code: "0A000", Message: fmt.Sprintf("a running %s of type %d across shards is not supported", c.Func, col.inC.oid),
					Hint: "cast the argument to numeric, or partition the window by the distribution key"}
			}
		default:
			return nil, layout{}, &Error{Code: "XX000", Message: "shardproxy merge: unexpected window function " + c.Func}
		}
		if (c.Func == "min" || c.Func == "max") && !col.c.ordered() {
			return nil, layout{}, &Error{Code: "0A000", Message: fmt.Sprintf("a running %s of type %d across shards is not supported", c.Func, col.c.oid)}
		}
		w.cols = append(w.cols, col)
	}
	return w, lay, nil
}

func (w *windower) next() ([][]byte, error) {
	if w.at == len(w.group) {
		if err := w.readGroup(); err != nil {
			return nil, err
		}
	}
	i := w.at
	w.at++
	r := &w.group[i]
	w.number++
	if i == 0 || !bytes.Equal(w.group[i-1].key, r.key) {
		w.rank, w.dense = w.number, w.dense+1 // a new peer group
		w.peerEnd = len(w.group) - 1          // a group is one peer group, unless whole
		if w.whole {
			w.peerEnd = i
			for w.peerEnd+1 < len(w.group) && bytes.Equal(w.group[w.peerEnd+1].key, r.key) {
				w.peerEnd++
			}
		}
	}
	// A lead reads the next row's original value: r's columns are replaced
	// only once all are computed.
	outs := w.outs[:0]
	for j := range w.cols {
		c := &w.cols[j]
		if c.pos >= len(r.row) {
			return nil, fmt.Errorf("merge: a shard's row has %d columns, the window needs column %d", len(r.row), c.pos+1)
		}
		var out []byte
		switch c.fn {
		case "row_number", "rank", "dense_rank", "ntile":
			v := w.number
			switch c.fn {
			case "rank":
				v = w.rank
			case "dense_rank":
				v = w.dense
			case "ntile":
				v = c.ntile(int64(len(w.group))) // the partition's rows (whole)
			}
			var err error
			if out, err = c.c.encode(nil, value{i: v}, c.format); err != nil {
				return nil, err
			}
		case "lag":
			// The last n values of the partition, oldest first.
			if w.number == 1 {
				c.back = c.back[:0]
			}
			out = c.dfltOf(r) // fewer than n rows before: the default
			if int64(len(c.back)) == c.n {
				out = c.back[0]
				c.back = c.back[1:]
			}
			c.back = append(c.back, keepValue(r.row[c.pos]))
		case "lead":
			out = c.dfltOf(r) // no row n ahead in the partition: the default
			if c.n > 1 {      // the group is the whole partition (whole)
				if k := int64(i) + c.n; k < int64(len(w.group)) {
					out = w.group[k].row[c.pos]
				}
			} else if i+1 < len(w.group) {
				out = w.group[i+1].row[c.pos]
			} else if f := w.following; f != nil && bytes.Equal(f.key[:f.p], r.key[:r.p]) {
				out = f.row[c.pos] // the next group's first row, same partition
			}
		case "percent_rank", "cume_dist":
			n := float64(len(w.group)) // the partition's rows (whole)
			f := 0.0
			if c.fn == "cume_dist" {
				f = float64(w.peerEnd+1) / n
			} else if n > 1 {
				f = float64(w.rank-1) / (n - 1)
			}
			var err error
			if out, err = c.c.encode(nil, value{f: f}, c.format); err != nil {
				return nil, err
			}
		case "first_value":
			if w.number == 1 {
				c.kept = keepValue(r.row[c.pos])
			}
			out = c.kept
		case "last_value":
			out = c.kept // the peer group's last row's (RANGE)
			if c.rows {
				out = r.row[c.pos]
			}
		case "nth_value":
			// The frame ends at the row (ROWS) or its last peer (RANGE).
			end := w.number
			if !c.rows {
				end = w.rank + int64(len(w.group)) - 1
			}
			if c.n <= end {
				out = c.nth
			}
		default: // running aggregates
			if c.slide > 0 {
				if err := c.moveFrame(r.row[c.in], w.number == 1); err != nil {
					return nil, err
				}
			} else if c.rows {
				if err := c.add(r.row[c.in], false); err != nil {
					return nil, err
				}
			}
			var err error
			if out, err = c.result(); err != nil {
				return nil, err
			}
		}
		outs = append(outs, out)
	}
	for j, out := range outs {
		r.row[w.cols[j].pos] = out
	}
	w.outs = outs
	return r.row, nil
}

// readGroup reads the next peer group into w.group (io.EOF at the end),
// starting a new partition's counts when its keys say so.
func (w *windower) readGroup() error {
	w.mem.release(w.held)
	w.group, w.at, w.held = w.group[:0], 0, 0
	if w.following == nil && !w.eof {
		r, err := w.read()
		if err != nil {
			return err
		}
		w.following = r
	}
	if w.following == nil {
		return io.EOF
	}
	first := *w.following
	w.following = nil
	if err := w.hold(first); err != nil {
		return err
	}
	for !w.eof {
		r, err := w.read()
		if err != nil {
			return err
		}
		if r == nil {
			break
		}
		if !bytes.Equal(r.key, first.key) && (!w.whole || !bytes.Equal(r.key[:r.p], first.key[:first.p])) {
			w.following = r
			break
		}
		if err := w.hold(*r); err != nil {
			return err
		}
	}
	if w.prev == nil || !bytes.Equal(w.prev[:w.prevP], first.key[:first.p]) {
		w.number, w.rank, w.dense = 0, 0, 0
		for j := range w.cols {
			w.cols[j].acc, w.cols[j].tile = aggState{}, 0
			w.cols[j].kept, w.cols[j].nth = nil, nil
		}
	}
	w.prev, w.prevP = first.key, first.p
	// The values nth_value and last_value need from this group, before
	// its rows are changed: rows numbered w.number+1 … w.number+len.
	for j := range w.cols {
		c := &w.cols[j]
		switch c.fn {
		case "last_value":
			c.kept = keepValue(w.group[len(w.group)-1].row[c.pos])
		case "nth_value":
			if k := c.n - w.number - 1; k >= 0 && k < int64(len(w.group)) {
				c.nth = keepValue(w.group[k].row[c.pos])
			}
		}
	}
	// RANGE frames end at the group's last peer: add the whole group now.
	for j := range w.cols {
		c := &w.cols[j]
		if !isWindowAgg(c.fn) || c.rows {
			continue
		}
		for _, r := range w.group {
			if err := c.add(r.row[c.in], false); err != nil {
				return err
			}
		}
	}
	return nil
}

// read returns the input's next row, copied with its keys; nil at the end.
func (w *windower) read() (*windowRow, error) {
	row, err := w.in.next()
	if err == io.EOF {
		w.eof = true
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	r := &windowRow{row: CopyRow(row)}
	if w.vals, err = decodeKeys(r.row, w.keys, w.vals); err != nil {
		return nil, err
	}
	r.p = -1
	for i, k := range w.keys {
		if i == w.part {
			r.p = len(r.key)
		}
		r.key = k.c.appendKey(r.key, w.vals[i])
	}
	if r.p < 0 {
		r.p = len(r.key)
	}
	return r, nil
}

// ntile is ntile(c.n) for the next row of a partition of total rows,
// computed as PostgreSQL's window_ntile does: leading buckets take one
// row more when the rows do not divide evenly.
func (c *windowCol) ntile(total int64) int64 {
	if c.tile == 0 {
		c.tile, c.tileRows, c.tileRemainder = 1, 0, 0
		c.tileBoundary = total / c.n
		if c.tileBoundary <= 0 {
			c.tileBoundary = 1
		} else if c.tileRemainder = total % c.n; c.tileRemainder != 0 {
			c.tileBoundary++
		}
	}
	c.tileRows++
	if c.tileBoundary < c.tileRows {
		if c.tileRemainder != 0 && c.tile == c.tileRemainder {
			c.tileRemainder = 0
			c.tileBoundary--
		}
		c.tile++
		c.tileRows = 1
	}
	return c.tile
}

func (w *windower) hold(r windowRow) error {
	n := rowSize(r.row) + int64(len(r.key))
	if err := w.mem.grow(n); err != nil {
		return err
	}
	w.held += n
	w.group = append(w.group, r)
	return nil
}

func isWindowAgg(fn string) bool {
	return fn == "count" || fn == "sum" || fn == "min" || fn == "max" || fn == "avg"
}

// add folds a row's value into the running aggregate. The shards send
// each row's own aggregate (count: 0 or 1; sum, min, max: the value, typed
// as the aggregate's result), so combining is adding or comparing. raw is
// copied where it is kept (min, max) unless stable (it outlives the
// aggregate: a moving frame's own copy).
func (c *windowCol) add(raw []byte, stable bool) error {
	v, err := c.inC.decode(raw, c.inFormat)
	if err != nil || v.null {
		return err
	}
	s := &c.acc
	switch c.fn {
	case "avg":
		if c.inC.kind == kFloat { // float8_accum: float4 inputs are summed as float8
			if err := floatAdd(&s.fsum, v.f, false); err != nil {
				return err
			}
		} else {
			sumAdd(c.inC, s, v)
		}
		s.cnt++
	case "count":
		if c.ofGroups { // a group whose aggregate is not NULL
			s.n++
			break
		}
		s.n += v.i
	case "sum":
		if c.ofGroups && c.c.kind == kNumeric && c.inC.kind == kInt { // sum(count(*)), sum(sum(int)): numeric
			d := &decimal{}
			d.unscaled.SetInt64(v.i)
			v = value{d: d}
		}
		if c.c.kind == kFloat {
			if err := floatAdd(&s.fsum, v.f, c.c.oid == oidFloat4); err != nil {
				return err
			}
			break
		}
		sumAdd(c.c, s, v)
	case "min", "max":
		if s.has {
			d := c.c.compare(v, s.v)
			if (c.fn == "min" && d >= 0) || (c.fn == "max" && d <= 0) {
				return nil
			}
		}
		// The value is sent as the shard sent it (text forms of dates and
		// times depend on the session's settings).
		if stable {
			s.v, s.raw = v, raw
		} else {
			s.v, s.raw = copyValues([]value{v})[0], keepValue(raw)
		}
	}
	s.has = true
	return nil
}

// moveFrame slides a moving aggregate's frame onto the next row (the
// first of a partition when first) and aggregates the frame anew, oldest
// row first, as PostgreSQL does for aggregates without an inverse
// transition (for exact types any order gives the same result).
func (c *windowCol) moveFrame(raw []byte, first bool) error {
	if first {
		c.frame = c.frame[:0]
	}
	if int64(len(c.frame)) == c.slide {
		copy(c.frame, c.frame[1:])
		c.frame = c.frame[:len(c.frame)-1]
	}
	// A copy of its own, never changed: a min or max result may point
	// into it from a row already sent on (add with stable).
	c.frame = append(c.frame, keepValue(raw))
	c.acc = aggState{}
	for _, v := range c.frame {
		if err := c.add(v, true); err != nil {
			return err
		}
	}
	return nil
}

// floatAdd adds x to *sum as float8pl (or, for real, float4pl: rounded to
// float4 after every addition) does, including its overflow error when
// finite values add up to an infinity.
func floatAdd(sum *float64, x float64, real bool) error {
	r := *sum + x
	if real {
		r = float64(float32(*sum) + float32(x))
	}
	if math.IsInf(r, 0) && !math.IsInf(*sum, 0) && !math.IsInf(x, 0) {
		return &Error{Code: "22003", Message: "value out of range: overflow"}
	}
	*sum = r
	return nil
}

// result encodes the running aggregate (NULL before any non-NULL value,
// 0 for count).
func (c *windowCol) result() ([]byte, error) {
	s := &c.acc
	switch c.fn {
	case "count":
		return c.c.encode(nil, value{i: s.n}, c.format)
	case "sum":
		if !s.has {
			return nil, nil
		}
		switch c.c.kind {
		case kInt:
			if !s.isum.IsInt64() {
				return nil, errBigintRange
			}
			return c.c.encode(nil, value{i: s.isum.Int64()}, c.format)
		case kNumeric:
			return c.c.encode(nil, value{d: s.dsum}, c.format)
		case kFloat:
			return c.c.encode(nil, value{f: s.fsum}, c.format)
		}
	case "min", "max":
		if !s.has {
			return nil, nil
		}
		if c.ofGroups && c.inFormat != c.format { // the group's aggregate came in another format
			return c.c.encode(nil, s.v, c.format)
		}
		return s.raw, nil
	case "avg": // numeric_div of the exact sum by the count, as PostgreSQL's avg
		if s.cnt == 0 {
			return nil, nil
		}
		if c.inC.kind == kFloat { // float8_avg: Sx / N
			return c.c.encode(nil, value{f: s.fsum / float64(s.cnt)}, c.format)
		}
		sum := s.dsum
		if c.inC.kind == kInt {
			sum = &decimal{}
			sum.unscaled.Set(s.isum)
		}
		n := &decimal{}
		n.unscaled.SetInt64(s.cnt)
		d, err := divDecimal(sum, n)
		if err != nil {
			return nil, err
		}
		return c.c.encode(nil, value{d: d}, c.format)
	}
	return nil, &Error{Code: "XX000", Message: "shardproxy merge: unexpected window aggregate " + c.fn}
}

// keepValue copies v (nil stays nil: NULL).
func keepValue(v []byte) []byte {
	if v == nil {
		return nil
	}
	return append([]byte{}, v...)
}

// dfltOf is lag's or lead's value for row r when no row is n away: the
// row's default (lag(x, n, default)), else NULL.
func (c *windowCol) dfltOf(r *windowRow) []byte {
	if c.dflt < 0 {
		return nil
	}
	return r.row[c.dflt]
}
