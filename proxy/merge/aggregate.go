package merge

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"math/big"
	"slices"
	"sort"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/shardproxy/shardproxy/planner/plan"
)

// aggCol is one resolved output column of an Aggregate.
type aggCol struct {
	fn     string
	in     int // input column
	inC    *codec
	inFmt  int16
	arg    int // second input column, -1
	argC   *codec
	argFmt int16
	outC   *codec
	sep    []byte
	// An ordered aggregate: more are the columns of the arrays of its
	// ORDER BY keys after the first (array codecs, to decode them); order
	// is every key with its element codec, to compare the pairs' keys.
	more  []sortKey
	order []sortKey
	dst   bool // an ordered aggregate of DISTINCT values
}

type aggState struct {
	has   bool
	raw   []byte
	v     value
	n     int64
	isum  *big.Int
	dsum  *decimal
	fsum  float64
	f32   float32
	iv    value
	cnt   int64
	set   map[string]value
	parts [][]byte
	arr   []value
	pairs []pair
}

type pair struct {
	val  value
	keys []value // the ORDER BY keys' values (aggCol.order)
}

type group struct {
	st []aggState
}

type aggregator struct {
	in      iter
	lay     layout
	cols    []aggCol
	groupBy []int
	scalar  bool
	mem     *budget

	groups map[string]*group
	order  []*group
	done   bool
	i      int
	key    []byte
	out    [][]byte
}

func (b *builder) aggregate(in iter, lay layout, o *plan.Aggregate) (iter, layout, error) {
	if len(o.Columns) != len(lay.fields) {
		return nil, layout{}, &Error{Code: "XX000", Message: fmt.Sprintf("shardproxy merge: Aggregate has %d columns but the shards return %d", len(o.Columns), len(lay.fields))}
	}
	a := &aggregator{in: in, lay: lay, scalar: o.Scalar, mem: b.mem, groups: map[string]*group{}}
	for _, g := range o.GroupBy {
		p, err := b.col(lay, g, "GROUP BY")
		if err != nil {
			return nil, layout{}, err
		}
		a.groupBy = append(a.groupBy, p)
	}
	outLay := layout{}
	for i, spec := range o.Columns {
		f := lay.fields[i]
		c := aggCol{fn: spec.Func, in: i, inC: lay.codecs[i], inFmt: f.Format, arg: -1, sep: []byte(spec.Sep), dst: spec.Distinct}
		if spec.Arg >= 0 && (spec.Func == plan.AggAvg || plan.Ordered(spec.Func)) {
			p, err := b.col(lay, spec.Arg, "aggregate argument")
			if err != nil {
				return nil, layout{}, err
			}
			c.arg, c.argC, c.argFmt = p, lay.codecs[p], lay.fields[p].Format
		}
		out := uint32(0) // 0: same as input
		in := f.DataTypeOID
		switch spec.Func {
		case plan.AggKey, plan.AggAny:
		case plan.AggMin, plan.AggMax:
			if !c.inC.ordered() {
				return nil, layout{}, errUnsupportedAgg(spec.Func, in)
			}
			if err := b.checkCollation(c.inC, ""); err != nil {
				return nil, layout{}, err
			}
		case plan.AggCount, plan.AggCountDst:
			out = oidInt8
		case plan.AggSum:
			if _, ok := sumType[in]; !ok {
				return nil, layout{}, errUnsupportedAgg("sum", in)
			}
		case plan.AggSumDst:
			t, ok := sumType[in]
			if !ok {
				return nil, layout{}, errUnsupportedAgg("sum", in)
			}
			out = t
		case plan.AggAvg, plan.AggAvgDst:
			switch c.inC.kind {
			case kInt, kNumeric:
				out = oidNumeric
			case kFloat:
				out = oidFloat8
			default:
				return nil, layout{}, errUnsupportedAgg("avg", in)
			}
			if spec.Func == plan.AggAvg && c.arg < 0 {
				return nil, layout{}, &Error{Code: "XX000", Message: "shardproxy merge: avg without its count column"}
			}
		case plan.AggBoolAnd, plan.AggBoolOr:
			if in != oidBool {
				return nil, layout{}, errUnsupportedAgg(spec.Func, in)
			}
		case plan.AggStringAgg:
			if c.inC.kind != kText && c.inC.kind != kBytea {
				return nil, layout{}, errUnsupportedAgg("string_agg", in)
			}
		case plan.AggArrayAgg, plan.AggOrderedArrayAgg:
			if c.inC.kind != kArray || c.inC.elem.kind == kOther {
				return nil, layout{}, errUnsupportedAgg("array_agg", in)
			}
		case plan.AggJsonbAgg, plan.AggOrderedJsonbAgg:
			if in != oidJSONB {
				return nil, layout{}, errUnsupportedAgg("jsonb_agg", in)
			}
		case plan.AggOrderedStringAgg:
			if c.inC.kind != kArray {
				return nil, layout{}, errUnsupportedAgg("string_agg", in)
			}
			out = oidText
			if c.inC.elem.kind == kBytea {
				out = oidBytea
			}
		default:
			return nil, layout{}, &Error{Code: "XX000", Message: "shardproxy merge: unknown aggregate " + spec.Func}
		}
		if plan.Ordered(c.fn) {
			if c.arg < 0 || c.argC.kind != kArray || !c.argC.elem.ordered() {
				return nil, layout{}, errUnsupportedAgg(spec.Func+" ORDER BY", in)
			}
			if err := b.checkCollation(c.argC.elem, ""); err != nil {
				return nil, layout{}, err
			}
			c.order = []sortKey{{c: c.argC.elem, desc: spec.Desc, nullsFirst: spec.NullsFirst}}
			for _, k := range spec.MoreKeys {
				p, err := b.col(lay, k.Column, "aggregate ORDER BY key")
				if err != nil {
					return nil, layout{}, err
				}
				mk := sortKey{col: p, c: lay.codecs[p], format: lay.fields[p].Format, desc: k.Desc, nullsFirst: k.NullsFirst}
				if mk.c.kind != kArray || !mk.c.elem.ordered() {
					return nil, layout{}, errUnsupportedAgg(spec.Func+" ORDER BY", in)
				}
				if err := b.checkCollation(mk.c.elem, ""); err != nil {
					return nil, layout{}, err
				}
				c.more = append(c.more, mk)
				c.order = append(c.order, sortKey{c: mk.c.elem, desc: k.Desc, nullsFirst: k.NullsFirst})
			}
		}
		of := f
		if out != 0 {
			of = field(f.Name, out, f.Format)
		} else if spec.Func != plan.AggKey && spec.Func != plan.AggAny {
			of.TableOID, of.TableAttributeNumber = 0, 0
		}
		c.outC = codecFor(of.DataTypeOID)
		a.cols = append(a.cols, c)
		outLay.fields = append(outLay.fields, of)
		outLay.codecs = append(outLay.codecs, c.outC)
	}
	return a, outLay, nil
}

func (a *aggregator) next() ([][]byte, error) {
	if !a.done {
		if err := a.consume(); err != nil {
			return nil, err
		}
		a.done = true
		if a.scalar && len(a.order) == 0 {
			a.order = append(a.order, &group{st: make([]aggState, len(a.cols))})
		}
	}
	if a.i >= len(a.order) {
		return nil, io.EOF
	}
	g := a.order[a.i]
	a.order[a.i] = nil
	a.i++
	return a.finish(g)
}

func (a *aggregator) consume() error {
	for {
		row, err := a.in.next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		if len(row) != len(a.cols) {
			return &Error{Code: "XX000", Message: "shardproxy merge: a shard returned a row with a different number of columns"}
		}
		a.key = a.key[:0]
		for _, c := range a.groupBy {
			v, err := a.lay.codecs[c].decode(row[c], a.lay.fields[c].Format)
			if err != nil {
				return err
			}
			a.key = a.lay.codecs[c].appendKey(a.key, v)
		}
		g, ok := a.groups[string(a.key)]
		if !ok {
			if err := a.mem.grow(int64(len(a.key) + 64 + 96*len(a.cols))); err != nil {
				return err
			}
			g = &group{st: make([]aggState, len(a.cols))}
			a.groups[string(a.key)] = g
			a.order = append(a.order, g)
		}
		for i := range a.cols {
			if err := a.add(&a.cols[i], &g.st[i], row); err != nil {
				return err
			}
		}
	}
}

func (a *aggregator) keep(raw []byte) ([]byte, error) {
	if raw == nil {
		return nil, nil
	}
	if err := a.mem.grow(int64(len(raw))); err != nil {
		return nil, err
	}
	return append(make([]byte, 0, len(raw)), raw...), nil
}

var errBigintRange = &Error{Code: "22003", Message: "bigint out of range"}

func (a *aggregator) add(c *aggCol, s *aggState, row [][]byte) error {
	raw := row[c.in]
	switch c.fn {
	case plan.AggKey, plan.AggAny:
		if !s.has {
			s.has = true
			var err error
			s.raw, err = a.keep(raw)
			return err
		}
		return nil
	}
	if raw == nil && c.fn != plan.AggAvg {
		return nil
	}
	var v value
	var err error
	if c.fn == plan.AggJsonbAgg || c.fn == plan.AggOrderedJsonbAgg {
		v.b = raw // a partial jsonb_agg: split by jsonbElements, not parsed per row
	} else if v, err = c.inC.decode(raw, c.inFmt); err != nil {
		return err
	}
	switch c.fn {
	case plan.AggCount:
		if s.n > 0 && v.i > math.MaxInt64-s.n {
			return errBigintRange
		}
		s.n += v.i
	case plan.AggSum:
		sumAdd(c.inC, s, v)
		s.has = true
	case plan.AggAvg:
		if raw != nil {
			sumAdd(c.inC, s, v)
			s.has = true
		}
		cv, err := c.argC.decode(row[c.arg], c.argFmt)
		if err != nil {
			return err
		}
		s.cnt += cv.i
	case plan.AggMin, plan.AggMax:
		if s.has {
			cmp := c.inC.compare(v, s.v)
			if (c.fn == plan.AggMin && cmp >= 0) || (c.fn == plan.AggMax && cmp <= 0) {
				return nil
			}
		}
		a.mem.release(int64(len(s.raw)))
		s.raw, err = a.keep(raw)
		if err != nil {
			return err
		}
		s.v, _ = c.inC.decode(s.raw, c.inFmt)
		s.has = true
	case plan.AggBoolAnd:
		if !s.has {
			s.n = 1
		}
		s.has = true
		s.n &= v.i
	case plan.AggBoolOr:
		s.has = true
		s.n |= v.i
	case plan.AggCountDst, plan.AggSumDst, plan.AggAvgDst:
		k := string(c.inC.appendKey(nil, v))
		if s.set == nil {
			s.set = map[string]value{}
		}
		if _, ok := s.set[k]; !ok {
			if err := a.mem.grow(int64(2*len(k) + 64)); err != nil {
				return err
			}
			if v.b != nil {
				v.b = append([]byte(nil), v.b...)
			}
			s.set[k] = v
		}
	case plan.AggStringAgg:
		p, err := a.keep(v.b)
		if err != nil {
			return err
		}
		if p == nil {
			p = []byte{}
		}
		s.parts = append(s.parts, p)
		s.has = true
	case plan.AggArrayAgg:
		if err := a.mem.grow(int64(len(raw) + 48*len(v.arr))); err != nil {
			return err
		}
		s.arr = append(s.arr, copyValues(v.arr)...)
		s.has = true
	case plan.AggJsonbAgg:
		elems, err := jsonbElements(v.b, c.inFmt)
		if err != nil {
			return err
		}
		if err := a.mem.grow(int64(len(raw) + 24*len(elems))); err != nil {
			return err
		}
		s.parts = append(s.parts, elems...)
		s.has = true
	case plan.AggOrderedArrayAgg, plan.AggOrderedStringAgg, plan.AggOrderedJsonbAgg:
		kv, err := c.argC.decode(row[c.arg], c.argFmt)
		if err != nil {
			return err
		}
		if c.fn == plan.AggOrderedJsonbAgg {
			elems, err := jsonbElements(v.b, c.inFmt)
			if err != nil {
				return err
			}
			v.arr = make([]value, len(elems))
			for i, e := range elems {
				v.arr[i] = value{b: e}
			}
		}
		if kv.null || len(kv.arr) != len(v.arr) {
			return &Error{Code: "XX000", Message: "shardproxy merge: ordered aggregate arrays of different lengths"}
		}
		more := make([][]value, len(c.more))
		size := len(raw) + len(row[c.arg]) + 96*len(v.arr)
		for k, mk := range c.more {
			mv, err := mk.c.decode(row[mk.col], mk.format)
			if err != nil {
				return err
			}
			if mv.null || len(mv.arr) != len(v.arr) {
				return &Error{Code: "XX000", Message: "shardproxy merge: ordered aggregate arrays of different lengths"}
			}
			more[k] = copyValues(mv.arr)
			size += len(row[mk.col]) + 48*len(v.arr)
		}
		if err := a.mem.grow(int64(size)); err != nil {
			return err
		}
		vals, keys := copyValues(v.arr), copyValues(kv.arr)
		nk := len(c.order)
		tuples := make([]value, len(vals)*nk) // every pair's keys, in one allocation
		for i := range vals {
			t := tuples[i*nk : (i+1)*nk : (i+1)*nk]
			t[0] = keys[i]
			for k := range more {
				t[k+1] = more[k][i]
			}
			s.pairs = append(s.pairs, pair{val: vals[i], keys: t})
		}
		s.has = true
	}
	return nil
}

func copyValues(vs []value) []value {
	out := make([]value, len(vs))
	for i, v := range vs {
		if v.b != nil {
			v.b = append([]byte(nil), v.b...)
		}
		out[i] = v
	}
	return out
}

// sumAdd adds partial v (of codec c's type) into s.
func sumAdd(c *codec, s *aggState, v value) {
	switch c.kind {
	case kInt:
		if s.isum == nil {
			s.isum = new(big.Int)
		}
		s.isum.Add(s.isum, big.NewInt(v.i))
	case kNumeric:
		if s.dsum == nil {
			s.dsum = v.d
		} else {
			s.dsum = addDecimal(s.dsum, v.d)
		}
	case kFloat:
		if c.oid == oidFloat4 {
			s.f32 += float32(v.f)
		} else {
			s.fsum += v.f
		}
	case kInterval:
		s.iv.mon += v.mon
		s.iv.day += v.day
		s.iv.i += v.i
	}
}

func (a *aggregator) finish(g *group) ([][]byte, error) {
	a.out = a.out[:0]
	for i := range a.cols {
		c := &a.cols[i]
		s := &g.st[i]
		b, err := a.final(c, s)
		if err != nil {
			return nil, err
		}
		a.out = append(a.out, b)
	}
	return a.out, nil
}

func (a *aggregator) enc(c *aggCol, v value) ([]byte, error) {
	return c.outC.encode(nil, v, c.inFmt)
}

func (a *aggregator) final(c *aggCol, s *aggState) ([]byte, error) {
	switch c.fn {
	case plan.AggKey, plan.AggAny, plan.AggMin, plan.AggMax:
		return s.raw, nil
	case plan.AggCount:
		return a.enc(c, value{i: s.n})
	case plan.AggCountDst:
		return a.enc(c, value{i: int64(len(s.set))})
	case plan.AggBoolAnd, plan.AggBoolOr:
		if !s.has {
			return nil, nil
		}
		return a.enc(c, value{i: s.n})
	case plan.AggSum:
		if !s.has {
			return nil, nil
		}
		return a.encSum(c, c.inC, s)
	case plan.AggSumDst, plan.AggAvgDst:
		if len(s.set) == 0 {
			return nil, nil
		}
		// Sum the distinct values in a fixed order (floats: sorted, as
		// PostgreSQL's sort-based DISTINCT does).
		vals := make([]value, 0, len(s.set))
		for _, v := range s.set {
			vals = append(vals, v)
		}
		sort.Slice(vals, func(i, j int) bool { return c.inC.compare(vals[i], vals[j]) < 0 })
		t := &aggState{}
		for _, v := range vals {
			sumAdd(c.inC, t, v)
		}
		if c.fn == plan.AggSumDst {
			return a.encSum(c, c.inC, t)
		}
		t.cnt = int64(len(vals))
		return a.encAvg(c, t)
	case plan.AggAvg:
		if s.cnt == 0 {
			return nil, nil
		}
		return a.encAvg(c, s)
	case plan.AggStringAgg:
		if !s.has {
			return nil, nil
		}
		var out []byte
		for i, p := range s.parts {
			if i > 0 {
				out = append(out, c.sep...)
			}
			out = append(out, p...)
		}
		return a.enc(c, value{b: out})
	case plan.AggArrayAgg:
		if !s.has {
			return nil, nil
		}
		return a.enc(c, value{arr: s.arr})
	case plan.AggJsonbAgg:
		if !s.has {
			return nil, nil
		}
		return jsonbArray(s.parts, c.inFmt), nil
	case plan.AggOrderedArrayAgg, plan.AggOrderedStringAgg, plan.AggOrderedJsonbAgg:
		if !s.has {
			return nil, nil
		}
		sort.SliceStable(s.pairs, func(i, j int) bool { return compareKeys(s.pairs[i].keys, s.pairs[j].keys, c.order) < 0 })
		if c.dst { // each shard's values are distinct (one key: the value); across shards they repeat
			s.pairs = slices.CompactFunc(s.pairs, func(x, y pair) bool { return compareKeys(x.keys, y.keys, c.order) == 0 })
		}
		if c.fn == plan.AggOrderedJsonbAgg {
			elems := make([][]byte, len(s.pairs))
			for i, p := range s.pairs {
				elems[i] = p.val.b
			}
			return jsonbArray(elems, c.inFmt), nil
		}
		if c.fn == plan.AggOrderedArrayAgg {
			vals := make([]value, len(s.pairs))
			for i, p := range s.pairs {
				vals[i] = p.val
			}
			return a.enc(c, value{arr: vals})
		}
		var out []byte
		n := 0
		ec := c.inC.elem
		for _, p := range s.pairs {
			if p.val.null {
				continue
			}
			if n > 0 {
				out = append(out, c.sep...)
			}
			n++
			switch ec.kind {
			case kBpchar: // string_agg takes text: bpchar loses its padding
				out = append(out, bytes.TrimRight(p.val.b, " ")...)
				continue
			case kBytea, kText:
				out = append(out, p.val.b...)
				continue
			}
			b, err := ec.encode(nil, p.val, 0)
			if err != nil {
				return nil, err
			}
			out = append(out, b...)
		}
		if n == 0 {
			return nil, nil
		}
		return a.enc(c, value{b: out})
	}
	return nil, &Error{Code: "XX000", Message: "shardproxy merge: unknown aggregate " + c.fn}
}

// encSum encodes a sum accumulated from values of codec in.
func (a *aggregator) encSum(c *aggCol, in *codec, s *aggState) ([]byte, error) {
	switch in.kind {
	case kInt:
		if c.outC.oid == oidNumeric {
			d := &decimal{}
			d.unscaled.Set(s.isum)
			return a.enc(c, value{d: d})
		}
		if !s.isum.IsInt64() {
			return nil, errBigintRange
		}
		return a.enc(c, value{i: s.isum.Int64()})
	case kNumeric:
		return a.enc(c, value{d: s.dsum})
	case kFloat:
		if in.oid == oidFloat4 {
			return a.enc(c, value{f: float64(s.f32)})
		}
		return a.enc(c, value{f: s.fsum})
	case kInterval:
		return a.enc(c, s.iv)
	}
	return nil, errUnsupportedAgg("sum", in.oid)
}

// encAvg encodes sum/count like PostgreSQL's avg: numeric_div for integers
// and numeric, float8 division for floats.
func (a *aggregator) encAvg(c *aggCol, s *aggState) ([]byte, error) {
	switch c.inC.kind {
	case kInt, kNumeric:
		sum := s.dsum
		if c.inC.kind == kInt {
			sum = &decimal{}
			if s.isum != nil {
				sum.unscaled.Set(s.isum)
			}
		}
		if sum == nil {
			return nil, nil
		}
		n := &decimal{}
		n.unscaled.SetInt64(s.cnt)
		d, err := divDecimal(sum, n)
		if err != nil {
			return nil, err
		}
		return a.enc(c, value{d: d})
	case kFloat:
		sum := s.fsum
		if c.inC.oid == oidFloat4 {
			sum = float64(s.f32)
		}
		return a.enc(c, value{f: sum / float64(s.cnt)})
	}
	return nil, errUnsupportedAgg("avg", c.inC.oid)
}

var _ pgproto3.FieldDescription

// jsonbElements splits a partial jsonb_agg (a jsonb array, in text or
// binary form: a version byte and the text) into its elements' text,
// copied. PostgreSQL prints jsonb in one canonical form, so an element's
// text is the same whichever array holds it.
func jsonbElements(raw []byte, format int16) ([][]byte, error) {
	if format == 1 {
		if len(raw) == 0 || raw[0] != 1 {
			return nil, &Error{Code: "XX000", Message: "shardproxy merge: unknown binary jsonb version"}
		}
		raw = raw[1:]
	}
	var elems []json.RawMessage
	if err := json.Unmarshal(raw, &elems); err != nil {
		return nil, &Error{Code: "XX000", Message: "shardproxy merge: a shard's jsonb_agg is not a JSON array: " + err.Error()}
	}
	out := make([][]byte, len(elems))
	for i, e := range elems {
		out[i] = append([]byte(nil), e...)
	}
	return out, nil
}

// jsonbArray prints elements as PostgreSQL prints a jsonb array ("[a, b]"),
// in text or binary form.
func jsonbArray(elems [][]byte, format int16) []byte {
	var out []byte
	if format == 1 {
		out = append(out, 1)
	}
	out = append(out, '[')
	for i, e := range elems {
		if i > 0 {
			out = append(out, ", "...)
		}
		out = append(out, e...)
	}
	return append(out, ']')
}
