package proxy

import (
	"fmt"
	"slices"
	"time"

	"github.com/shardproxy/shardproxy/planner/plan"
	"github.com/shardproxy/shardproxy/topology"
)

// Online range moves (package rebalance, DESIGN.md decision 8) need two
// things from the routing path, both decided here per statement:
//
//   - Hold. While a move is in cutover, a write whose shard would change
//     if the move's ranges already belonged to the target waits until the
//     topology changes (the move flips, or aborts back to catchup), then
//     is planned again on the new topology: after a flip it goes to the
//     target, after an abort to the source. A transaction that already
//     wrote on the shard is not held (writesInOpenTx). Reads are not held; they go to
//     the source until the flip. Writes whose rows are only known at run
//     time (COPY into, INSERT with generated keys of a distribution in
//     cutover) are held whole. A hold longer than the move's timeout plus
//     moveHoldGrace (the leader died mid-cutover and no new one rolled it
//     back) fails with 55P03 rather than risk a write on the wrong shard.
//
// Statements that fan out while a move has a range's rows on two scanned
// shards are not affected here: the planner restricts each such shard to
// the rows it owns (plan.Scatter.ShardSQL, planner/ownership.go).

// moveHoldGrace is added to a move's hold timeout before a held write
// gives up.
const moveHoldGrace = 10 * time.Second

// defaultMoveHold is the hold timeout of moves that do not carry one (the
// rebalance controller's default).
const defaultMoveHold = 2 * time.Second

// moveInfo is what routing needs to know about a snapshot's moves,
// computed once per snapshot.
type moveInfo struct {
	cutoverDists map[string]bool    // distributions with a move in cutover
	refCutover   bool               // a shard's references are in cutover
	flipped      *topology.Snapshot // the snapshot with every cutover move flipped (and reference cutover done)
	limit        time.Duration      // longest hold
}

type moveInfoKey struct{}

// moveInfoOf returns nil when snap records no moves (the hot path).
func moveInfoOf(snap *topology.Snapshot) *moveInfo {
	v := snap.Memo(moveInfoKey{}, func(s *topology.Snapshot) any {
		moves := s.Moves()
		var refCutover []string
		for _, sh := range s.Shards() {
			if sh.References == topology.ReferencesCutover {
				refCutover = append(refCutover, sh.Name)
			}
		}
		if len(moves) == 0 && len(refCutover) == 0 {
			return (*moveInfo)(nil)
		}
		mi := &moveInfo{cutoverDists: map[string]bool{}}
		flipped := s
		for _, name := range refCutover {
			if next, err := topology.ApplyCommand(flipped, topology.SetShardReferences{Shard: name, From: topology.ReferencesCutover, To: topology.ReferencesReady}); err == nil {
				flipped, mi.refCutover = next, true
				mi.limit = max(mi.limit, defaultMoveHold+moveHoldGrace)
			}
		}
		for _, m := range moves {
			switch m.State {
			case topology.MoveCutover:
				mi.cutoverDists[m.Distribution] = true
				hold := defaultMoveHold
				if m.HoldTimeoutMS > 0 {
					hold = time.Duration(m.HoldTimeoutMS) * time.Millisecond
				}
				mi.limit = max(mi.limit, hold+moveHoldGrace)
				for _, sp := range m.Ranges {
					if next, err := topology.ApplyCommand(flipped, topology.AssignRange{Distribution: m.Distribution, Lo: sp.Lo, Hi: sp.Hi, Shard: m.To}); err == nil {
						flipped = next
					}
				}
			}
		}
		if len(mi.cutoverDists) > 0 || mi.refCutover {
			mi.flipped = flipped
		}
		return mi
	})
	return v.(*moveInfo)
}

// planHeld plans a statement with planFn on snap and applies the move
// rules above; it returns the snapshot the plan was made on (a later one
// after a hold), which the caller must use from then on.
func (ss *session) planHeld(snap *topology.Snapshot, planFn func(*topology.Snapshot) (plan.Operator, error)) (*topology.Snapshot, plan.Operator, error) {
	var held time.Time
	for {
		op, err := planFn(snap)
		mi := moveInfoOf(snap)
		if err != nil || mi == nil {
			return snap, op, err
		}
		if !mi.mustHold(op, planFn) || ss.writesInOpenTx(op) {
			return snap, op, nil
		}
		if held.IsZero() {
			held = time.Now()
		} else if time.Since(held) > mi.limit {
			return snap, nil, &plan.Error{Code: "55P03",
				Message: fmt.Sprintf("a write to a range being moved was held for %s and the move did not finish its cutover", mi.limit.Round(time.Second)),
				Hint:    "retry the statement; check the move with shardctl rebalance status"}
		}
		for snap == ss.srv.topo.Current() {
			time.Sleep(time.Millisecond)
			if time.Since(held) > mi.limit {
				break
			}
		}
		snap = ss.srv.topo.Current()
	}
}

// writesInOpenTx reports whether op writes only on shards the session's
// open transaction (or implicit batch) already wrote on. Such a write is
// not held: the cutover waits for every transaction that was open on the
// source when the hold began (rebalance's fence), so it lands before the
// position the target must reach — and holding it would deadlock with that
// wait.
func (ss *session) writesInOpenTx(op plan.Operator) bool {
	if (ss.txStatus == 'I' && !ss.batch) || len(ss.txWriters) == 0 {
		return false
	}
	var shards []string
	switch o := op.(type) {
	case *plan.Route:
		shards = []string{o.Shard}
	case *plan.SplitInsert:
		for _, p := range o.Parts {
			shards = append(shards, p.Shard)
		}
	default:
		return false
	}
	for _, s := range shards {
		if !slices.Contains(ss.txWriters, s) {
			return false
		}
	}
	return true
}

// mustHold reports whether op writes somewhere a cutover would change.
func (mi *moveInfo) mustHold(op plan.Operator, planFn func(*topology.Snapshot) (plan.Operator, error)) bool {
	if mi.flipped == nil || !(writes(op) || mi.refCutover && broadcasts(op)) {
		return false
	}
	if d := runtimeRouted(op); d != "" {
		return mi.cutoverDists[d]
	}
	other, err := planFn(mi.flipped)
	if err != nil {
		return true
	}
	return !slices.Equal(plan.Lines(op), plan.Lines(other))
}

// writes reports whether op may change data.
func writes(op plan.Operator) bool {
	switch o := op.(type) {
	case *plan.Route:
		return !o.ReadOnly
	case *plan.Scatter:
		return o.Write
	case *plan.SplitInsert, *plan.AllocateKeys, *plan.CopySplit:
		return true
	case *plan.PullOut:
		return o.Distribution != "" // an UPDATE or DELETE
	case *plan.Broadcast, *plan.Session:
		return false
	case *plan.Explain:
		return o.Analyze && writes(o.Inner)
	case *plan.Sequence:
		return slices.ContainsFunc(o.Statements, writes)
	}
	return slices.ContainsFunc(op.Inputs(), writes)
}

// broadcasts reports whether op contains a Broadcast.
func broadcasts(op plan.Operator) bool {
	switch o := op.(type) {
	case *plan.Broadcast:
		return true
	case *plan.Sequence:
		return slices.ContainsFunc(o.Statements, broadcasts)
	}
	return slices.ContainsFunc(op.Inputs(), broadcasts)
}

// runtimeRouted returns the distribution of a write whose rows are routed
// at run time (not visible in the plan), or "".
func runtimeRouted(op plan.Operator) string {
	switch o := op.(type) {
	case *plan.AllocateKeys:
		return o.Distribution
	case *plan.CopySplit:
		return o.Distribution
	case *plan.PullOut:
		return o.Distribution
	}
	return ""
}
