package merge

import (
	"fmt"
	"io"

	"github.com/shardproxy/shardproxy/planner/plan"
)

// setOp is plan.SetOp: it reads every row, counts each distinct row (all
// columns but the last) per part, keeps the first left copy of each, and
// then returns the kept rows in arrival order, each as often as the
// operation says.
type setOp struct {
	in     iter
	op     *plan.SetOp
	lay    layout
	mem    *budget
	cols   []int // the compared columns: all but the part column
	part   int   // the part column
	groups []*setGroup
	index  map[string]*setGroup
	key    []byte
	read   bool
	at     int // next group to return
	left   int // copies of groups[at] still to return
}

// setGroup is one distinct row: its first copy from the left part (nil
// while only the right part has had it) and how often each part had it.
type setGroup struct {
	row         [][]byte
	left, right int64
}

func newSetOp(in iter, lay layout, op *plan.SetOp, mem *budget) (*setOp, error) {
	n := len(lay.fields) - 1
	if n < 1 {
		return nil, &Error{Code: "XX000", Message: "shardproxy merge: SetOp needs the part column after the row's columns"}
	}
	s := &setOp{in: in, op: op, lay: lay, mem: mem, part: n, index: map[string]*setGroup{}}
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

func (s *setOp) name() string {
	n := "INTERSECT"
	if s.op.Except {
		n = "EXCEPT"
	}
	if s.op.All {
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
			s.left = s.copies(g)
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

// copies is how many times g's row comes out.
func (s *setOp) copies(g *setGroup) int {
	if g.row == nil || g.left == 0 {
		return 0
	}
	var n int64
	switch {
	case !s.op.Except && !s.op.All:
		n = min(1, g.right)
	case !s.op.Except:
		n = min(g.left, g.right)
	case !s.op.All:
		if g.right == 0 {
			n = 1
		}
	default:
		n = max(g.left-g.right, 0)
	}
	return int(n)
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
		if pv.null || pc.kind != kInt || (pv.i != 1 && pv.i != 2) {
			return &Error{Code: "XX000", Message: fmt.Sprintf("shardproxy merge: %s part column holds %q, not 1 or 2", s.name(), truncate(row[s.part]))}
		}
		if s.key, err = appendRowKey(s.key[:0], row, s.cols, s.lay); err != nil {
			return err
		}
		g := s.index[string(s.key)]
		if g == nil {
			if err := s.mem.grow(int64(len(s.key) + 96)); err != nil {
				return err
			}
			g = &setGroup{}
			s.index[string(s.key)] = g
		}
		if pv.i == 2 {
			g.right++
			continue
		}
		g.left++
		if g.row == nil {
			// The first left copy: kept to return, and its place in the
			// order (a group first seen on the right takes its place
			// only now).
			if err := s.mem.grow(rowSize(row)); err != nil {
				return err
			}
			g.row = CopyRow(row)
			s.groups = append(s.groups, g)
		}
	}
}
