package merge

import (
	"fmt"
	"io"

	"github.com/shardproxy/shardproxy/planner/plan"
)

// setOp is plan.SetOp: it reads every row, counts each distinct row (all
// columns but the last) per part, keeps its first copy, and then returns
// the kept rows in arrival order, each as often as the operation says.
type setOp struct {
	in     iter
	op     *plan.SetOp
	lay    layout
	mem    *budget
	cols   []int // the compared columns: all but the part column
	part   int   // the part column
	scale  []int64
	groups []*setGroup
	index  map[string]*setGroup
	key    []byte
	read   bool
	at     int // next group to return
	left   int // copies of groups[at] still to return (-1: not computed)
}

// setGroup is one distinct row: its first copy and how often each part
// had it.
type setGroup struct {
	row    [][]byte
	counts []int64
}

func newSetOp(in iter, lay layout, op *plan.SetOp, mem *budget) (*setOp, error) {
	n := len(lay.fields) - 1
	if n < 1 || op.Root == nil || op.Parts < 1 {
		return nil, &Error{Code: "XX000", Message: "shardproxy merge: SetOp needs its parts and the part column after the row's columns"}
	}
	s := &setOp{in: in, op: op, lay: lay, mem: mem, part: n, index: map[string]*setGroup{}, scale: make([]int64, op.Parts)}
	for i := range s.scale {
		s.scale[i] = 1
	}
	for _, p := range op.Replicated {
		if p < 1 || p > op.Parts || op.Shards < 1 {
			return nil, &Error{Code: "XX000", Message: fmt.Sprintf("shardproxy merge: SetOp replicated part %d of %d over %d shards", p, op.Parts, op.Shards)}
		}
		s.scale[p-1] = int64(op.Shards)
	}
	for i := range n {
		if lay.codecs[i].oid == oidJSON { // as PostgreSQL: json has no equality
			return nil, &Error{Code: "42883", Message: "could not identify an equality operator for type json"}
		}
		if !lay.codecs[i].ordered() {
			return nil, &Error{Code: "0A000",
				Message: fmt.Sprintf("%s across shards is not supported for column %d (type %d): the proxy cannot compare its values", s.name(), i+1, lay.codecs[i].oid),
				Hint:    "compare integer, numeric, float, text, bytea, bool, date/time, interval, uuid or jsonb columns (e.g. cast the column to text), or add key conditions that put every part on one shard"}
		}
		s.cols = append(s.cols, i)
	}
	return s, nil
}

// name is the operation at the root, for messages.
func (s *setOp) name() string {
	n := s.op.Root.Op
	if s.op.Root.All {
		n += " ALL"
	}
	return n
}

func (s *setOp) next() ([][]byte, error) {
	if !s.read {
		if err := s.consume(); err != nil {
			return nil, err
		}
		s.read = true
		s.left = -1
	}
	for s.at < len(s.groups) {
		g := s.groups[s.at]
		if s.left < 0 {
			for i, c := range g.counts {
				g.counts[i] = c / s.scale[i]
			}
			s.left = int(copies(s.op.Root, g.counts))
		}
		if s.left > 0 {
			s.left--
			return g.row, nil
		}
		s.groups[s.at] = nil // returned: let it go
		s.at++
		s.left = -1
	}
	return nil, io.EOF
}

// copies is how many times a row with counts (per part) comes out of n.
func copies(n *plan.SetNode, counts []int64) int64 {
	if n.Part > 0 {
		return counts[n.Part-1]
	}
	l, r := copies(n.Left, counts), copies(n.Right, counts)
	var c int64
	switch n.Op {
	case "UNION":
		c = l + r
	case "INTERSECT":
		c = min(l, r)
	case "EXCEPT":
		c = max(l-r, 0)
		if !n.All && r > 0 { // EXCEPT: in the left part and not in the right
			c = 0
		}
	}
	if !n.All {
		c = min(c, 1)
	}
	return c
}

// consume reads the whole input into the groups.
func (s *setOp) consume() error {
	pc := s.lay.codecs[s.part]
	for {
		row, err := s.in.next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		if len(row) <= s.part {
			return &Error{Code: "XX000", Message: fmt.Sprintf("shardproxy merge: a shard's row has %d columns, %s needs %d", len(row), s.name(), s.part+1)}
		}
		pv, err := pc.decode(row[s.part], s.lay.fields[s.part].Format)
		if err != nil {
			return err
		}
		if pv.null || pc.kind != kInt || pv.i < 1 || pv.i > int64(s.op.Parts) {
			return &Error{Code: "XX000", Message: fmt.Sprintf("shardproxy merge: %s part column holds %q, not a part from 1 to %d", s.name(), truncate(row[s.part]), s.op.Parts)}
		}
		if s.key, err = appendRowKey(s.key[:0], row, s.cols, s.lay); err != nil {
			return err
		}
		g := s.index[string(s.key)]
		if g == nil {
			if err := s.mem.grow(int64(len(s.key)+96+8*len(s.scale)) + rowSize(row)); err != nil {
				return err
			}
			g = &setGroup{row: CopyRow(row), counts: make([]int64, len(s.scale))}
			s.index[string(s.key)] = g
			s.groups = append(s.groups, g)
		}
		g.counts[pv.i-1]++
	}
}
