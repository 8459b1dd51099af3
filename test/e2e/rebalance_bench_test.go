//go:build movebench

package e2e

import (
	"fmt"
	"math/rand"
	"os"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/shardproxy/shardproxy/rebalance"
	"github.com/shardproxy/shardproxy/router"
	"github.com/shardproxy/shardproxy/topology"
)

// The move benchmark (test/bench/moves.sh, make bench): 1,000,000 users on
// three shards, a fourth added, and a rebalance that moves a quarter of
// them to it while clients update and read users by key through the proxy.
// It reports the copy rate, the longest write hold at cutover, the load's
// p99 latency before and during the moves, and client errors, and writes
// the section between movesBegin and movesEnd of BENCH_OUT (when set).

const (
	movesBegin = "<!-- moves:begin (written by test/bench/moves.sh) -->"
	movesEnd   = "<!-- moves:end -->"
)

// latencies collects operation latencies, split by phase.
type latencies struct {
	mu     sync.Mutex
	phase  int // 0 before the moves, 1 during
	byPh   [2][]time.Duration
	errors atomic.Int64
	first  atomic.Value
}

func (l *latencies) add(d time.Duration) {
	l.mu.Lock()
	l.byPh[l.phase] = append(l.byPh[l.phase], d)
	l.mu.Unlock()
}

func (l *latencies) setPhase(p int) {
	l.mu.Lock()
	l.phase = p
	l.mu.Unlock()
}

func percentile(ds []time.Duration, p float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[min(len(s)-1, int(p*float64(len(s))))]
}

func envInt(name string, def int) int {
	var v int
	if _, err := fmt.Sscan(os.Getenv(name), &v); err == nil && v > 0 {
		return v
	}
	return def
}

func TestMoveBenchmark(t *testing.T) {
	total := envInt("BENCH_MOVE_ROWS", 1_000_000)
	workers := envInt("BENCH_MOVE_CLIENTS", 4)
	beforeFor := time.Duration(envInt("BENCH_MOVE_BEFORE_SECONDS", 15)) * time.Second
	e := startMoveEnv(t, 4, 3, 8, 2*time.Second)
	ctx := testCtx(t, 30*time.Minute)

	// Seed: users 1..total straight into the shard that owns each.
	seedStart := time.Now()
	r := router.For(e.store.Current())
	ids := map[string][]int64{}
	for id := int64(1); id <= int64(total); id++ {
		sh, err := r.ShardForKey("users", router.IntKey(id))
		if err != nil {
			t.Fatal(err)
		}
		ids[sh] = append(ids[sh], id)
	}
	var seedWG sync.WaitGroup
	for name, list := range ids {
		sh, _ := e.store.Current().Shard(name)
		seedWG.Add(1)
		go func() {
			defer seedWG.Done()
			conn := connectPgx(t, ctx, "postgres://postgres@"+sh.Primary+"/postgres?sslmode=disable")
			for i := 0; i < len(list); i += 100_000 {
				chunk := list[i:min(i+100_000, len(list))]
				if _, err := conn.Exec(ctx, `INSERT INTO users (id, name, balance) SELECT x, 'user' || x, 0 FROM unnest($1::int8[]) x`, chunk); err != nil {
					t.Error(err)
					return
				}
			}
			if _, err := conn.Exec(ctx, "ANALYZE users"); err != nil {
				t.Error(err)
			}
		}()
	}
	seedWG.Wait()
	if t.Failed() {
		return
	}
	seeded := time.Since(seedStart)

	// Load: each client updates or reads random users by key.
	lat := &latencies{}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var ops atomic.Int64
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			conn, err := pgx.Connect(ctx, e.proxy.dsn("postgres"))
			if err != nil {
				lat.errors.Add(1)
				lat.first.CompareAndSwap(nil, err.Error())
				return
			}
			defer conn.Close(ctx)
			rng := rand.New(rand.NewSource(int64(w)))
			for {
				select {
				case <-stop:
					return
				default:
				}
				id := 1 + rng.Int63n(int64(total))
				start := time.Now()
				var err error
				if rng.Intn(2) == 0 {
					_, err = conn.Exec(ctx, "UPDATE users SET balance = balance + 1 WHERE id = $1", id)
				} else {
					var b int
					err = conn.QueryRow(ctx, "SELECT balance FROM users WHERE id = $1", id).Scan(&b)
				}
				if err != nil {
					lat.errors.Add(1)
					lat.first.CompareAndSwap(nil, err.Error())
					continue
				}
				lat.add(time.Since(start))
				ops.Add(1)
			}
		}(w)
	}
	defer func() {
		select {
		case <-stop:
		default:
			close(stop)
		}
		wg.Wait()
	}()
	time.Sleep(beforeFor) // the "before" phase is a measured interval, not a wait for a condition

	// Rebalance onto the new shard, ranges split to at most 1/32 of the data.
	added := e.addShard(t, 3)
	plan, err := e.ctrl.PlanNow(ctx, rebalance.PlanRequest{By: "size", MaxMoveBytes: int64(total) * 45 / 32})
	if err != nil {
		t.Fatal(err)
	}
	var planned int64
	for _, m := range plan.Moves {
		if m.To == added {
			planned += m.Rows
		}
	}
	lat.setPhase(1)
	moveStart := time.Now()
	if _, err := e.ctrl.StartPlan(ctx, plan, 0); err != nil {
		t.Fatal(err)
	}
	// Follow the phases version by version: each move's copy lasts from
	// the version that shows it copying to the first one past that.
	copyFrom, copyTo := map[string]time.Time{}, map[string]time.Time{}
	if !e.watchTopology(20*time.Minute, func(s *topology.Snapshot) bool {
		now := time.Now()
		for _, m := range s.Moves() {
			switch m.State {
			case topology.MovePending:
			case topology.MoveCopying:
				if copyFrom[m.ID].IsZero() {
					copyFrom[m.ID] = now
				}
			default:
				if copyTo[m.ID].IsZero() {
					copyTo[m.ID] = now
				}
			}
		}
		return len(s.Moves()) == 0
	}) {
		t.Fatal("moves not done after 20 minutes")
	}
	var copyDur time.Duration
	for id, from := range copyFrom {
		if to := copyTo[id]; !to.IsZero() {
			copyDur += to.Sub(from)
		}
	}
	moveDur := time.Since(moveStart)
	close(stop)
	wg.Wait()

	var copied int64
	var maxHold float64
	var holds []string
	for _, p := range e.ctrl.Status() {
		copied += p.RowsTotal
		maxHold = max(maxHold, p.HoldMS)
		holds = append(holds, fmt.Sprintf("%.0f", p.HoldMS))
		if p.Phase != "done" {
			t.Errorf("move %s ended %s: %s", p.Move.ID, p.Phase, p.LastError)
		}
	}
	before, during := lat.byPh[0], lat.byPh[1]
	p99b, p99d := percentile(before, 0.99), percentile(during, 0.99)
	p50b, p50d := percentile(before, 0.5), percentile(during, 0.5)
	rate := float64(copied) / copyDur.Seconds()
	errs := lat.errors.Load()
	first, _ := lat.first.Load().(string)

	var b strings.Builder
	fmt.Fprintf(&b, "%s\n## Online data movement\n\n", movesBegin)
	fmt.Fprintf(&b, "%d users (id, name, balance; primary key on id) on 3 shards; a 4th shard is added and `rebalance` (by size, "+
		"ranges split to at most 1/32 of the data) moves %d of them (%.1f%%) to it in %d moves (one per source shard, run one at a time) "+
		"while %d clients update (50%%) and read (50%%) random users by key through one shardproxy (pgx, extended protocol). "+
		"All four PostgreSQL servers, the proxy and the clients share one machine.\n\n",
		total, copied, 100*float64(copied)/float64(total), len(plan.Moves), workers)
	b.WriteString("| figure | value |\n|---|---|\n")
	fmt.Fprintf(&b, "| rows moved | %d (plan: %d) |\n", copied, planned)
	fmt.Fprintf(&b, "| time in the copying phase (subscriptions' initial copy), summed over the moves | %s → **%.0f rows/s** |\n", copyDur.Round(time.Millisecond), rate)
	fmt.Fprintf(&b, "| whole rebalance (copy, catch-up, cutover, source cleanup) | %s |\n", moveDur.Round(time.Millisecond))
	fmt.Fprintf(&b, "| longest write hold at cutover (target ≤ 250 ms) | **%.0f ms** (each move: %s ms) |\n", maxHold, strings.Join(holds, ", "))
	fmt.Fprintf(&b, "| load p50 / p99 before the moves (%d ops in %s) | %s / %s |\n", len(before), beforeFor, p50b.Round(time.Microsecond), p99b.Round(time.Microsecond))
	fmt.Fprintf(&b, "| load p50 / p99 during the moves (%d ops) | %s / **%s** (p99 %.1f× before) |\n", len(during), p50d.Round(time.Microsecond), p99d.Round(time.Microsecond), float64(p99d)/float64(max(p99b, 1)))
	fmt.Fprintf(&b, "| client errors (target 0) | **%d** %s |\n", errs, first)
	fmt.Fprintf(&b, "\nSeeding took %s. Command: `bash test/bench/moves.sh` (part of `make bench`; BENCH_MOVE_ROWS, BENCH_MOVE_CLIENTS, "+
		"BENCH_MOVE_BEFORE_SECONDS change the size). Machine: %d logical CPUs shared with other jobs (load average %s), %s.\n",
		seeded.Round(time.Second), runtime.NumCPU(), loadAvg(), runtime.Version())
	b.WriteString(movesEnd + "\n")
	t.Log("\n" + b.String())
	if out := os.Getenv("BENCH_OUT"); out != "" {
		old, _ := os.ReadFile(out)
		if err := os.WriteFile(out, []byte(replaceSection(string(old), b.String())), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if errs > 0 {
		t.Errorf("%d client errors (first: %s)", errs, first)
	}
}

// replaceSection puts section in place of doc's moves block, or appends it.
func replaceSection(doc, section string) string {
	i := strings.Index(doc, movesBegin)
	j := strings.Index(doc, movesEnd)
	if i < 0 || j < i {
		return strings.TrimRight(doc, "\n") + "\n\n" + section
	}
	return doc[:i] + strings.TrimRight(section, "\n") + doc[j+len(movesEnd):]
}

func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return "?"
	}
	return f[0]
}
