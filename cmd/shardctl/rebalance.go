package main

import (
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/shardproxy/shardproxy/proxy/admin"
	"github.com/shardproxy/shardproxy/rebalance"
	"github.com/shardproxy/shardproxy/topology"
)

// ---- rebalance and move (docs/rebalance.md) ----

// planFlags are the flags of rebalance plan and start.
type planFlags struct {
	distribution, by string
	maxMoveBytes     int64
	holdTimeout      time.Duration
}

func (f *planFlags) add(cmd *cobra.Command, withHold bool) {
	cmd.Flags().StringVar(&f.distribution, "distribution", "", "balance only this distribution (default: every hash distribution)")
	cmd.Flags().StringVar(&f.by, "by", "size", "what to even out: size (bytes per shard, counted on the shards) or count (ranges per shard)")
	cmd.Flags().Int64Var(&f.maxMoveBytes, "max-move-bytes", 0, "split ranges larger than this many bytes before moving them (0: never split)")
	if withHold {
		cmd.Flags().DurationVar(&f.holdTimeout, "hold-timeout", 0, "longest write hold at each cutover; a cutover that would take longer aborts and retries (default: the proxy's, 2s)")
	}
}

func (f *planFlags) request() rebalance.PlanRequest {
	return rebalance.PlanRequest{Distribution: f.distribution, By: f.by, MaxMoveBytes: f.maxMoveBytes, HoldTimeoutMS: f.holdTimeout.Milliseconds()}
}

func (a *app) rebalanceCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "rebalance",
		Short: "Plan, start, follow and cancel online data moves between shards",
		Long: `rebalance evens out hash distributions over the active shards by moving ranges
online (logical replication, then a short write hold at cutover). A shard added
with "shardctl shards add" gets its share; a draining shard gives all of its
ranges away. See docs/rebalance.md.`,
	}
	var pf planFlags
	plan := &cobra.Command{
		Use:   "plan",
		Short: "Show which ranges would move where, how many rows and bytes, and why (changes nothing)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var p rebalance.Plan
			if err := a.call(http.MethodPost, "/v1/rebalance/plan", pf.request(), &p); err != nil {
				return err
			}
			if a.g.output == "json" {
				return a.json(p)
			}
			a.printPlan(p)
			return nil
		},
	}
	pf.add(plan, false)

	var sf planFlags
	var watchAfterStart bool
	start := &cobra.Command{
		Use:   "start",
		Short: "Compute a plan and start its moves (the leader proxy runs them)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var res admin.MovesStarted
			if err := a.call(http.MethodPost, "/v1/rebalance/start", sf.request(), &res); err != nil {
				return err
			}
			if a.g.output == "json" && !watchAfterStart {
				return a.json(res)
			}
			if a.g.output != "json" {
				fmt.Fprintf(a.out, "%s\ntopology version %d\n", res.Message, res.Version)
			}
			if watchAfterStart && len(res.Moves) > 0 {
				return a.watchMoves(time.Second, res.Moves)
			}
			return nil
		},
	}
	sf.add(start, true)
	start.Flags().BoolVar(&watchAfterStart, "watch", false, "follow the moves until they end (like rebalance status --watch)")

	var watch bool
	var interval time.Duration
	status := &cobra.Command{
		Use:   "status",
		Short: "Moves with their phase, rows copied of total, replication lag and ETA",
		Long: `status lists the moves in progress and the recently finished ones. With
--watch it redraws every --interval until every move has ended (Ctrl-C stops
watching; the moves go on). With -o json, --watch prints one JSON document per
interval.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if watch {
				return a.watchMoves(interval, nil)
			}
			r, err := a.moveReport()
			if err != nil {
				return err
			}
			if a.g.output == "json" {
				return a.json(r)
			}
			a.printMoves(r, nil)
			return nil
		},
	}
	status.Flags().BoolVarP(&watch, "watch", "w", false, "redraw until every move has ended")
	status.Flags().DurationVar(&interval, "interval", time.Second, "how often --watch redraws")

	cancel := &cobra.Command{
		Use:   "cancel [MOVE]",
		Short: "Roll back a move (or every move not flipped yet): the source keeps its rows, copied rows leave the target",
		Args:  cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var req admin.CancelRequest
			if len(args) == 1 {
				req.ID = args[0]
			}
			var res admin.MovesCancelled
			if err := a.call(http.MethodPost, "/v1/rebalance/cancel", req, &res); err != nil {
				return err
			}
			if a.g.output == "json" {
				return a.json(res)
			}
			fmt.Fprintf(a.out, "%s\ntopology version %d\n", res.Message, res.Version)
			return nil
		},
	}
	cmd.AddCommand(plan, start, status, cancel)
	return cmd
}

func (a *app) moveCommand() *cobra.Command {
	var to string
	var holdTimeout time.Duration
	cmd := &cobra.Command{
		Use:   "move DISTRIBUTION RANGE --to SHARD",
		Short: "Move one hash range of a distribution to a shard, online",
		Long: `move moves the rows of one hash range to SHARD while the application keeps
running. RANGE is LO:HI (hash values, inclusive; a part of one range is split
off first) or a single hash value, meaning the whole range that holds it (see
shardctl ranges DISTRIBUTION). A RANGE that starts with "-" goes after "--":

  shardctl move --to shard4 users -- -9223372036854775808:-6917529027641081857`,
		Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			if to == "" {
				return fmt.Errorf("--to SHARD is required")
			}
			lo, hi, whole, err := parseRangeArg(args[1])
			if err != nil {
				return err
			}
			if whole {
				if lo, hi, err = a.rangeHolding(args[0], lo); err != nil {
					return err
				}
			}
			req := rebalance.MoveRequest{Distribution: args[0], Lo: lo, Hi: hi, To: to, HoldTimeoutMS: holdTimeout.Milliseconds()}
			var res admin.MovesStarted
			if err := a.call(http.MethodPost, "/v1/moves", req, &res); err != nil {
				return err
			}
			if a.g.output == "json" {
				return a.json(res)
			}
			fmt.Fprintf(a.out, "%s\ntopology version %d\n", res.Message, res.Version)
			return nil
		},
	}
	cmd.Flags().StringVar(&to, "to", "", "shard to move the range to")
	cmd.Flags().DurationVar(&holdTimeout, "hold-timeout", 0, "longest write hold at cutover (default: the proxy's, 2s)")
	_ = cmd.RegisterFlagCompletionFunc("to", a.completeFrom(a.shardNames, 99))
	return cmd
}

// parseRangeArg parses "LO:HI" or a single hash value (whole = true).
func parseRangeArg(s string) (lo, hi int64, whole bool, err error) {
	// The separator is the first ':' after the first character, so that
	// a leading minus sign is part of LO.
	i := -1
	if len(s) > 1 {
		if j := strings.IndexByte(s[1:], ':'); j >= 0 {
			i = j + 1
		}
	}
	if i < 0 {
		v, err := strconv.ParseInt(strings.TrimSpace(s), 10, 64)
		if err != nil {
			return 0, 0, false, fmt.Errorf("RANGE %q: want LO:HI or one hash value (64-bit integers)", s)
		}
		return v, v, true, nil
	}
	lo, err1 := strconv.ParseInt(strings.TrimSpace(s[:i]), 10, 64)
	hi, err2 := strconv.ParseInt(strings.TrimSpace(s[i+1:]), 10, 64)
	if err1 != nil || err2 != nil {
		return 0, 0, false, fmt.Errorf("RANGE %q: want LO:HI with 64-bit integers", s)
	}
	if lo > hi {
		return 0, 0, false, fmt.Errorf("RANGE %q is empty: LO must not exceed HI", s)
	}
	return lo, hi, false, nil
}

// rangeHolding returns the bounds of the range of dist that holds v.
func (a *app) rangeHolding(dist string, v int64) (lo, hi int64, err error) {
	var out admin.Ranges
	if err := a.get("/v1/ranges", map[string][]string{"distribution": {dist}}, &out); err != nil {
		return 0, 0, err
	}
	for _, d := range out.Distributions {
		for _, r := range d.Ranges {
			if r.Lo <= v && v <= r.Hi {
				return r.Lo, r.Hi, nil
			}
		}
	}
	return 0, 0, fmt.Errorf("no range of %s holds %d (shardctl ranges %s lists them)", dist, v, dist)
}

// call runs any request and decodes its answer.
func (a *app) call(method, path string, in, out any) error {
	c, err := a.client()
	if err != nil {
		return err
	}
	ctx, cancel := a.ctx()
	defer cancel()
	return a.explain(c.Do(ctx, method, path, in, out))
}

func (a *app) moveReport() (rebalance.Report, error) {
	var r rebalance.Report
	err := a.get("/v1/rebalance/status", nil, &r)
	return r, err
}

// moveEnded reports whether a move has finished (done or cancelled).
func moveEnded(p rebalance.Progress) bool { return p.Finished != nil }

// watchMoves redraws the moves every interval until every move (of ids,
// when given) has ended. A status that cannot be fetched (leadership
// moving) is reported and retried.
func (a *app) watchMoves(interval time.Duration, ids []string) error {
	tty := false
	if f, ok := a.out.(*os.File); ok {
		if st, err := f.Stat(); err == nil && st.Mode()&os.ModeCharDevice != 0 {
			tty = true
		}
	}
	want := map[string]bool{}
	for _, id := range ids {
		want[id] = true
	}
	failures := 0
	for {
		r, err := a.moveReport()
		if err != nil {
			failures++
			if failures >= 10 {
				return err
			}
			fmt.Fprintf(a.out, "status unavailable (%v); retrying\n", strings.SplitN(err.Error(), "\n", 2)[0])
			time.Sleep(interval)
			continue
		}
		failures = 0
		active := 0
		for _, p := range r.Moves {
			if (len(want) == 0 || want[p.Move.ID]) && !moveEnded(p) {
				active++
			}
		}
		if a.g.output == "json" {
			if err := a.jsonLine(r); err != nil {
				return err
			}
		} else {
			if tty {
				fmt.Fprint(a.out, "\033[H\033[2J")
			}
			fmt.Fprintf(a.out, "%s  topology version %d\n", r.Time.Local().Format("15:04:05"), r.Version)
			a.printMoves(r, want)
			if !tty {
				fmt.Fprintln(a.out)
			}
		}
		if active == 0 {
			return nil
		}
		time.Sleep(interval)
	}
}

// printPlan writes a plan as tables.
func (a *app) printPlan(p rebalance.Plan) {
	fmt.Fprintf(a.out, "plan on topology version %d, balancing by %s\n\n", p.Version, p.By)
	if len(p.Moves) == 0 {
		fmt.Fprintln(a.out, "nothing to move: the shards are balanced")
	} else {
		var rows [][]string
		for _, m := range p.Moves {
			rows = append(rows, []string{m.Distribution, m.From, m.To, spansString(m.Ranges), strconv.FormatInt(m.Rows, 10), humanBytes(m.Bytes), m.Reason})
		}
		a.table([]string{"DISTRIBUTION", "FROM", "TO", "RANGES", "ROWS", "SIZE", "WHY"}, rows)
	}
	if len(p.Loads) > 0 {
		fmt.Fprintln(a.out)
		var rows [][]string
		for _, l := range p.Loads {
			rows = append(rows, []string{l.Shard,
				fmt.Sprintf("%d → %d", l.RangesBefore, l.RangesAfter),
				fmt.Sprintf("%d → %d", l.RowsBefore, l.RowsAfter),
				fmt.Sprintf("%s → %s", humanBytes(l.BytesBefore), humanBytes(l.BytesAfter))})
		}
		a.table([]string{"SHARD", "RANGES", "ROWS", "SIZE"}, rows)
	}
	if len(p.Problems) > 0 {
		fmt.Fprintln(a.out, "\ncannot start, fix these tables first:")
		for _, pr := range p.Problems {
			fmt.Fprintf(a.out, "  - %s\n", pr)
		}
	}
}

// printMoves writes one line per move (of want, when not empty).
func (a *app) printMoves(r rebalance.Report, want map[string]bool) {
	var rows [][]string
	for _, p := range r.Moves {
		if len(want) > 0 && !want[p.Move.ID] {
			continue
		}
		rows = append(rows, []string{p.Move.ID, p.Move.Distribution, p.Move.From + " → " + p.Move.To, spansString(p.Move.Ranges),
			p.Phase, progressBar(p.RowsCopied, p.RowsTotal, 20), moveLag(p), moveETA(p, r.Time), orDash(firstLineOf(p.LastError))})
	}
	a.printReferenceSyncs(r)
	if len(rows) == 0 {
		fmt.Fprintln(a.out, "no moves")
		return
	}
	a.table([]string{"MOVE", "DISTRIBUTION", "FROM → TO", "RANGES", "PHASE", "ROWS COPIED", "LAG", "ETA", "LAST ERROR"}, rows)
}

// printReferenceSyncs writes one line per shard being given the reference
// tables (moves to it wait for it), when there are any.
func (a *app) printReferenceSyncs(r rebalance.Report) {
	var rows [][]string
	for _, s := range r.References {
		hold := "-"
		if s.HoldMS > 0 {
			hold = fmt.Sprintf("%.0fms", s.HoldMS)
		}
		tables := fmt.Sprint(s.Tables)
		if s.Replicated > 0 {
			tables = fmt.Sprintf("%d (%d replicated)", s.Tables, s.Replicated)
		}
		rows = append(rows, []string{s.Shard, s.State, orDash(s.Source), tables, fmt.Sprint(s.RowsCopied), orDash(s.Step), hold, orDash(firstLineOf(s.LastError))})
	}
	if len(rows) > 0 {
		a.table([]string{"REFERENCES OF", "STATE", "FROM", "TABLES", "ROWS COPIED", "STEP", "HOLD", "LAST ERROR"}, rows)
	}
}

// progressBar draws "[#####.....] 1200/2400".
func progressBar(done, total int64, width int) string {
	if total <= 0 {
		return fmt.Sprintf("[%s] %d/-", strings.Repeat(".", width), done)
	}
	n := int(int64(width) * min(done, total) / total)
	return fmt.Sprintf("[%s%s] %d/%d", strings.Repeat("#", n), strings.Repeat(".", width-n), done, total)
}

func moveLag(p rebalance.Progress) string {
	switch topology.MoveState(p.Phase) {
	case topology.MoveCatchup, topology.MoveCutover:
		return humanBytes(p.LagBytes)
	}
	return "-"
}

// moveETA estimates the rest of the copy from its average rate so far.
func moveETA(p rebalance.Progress, now time.Time) string {
	switch topology.MoveState(p.Phase) {
	case topology.MovePending, topology.MoveCopying:
	default:
		return "-"
	}
	elapsed := now.Sub(p.Started)
	if p.RowsCopied <= 0 || p.RowsTotal <= p.RowsCopied || elapsed <= 0 {
		return "-"
	}
	rate := float64(p.RowsCopied) / elapsed.Seconds()
	left := time.Duration(float64(p.RowsTotal-p.RowsCopied) / rate * float64(time.Second))
	return left.Round(time.Second).String()
}

// spansString writes spans as LO:HI,…, adjacent spans merged.
func spansString(spans []topology.Span) string {
	var merged []topology.Span
	for _, s := range spans {
		if n := len(merged); n > 0 && merged[n-1].Hi != math.MaxInt64 && merged[n-1].Hi+1 == s.Lo {
			merged[n-1].Hi = s.Hi
			continue
		}
		merged = append(merged, s)
	}
	var parts []string
	for _, s := range merged {
		parts = append(parts, fmt.Sprintf("%d:%d", s.Lo, s.Hi))
	}
	return orDash(strings.Join(parts, ","))
}

func firstLineOf(s string) string {
	s, _, _ = strings.Cut(s, "\n")
	if len(s) > 80 {
		s = s[:77] + "..."
	}
	return s
}

// jsonLine writes v as one line of JSON.
func (a *app) jsonLine(v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(a.out, "%s\n", b)
	return err
}
