package rebalance

import (
	"context"
	"fmt"
	"math"
	"sort"
	"strings"
	"time"

	"github.com/shardproxy/shardproxy/router"
	"github.com/shardproxy/shardproxy/topology"
)

// PlanRequest asks for a rebalance plan.
type PlanRequest struct {
	// Distribution to balance; "" = every hash distribution.
	Distribution string `json:"distribution,omitempty"`
	// By is "size" (even bytes per shard, from row statistics counted on
	// the shards; the default) or "count" (even number of ranges).
	By string `json:"by,omitempty"`
	// MaxMoveBytes splits a range larger than this before it moves (0 =
	// never split).
	MaxMoveBytes int64 `json:"max_move_bytes,omitempty"`
	// HoldTimeoutMS is recorded on each move (0 = the controller default).
	HoldTimeoutMS int64 `json:"hold_timeout_ms,omitempty"`
}

// RangeStat is a range with its size summed over the distribution's tables
// and databases.
type RangeStat struct {
	Lo    int64  `json:"lo"`
	Hi    int64  `json:"hi"`
	Shard string `json:"shard"`
	Rows  int64  `json:"rows"`
	Bytes int64  `json:"bytes"`
}

// PlannedMove is one move of a plan: ranges of Distribution from one shard
// to another, with their size and the reason.
type PlannedMove struct {
	Distribution string          `json:"distribution"`
	From         string          `json:"from"`
	To           string          `json:"to"`
	Ranges       []topology.Span `json:"ranges"`
	Splits       []int64         `json:"splits,omitempty"` // SplitRange points applied before the move
	Rows         int64           `json:"rows"`
	Bytes        int64           `json:"bytes"`
	Reason       string          `json:"reason"`
}

// ShardLoad is a shard's share of a distribution before and after a plan.
type ShardLoad struct {
	Shard        string `json:"shard"`
	RangesBefore int    `json:"ranges_before"`
	RangesAfter  int    `json:"ranges_after"`
	BytesBefore  int64  `json:"bytes_before"`
	BytesAfter   int64  `json:"bytes_after"`
	RowsBefore   int64  `json:"rows_before"`
	RowsAfter    int64  `json:"rows_after"`
}

// Plan is the answer to a PlanRequest.
type Plan struct {
	Version  uint64        `json:"version"` // topology version it was computed on
	By       string        `json:"by"`
	Moves    []PlannedMove `json:"moves"`
	Loads    []ShardLoad   `json:"loads"`
	Problems []string      `json:"problems,omitempty"` // tables that cannot move online
}

// unit is a candidate piece of a range for planning (after virtual splits).
type unit struct {
	RangeStat
	origLo, origHi int64
}

// MakePlan computes moves that even out each hash distribution over the
// active shards: every range of a draining shard moves away; then,
// greedily, the range whose weight best halves the gap between the
// heaviest and the lightest shard moves from one to the other while that
// narrows the gap. Weight is bytes (By "size"; rows when bytes are 0) or 1
// per range (By "count"). Ranges heavier than maxMoveBytes are split in
// halves of hash space (rows assumed uniform in it) first. stats maps
// distribution → its ranges with sizes (the ranges of snap when nil).
func MakePlan(snap *topology.Snapshot, req PlanRequest, stats map[string][]RangeStat) (Plan, error) {
	by := req.By
	if by == "" {
		by = "size"
	}
	if by != "size" && by != "count" {
		return Plan{}, &topology.Error{Kind: topology.ErrInvalid, Msg: fmt.Sprintf("rebalance by %q: want size or count", req.By)}
	}
	out := Plan{Version: snap.Version(), By: by, Moves: []PlannedMove{}}
	var active, draining []string
	for _, s := range snap.Shards() {
		switch s.State {
		case topology.ShardActive:
			active = append(active, s.Name)
		case topology.ShardDraining:
			draining = append(draining, s.Name)
		}
	}
	if len(active) == 0 {
		return out, &topology.Error{Kind: topology.ErrInvalid, Msg: "no active shards to balance over"}
	}
	moving := map[string]bool{}
	for _, m := range snap.Moves() {
		moving[m.Distribution] = true
	}
	found := false
	for _, d := range snap.Distributions() {
		if req.Distribution != "" && d.Name != req.Distribution {
			continue
		}
		found = true
		if d.Scheme != topology.Hash {
			continue
		}
		if moving[d.Name] {
			return out, &topology.Error{Kind: topology.ErrInvalid, Msg: fmt.Sprintf("distribution %s has moves in progress; wait for them (shardctl rebalance status) or cancel them", d.Name)}
		}
		rs := stats[d.Name]
		if rs == nil {
			for _, r := range d.Ranges {
				rs = append(rs, RangeStat{Lo: r.Lo, Hi: r.Hi, Shard: r.Shard})
			}
		}
		planDistribution(&out, d.Name, rs, active, draining, by, req.MaxMoveBytes)
	}
	if !found {
		return out, &topology.Error{Kind: topology.ErrNotFound, Msg: fmt.Sprintf("distribution %q does not exist", req.Distribution)}
	}
	return out, nil
}

func planDistribution(out *Plan, dist string, rs []RangeStat, active, draining []string, by string, maxBytes int64) {
	weight := func(u unit) float64 {
		if by == "count" {
			return 1
		}
		if u.Bytes > 0 {
			return float64(u.Bytes)
		}
		return float64(u.Rows)
	}
	var units []unit
	for _, r := range rs {
		for _, piece := range splitStat(r, maxBytes) {
			units = append(units, unit{RangeStat: piece, origLo: r.Lo, origHi: r.Hi})
		}
	}
	owner := make([]string, len(units))
	load := map[string]float64{}
	before := map[string]*ShardLoad{}
	for _, s := range append(append([]string(nil), active...), draining...) {
		before[s] = &ShardLoad{Shard: s}
	}
	for i, u := range units {
		owner[i] = u.Shard
		load[u.Shard] += weight(u)
		if b := before[u.Shard]; b != nil {
			b.BytesBefore += u.Bytes
			b.RowsBefore += u.Rows
		}
	}
	for _, r := range rs {
		if b := before[r.Shard]; b != nil {
			b.RangesBefore++
		}
	}
	isActive := map[string]bool{}
	for _, s := range active {
		isActive[s] = true
	}
	lightest := func() string {
		best := active[0]
		for _, s := range active[1:] {
			if load[s] < load[best] {
				best = s
			}
		}
		return best
	}
	reasons := map[int]string{}
	assign := func(i int, to, why string) {
		load[owner[i]] -= weight(units[i])
		load[to] += weight(units[i])
		owner[i] = to
		reasons[i] = why
	}
	// Draining shards give everything away.
	for i := range units {
		if !isActive[owner[i]] {
			assign(i, lightest(), fmt.Sprintf("shard %s is %s", owner[i], topology.ShardDraining))
		}
	}
	what := "data size"
	if by == "count" {
		what = "range count"
	}
	for iter := 0; iter < 10*len(units)+10; iter++ {
		hi, lo := active[0], active[0]
		for _, s := range active {
			if load[s] > load[hi] {
				hi = s
			}
			if load[s] < load[lo] {
				lo = s
			}
		}
		gap := load[hi] - load[lo]
		var total float64
		for _, s := range active {
			total += load[s]
		}
		avg := total / float64(len(active))
		if load[hi] <= avg || load[lo] >= avg {
			break
		}
		// Aim at what the donor has above the average or the receiver
		// lacks, whichever is less: shards never swap their way through
		// the average (no chains of moves between old shards).
		want := math.Min(load[hi]-avg, avg-load[lo])
		best, bestScore := -1, math.Inf(1)
		for i, u := range units {
			if owner[i] != hi {
				continue
			}
			w := weight(u)
			if w <= 0 || w >= gap {
				continue // would not narrow the gap
			}
			if score := math.Abs(want - w); score < bestScore {
				best, bestScore = i, score
			}
		}
		if best < 0 {
			break
		}
		assign(best, lo, fmt.Sprintf("even %s: %s is the most loaded shard, %s the least", what, hi, lo))
	}
	// Group the moved units by (from, to) into moves.
	type key struct{ from, to string }
	groups := map[key]*PlannedMove{}
	var order []key
	for i, u := range units {
		if owner[i] == u.Shard {
			continue
		}
		k := key{u.Shard, owner[i]}
		g := groups[k]
		if g == nil {
			g = &PlannedMove{Distribution: dist, From: k.from, To: k.to, Reason: reasons[i]}
			groups[k] = g
			order = append(order, k)
		}
		g.Ranges = append(g.Ranges, topology.Span{Lo: u.Lo, Hi: u.Hi})
		if u.Lo != u.origLo {
			g.Splits = append(g.Splits, u.Lo)
		}
		if u.Hi != u.origHi && u.Hi < math.MaxInt64 {
			g.Splits = append(g.Splits, u.Hi+1)
		}
		g.Rows += u.Rows
		g.Bytes += u.Bytes
	}
	for _, k := range order {
		out.Moves = append(out.Moves, *groups[k])
	}
	// Loads after.
	after := map[string]int{}
	seen := map[[2]int64]bool{}
	for i, u := range units {
		if b := before[owner[i]]; b != nil {
			b.BytesAfter += u.Bytes
			b.RowsAfter += u.Rows
		}
		k := [2]int64{u.origLo, u.origHi}
		if owner[i] == u.Shard && !seen[k] {
			seen[k] = true
			after[owner[i]]++
		} else if owner[i] != u.Shard {
			after[owner[i]]++
		}
	}
	names := make([]string, 0, len(before))
	for s := range before {
		names = append(names, s)
	}
	sort.Strings(names)
	for _, s := range names {
		b := before[s]
		b.RangesAfter = after[s]
		out.Loads = append(out.Loads, *b)
	}
}

// splitStat halves r (in hash space, size in proportion) until each piece
// is at most maxBytes (0 = no limit).
func splitStat(r RangeStat, maxBytes int64) []RangeStat {
	if maxBytes <= 0 || r.Bytes <= maxBytes || r.Lo == r.Hi {
		return []RangeStat{r}
	}
	mid := r.Lo + int64((uint64(r.Hi)-uint64(r.Lo))/2)
	a := RangeStat{Lo: r.Lo, Hi: mid, Shard: r.Shard, Rows: r.Rows / 2, Bytes: r.Bytes / 2}
	b := RangeStat{Lo: mid + 1, Hi: r.Hi, Shard: r.Shard, Rows: r.Rows - a.Rows, Bytes: r.Bytes - a.Bytes}
	return append(splitStat(a, maxBytes), splitStat(b, maxBytes)...)
}

// Stats counts rows and bytes per range of distribution dist on every shard
// that owns part of it (all databases; one scan per table per shard, the
// range found by width_bucket over the range starts).
func (c *Controller) Stats(ctx context.Context, dist string) ([]RangeStat, error) {
	snap := c.opts.Store.Current()
	d, ok := snap.Distribution(dist)
	if !ok {
		return nil, &topology.Error{Kind: topology.ErrNotFound, Msg: fmt.Sprintf("distribution %q does not exist", dist)}
	}
	out := make([]RangeStat, len(d.Ranges))
	starts := make([]int64, len(d.Ranges))
	for i, r := range d.Ranges {
		out[i] = RangeStat{Lo: r.Lo, Hi: r.Hi, Shard: r.Shard}
		starts[i] = r.Lo
	}
	shards := map[string]bool{}
	for _, r := range d.Ranges {
		shards[r.Shard] = true
	}
	for shard := range shards {
		sh, _ := snap.Shard(shard)
		dbs, err := c.databases(ctx, sh.Primary)
		if err != nil {
			return nil, fmt.Errorf("shard %s: %w", shard, err)
		}
		for _, db := range dbs {
			conn, err := c.opts.Connect(ctx, sh.Primary, db)
			if err != nil {
				return nil, fmt.Errorf("shard %s: %w", shard, err)
			}
			for _, t := range snap.Tables() {
				if t.Distribution != dist {
					continue
				}
				var exists bool
				if err := conn.QueryRow(ctx, "SELECT to_regclass($1) IS NOT NULL", qualified(t.Name)).Scan(&exists); err != nil || !exists {
					continue
				}
				h, err := router.HashExpr(d.KeyType, quoteIdent(t.KeyColumn))
				if err != nil {
					conn.Close(ctx)
					return nil, err
				}
				rows, err := conn.Query(ctx, `SELECT width_bucket(`+h+`, $1::int8[]) AS b, count(*), coalesce(sum(pg_column_size(t.*)), 0)::int8
					FROM `+qualified(t.Name)+` t GROUP BY b`, starts)
				if err != nil {
					conn.Close(ctx)
					return nil, fmt.Errorf("shard %s, %s: %w", shard, t.Name, err)
				}
				for rows.Next() {
					var b int
					var n, bytes int64
					if err := rows.Scan(&b, &n, &bytes); err != nil {
						rows.Close()
						conn.Close(ctx)
						return nil, err
					}
					// Count only rows on the shard that owns their range.
					if b >= 1 && b <= len(out) && out[b-1].Shard == shard {
						out[b-1].Rows += n
						out[b-1].Bytes += bytes
					}
				}
				rows.Close()
			}
			conn.Close(ctx)
		}
	}
	return out, nil
}

// PlanNow computes a plan for req over the current topology, counting range
// sizes on the shards when req.By is "size", and lists tables that cannot
// move online.
func (c *Controller) PlanNow(ctx context.Context, req PlanRequest) (Plan, error) {
	snap := c.opts.Store.Current()
	stats := map[string][]RangeStat{}
	if req.By == "" || req.By == "size" {
		for _, d := range snap.Distributions() {
			if d.Scheme != topology.Hash || (req.Distribution != "" && d.Name != req.Distribution) {
				continue
			}
			rs, err := c.Stats(ctx, d.Name)
			if err != nil {
				return Plan{}, err
			}
			stats[d.Name] = rs
		}
	}
	p, err := MakePlan(snap, req, stats)
	if err != nil {
		return p, err
	}
	checked := map[string]bool{}
	for _, m := range p.Moves {
		k := m.Distribution + "\x00" + m.From
		if checked[k] {
			continue
		}
		checked[k] = true
		sh, _ := snap.Shard(m.From)
		problems, err := c.CheckTables(ctx, sh.Primary, m.Distribution)
		if err != nil {
			return p, err
		}
		p.Problems = append(p.Problems, problems...)
	}
	return p, nil
}

// StartPlan records the moves of plan (splitting ranges first) in the
// topology; the controller on the leader runs them. It refuses a plan with
// problems or computed on another topology version.
func (c *Controller) StartPlan(ctx context.Context, p Plan, holdTimeoutMS int64) ([]string, error) {
	if len(p.Problems) > 0 {
		return nil, &topology.Error{Kind: topology.ErrInvalid, Msg: "cannot start: " + strings.Join(p.Problems, "; ")}
	}
	if v := c.opts.Store.Current().Version(); v != p.Version {
		return nil, &topology.VersionMismatchError{Expected: p.Version, Actual: v}
	}
	var ids []string
	stamp := time.Now().UTC().Format("0102150405")
	for i, m := range p.Moves {
		for _, at := range m.Splits {
			if _, err := c.opts.Store.Apply(ctx, topology.SplitRange{Distribution: m.Distribution, At: at}); err != nil && !strings.Contains(err.Error(), "already starts") && !strings.Contains(err.Error(), "cannot split") {
				return ids, err
			}
		}
		id := fmt.Sprintf("%s-%s-%s-%d", m.Distribution, stamp, m.To, i+1)
		if _, err := c.opts.Store.Apply(ctx, topology.StartMove{Move: topology.Move{ID: id, Distribution: m.Distribution,
			Ranges: sortedSpans(m.Ranges), From: m.From, To: m.To, HoldTimeoutMS: holdTimeoutMS}}); err != nil {
			return ids, err
		}
		ids = append(ids, id)
	}
	c.kick()
	return ids, nil
}

// MoveRequest moves one range (given by any hash value inside it, or its
// exact bounds) of a distribution to a shard.
type MoveRequest struct {
	Distribution  string `json:"distribution"`
	Lo            int64  `json:"lo"`
	Hi            int64  `json:"hi"`
	To            string `json:"to"`
	HoldTimeoutMS int64  `json:"hold_timeout_ms,omitempty"`
}

// MoveRange records a single move of the range [Lo, Hi] (splitting the
// range that holds it at its ends when needed) to To.
func (c *Controller) MoveRange(ctx context.Context, req MoveRequest) (string, error) {
	snap := c.opts.Store.Current()
	d, ok := snap.Distribution(req.Distribution)
	if !ok {
		return "", &topology.Error{Kind: topology.ErrNotFound, Msg: fmt.Sprintf("distribution %q does not exist", req.Distribution)}
	}
	if req.Lo > req.Hi {
		return "", &topology.Error{Kind: topology.ErrInvalid, Msg: fmt.Sprintf("range [%d, %d] is empty", req.Lo, req.Hi)}
	}
	i := topology.FindRange(d.Ranges, req.Lo)
	if i < 0 || d.Ranges[i].Hi < req.Hi {
		return "", &topology.Error{Kind: topology.ErrInvalid, Msg: fmt.Sprintf("[%d, %d] is not inside one range of %s; move ranges one at a time (shardctl ranges %s)", req.Lo, req.Hi, req.Distribution, req.Distribution)}
	}
	from := d.Ranges[i].Shard
	if d.Ranges[i].Lo != req.Lo {
		if _, err := c.opts.Store.Apply(ctx, topology.SplitRange{Distribution: req.Distribution, At: req.Lo}); err != nil {
			return "", err
		}
	}
	if d.Ranges[i].Hi != req.Hi {
		if _, err := c.opts.Store.Apply(ctx, topology.SplitRange{Distribution: req.Distribution, At: req.Hi + 1}); err != nil {
			return "", err
		}
	}
	id := fmt.Sprintf("%s-%s-%s", req.Distribution, time.Now().UTC().Format("0102150405.000"), req.To)
	id = strings.ReplaceAll(id, ".", "")
	if _, err := c.opts.Store.Apply(ctx, topology.StartMove{Move: topology.Move{ID: id, Distribution: req.Distribution,
		Ranges: []topology.Span{{Lo: req.Lo, Hi: req.Hi}}, From: from, To: req.To, HoldTimeoutMS: req.HoldTimeoutMS}}); err != nil {
		return "", err
	}
	c.kick()
	return id, nil
}

func (c *Controller) kick() {
	select {
	case c.wake <- struct{}{}:
	default:
	}
}
