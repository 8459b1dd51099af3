package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/shardproxy/shardproxy/test/pgcluster"
)

// A bank over four shards: transfers between accounts on different
// shards commit with two-phase commit. The proxy process is made to die
// (SHARDPROXY_CRASH_AT) at each stage of a commit; after a restart its
// recovery finishes or undoes the in-doubt transaction, so the total
// balance never changes, every transfer is in the ledger whole or not at
// all, and a commit that reached its commit point is kept.

const bankAccounts = 32

type bank struct {
	t       *testing.T
	cluster *pgcluster.Cluster
	proxy   *ctlProxy
	direct  []*pgx.Conn
	shardOf map[int64]int // account → index of its shard
}

func startBank(t *testing.T) *bank {
	pg := pgcluster.StartT(t, pgcluster.Options{Shards: 4})
	dir := t.TempDir()
	proxyBin, _ := ctlBuild(t, dir)
	var shardsYAML strings.Builder
	for _, s := range pg.Shards {
		fmt.Fprintf(&shardsYAML, "  - name: %s\n    primary: {host: %s, port: %d}\n", s.Name, s.Primary.Host, s.Primary.Port)
	}
	listen := ctlPort(t)
	p := &ctlProxy{name: "bank-proxy", bin: proxyBin, listen: fmt.Sprintf("127.0.0.1:%d", listen)}
	p.config = filepath.Join(dir, "proxy.yaml")
	cfg := fmt.Sprintf(`listen: 127.0.0.1:%d
node_id: 7
shutdown_timeout: 2s
auth: {trust_loopback: true}
shards:
%ssharding:
  distributions:
    - {name: accounts}
  tables:
    - {name: accounts, key: id, distribution: accounts}
    - {name: ledger, key: account_id, distribution: accounts}
    - {name: branches, kind: reference}
`, listen, shardsYAML.String())
	if err := os.WriteFile(p.config, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	b := &bank{t: t, cluster: pg, proxy: p, shardOf: map[int64]int{}}
	t.Cleanup(func() {
		p.stop()
		if t.Failed() {
			t.Logf("proxy output:\n%s", p.out.String())
		}
	})
	p.start(t)
	ctx := testCtx(t, 30*time.Second)
	app := b.connect(ctx)
	defer app.Close(ctx)
	for _, stmt := range []string{
		"CREATE TABLE accounts (id bigint PRIMARY KEY, balance bigint NOT NULL CHECK (balance >= 0))",
		"CREATE TABLE ledger (account_id bigint NOT NULL, xfer bigint NOT NULL, amount bigint NOT NULL, PRIMARY KEY (account_id, xfer))",
	} {
		mustExec(t, ctx, app, stmt)
	}
	var values []string
	for id := 1; id <= bankAccounts; id++ {
		values = append(values, fmt.Sprintf("(%d, 1000)", id))
	}
	mustExec(t, ctx, app, "INSERT INTO accounts VALUES "+strings.Join(values, ", "))
	for i, s := range pg.Shards {
		c := connectPgx(t, ctx, s.Primary.DSN("postgres"))
		b.direct = append(b.direct, c)
		rows, err := c.Query(ctx, "SELECT id FROM accounts")
		if err != nil {
			t.Fatal(err)
		}
		ids, err := pgx.CollectRows(rows, pgx.RowTo[int64])
		if err != nil {
			t.Fatal(err)
		}
		if len(ids) == 0 {
			t.Fatalf("shard %s holds no accounts", s.Name)
		}
		for _, id := range ids {
			b.shardOf[id] = i
		}
	}
	if len(b.shardOf) != bankAccounts {
		t.Fatalf("the shards hold %d accounts, want %d", len(b.shardOf), bankAccounts)
	}
	return b
}

// connect waits for the proxy to accept a client.
func (b *bank) connect(ctx context.Context) *pgx.Conn {
	b.t.Helper()
	var conn *pgx.Conn
	ctlWait(b.t, 30*time.Second, "the proxy to accept clients", func() bool {
		var err error
		conn, err = pgx.Connect(ctx, b.proxy.dsn())
		return err == nil
	})
	return conn
}

// pairs returns n (from, to) account pairs on different shards.
func (b *bank) pairs(n int, seed int64) [][2]int64 {
	var out [][2]int64
	for i := int64(0); len(out) < n; i++ {
		from := (seed+i*7)%bankAccounts + 1
		to := (seed+i*11+5)%bankAccounts + 1
		if from != to && b.shardOf[from] != b.shardOf[to] {
			out = append(out, [2]int64{from, to})
		}
	}
	return out
}

// transfer moves 10 from one account to another, with a ledger row each.
func transfer(ctx context.Context, c *pgx.Conn, xfer int64, p [2]int64) error {
	tx, err := c.Begin(ctx)
	if err != nil {
		return err
	}
	defer tx.Rollback(ctx)
	if _, err := tx.Exec(ctx, "UPDATE accounts SET balance = balance - 10 WHERE id = $1", p[0]); err != nil {
		return err
	}
	if _, err := tx.Exec(ctx, "UPDATE accounts SET balance = balance + 10 WHERE id = $1", p[1]); err != nil {
		return err
	}
	if _, err := tx.Exec(ctx, "INSERT INTO ledger (account_id, xfer, amount) VALUES ($1, $3, -10), ($2, $3, 10)", p[0], p[1], xfer); err != nil {
		return err
	}
	return tx.Commit(ctx)
}

// waitNoPrepared waits until no shard holds a prepared transaction.
func (b *bank) waitNoPrepared(ctx context.Context) {
	b.t.Helper()
	ctlWait(b.t, 30*time.Second, "recovery to finish every prepared transaction", func() bool {
		for _, c := range b.direct {
			var n int
			if err := c.QueryRow(ctx, "SELECT count(*) FROM pg_prepared_xacts").Scan(&n); err != nil || n != 0 {
				return false
			}
		}
		return true
	})
}

// check verifies the invariants directly on the shards and returns the
// transfers the ledger holds.
func (b *bank) check(ctx context.Context) map[int64]bool {
	b.t.Helper()
	var total int64
	legs := map[int64][]int64{}
	perAccount := map[int64]int64{}
	balances := map[int64]int64{}
	for _, c := range b.direct {
		rows, err := c.Query(ctx, "SELECT id, balance FROM accounts")
		if err != nil {
			b.t.Fatal(err)
		}
		for rows.Next() {
			var id, bal int64
			if err := rows.Scan(&id, &bal); err != nil {
				b.t.Fatal(err)
			}
			balances[id] = bal
			total += bal
		}
		rows, err = c.Query(ctx, "SELECT account_id, xfer, amount FROM ledger")
		if err != nil {
			b.t.Fatal(err)
		}
		for rows.Next() {
			var acc, xfer, amount int64
			if err := rows.Scan(&acc, &xfer, &amount); err != nil {
				b.t.Fatal(err)
			}
			legs[xfer] = append(legs[xfer], amount)
			perAccount[acc] += amount
		}
	}
	if total != bankAccounts*1000 {
		b.t.Fatalf("total balance %d, want %d", total, bankAccounts*1000)
	}
	done := map[int64]bool{}
	for xfer, l := range legs {
		sum := int64(0)
		for _, a := range l {
			sum += a
		}
		if len(l) < 2 || sum != 0 {
			b.t.Fatalf("transfer %d has ledger legs %v, want legs that sum to 0", xfer, l)
		}
		done[xfer] = true
	}
	for id, bal := range balances {
		if bal != 1000+perAccount[id] {
			b.t.Fatalf("account %d has balance %d but its ledger says %d", id, bal, 1000+perAccount[id])
		}
	}
	// Through the proxy, the merged sum says the same.
	app := b.connect(ctx)
	defer app.Close(ctx)
	var viaProxy int64
	if err := app.QueryRow(ctx, "SELECT sum(balance) FROM accounts").Scan(&viaProxy); err != nil || viaProxy != total {
		b.t.Fatalf("sum(balance) through the proxy = %d (%v), want %d", viaProxy, err, total)
	}
	return done
}

func TestTwoPhaseCommitSurvivesCoordinatorCrash(t *testing.T) {
	b := startBank(t)
	ctx := testCtx(t, 4*time.Minute)
	xfer := int64(0)
	for round, stage := range []string{"prepared-1", "decided", "committed-2"} {
		// The third two-phase commit of this run dies at stage.
		b.proxy.stop()
		b.proxy.env = []string{"SHARDPROXY_CRASH_AT=" + stage + ":3"}
		b.proxy.start(t)
		app := b.connect(ctx)
		var crashed int64
		var committed []int64
		for _, p := range b.pairs(3, int64(round*5)) {
			xfer++
			if err := transfer(ctx, app, xfer, p); err != nil {
				crashed = xfer
				break
			}
			committed = append(committed, xfer)
		}
		app.Close(ctx)
		if crashed == 0 {
			t.Fatalf("stage %s: no commit failed; the crash hook did not fire", stage)
		}
		ctlWait(t, 10*time.Second, "the proxy to exit at "+stage, func() bool { return !b.proxy.running() })
		if stage == "decided" {
			// A participant shard restarts (crash recovery) while its
			// part is prepared: the prepared transaction survives it.
			p := b.pairs(3, int64(round*5))[2]
			in := b.cluster.Shards[b.shardOf[p[1]]].Primary
			if err := in.Kill(); err != nil {
				t.Fatal(err)
			}
			if err := in.Start(ctx); err != nil {
				t.Fatal(err)
			}
			b.direct[b.shardOf[p[1]]] = connectPgx(t, ctx, in.DSN("postgres"))
			var n int
			if err := b.direct[b.shardOf[p[1]]].QueryRow(ctx, "SELECT count(*) FROM pg_prepared_xacts").Scan(&n); err != nil || n != 1 {
				t.Fatalf("after the participant's restart it holds %d prepared transactions (%v), want 1", n, err)
			}
		}
		// A restart without the hook recovers.
		b.proxy.env = nil
		b.proxy.start(t)
		b.waitNoPrepared(ctx)
		done := b.check(ctx)
		for _, x := range committed {
			if !done[x] {
				t.Fatalf("stage %s: transfer %d was acknowledged but is not in the ledger", stage, x)
			}
		}
		if stage != "committed-2" && !strings.Contains(b.proxy.out.String(), "finished an in-doubt transaction") {
			t.Fatalf("stage %s: the restarted proxy did not log its recovery:\n%s", stage, b.proxy.out.String())
		}
		wantKept := stage == "decided" || stage == "committed-2"
		if stage == "prepared-1" {
			// The abort record recovery left on the decision shard.
			var committed bool
			if err := b.direct[b.shardOf[b.pairs(3, int64(round*5))[2][0]]].QueryRow(ctx,
				"SELECT committed FROM shardproxy.commit_decisions ORDER BY created DESC LIMIT 1").Scan(&committed); err != nil || committed {
				t.Fatalf("stage %s: latest decision record committed=%v (%v), want an abort record", stage, committed, err)
			}
		}
		if done[crashed] != wantKept {
			t.Fatalf("stage %s: in-doubt transfer %d kept=%v, want %v", stage, crashed, done[crashed], wantKept)
		}
	}
}

// bankLoad runs concurrent transfer clients until stopped, remembering
// which transfers were acknowledged.
type bankLoad struct {
	b     *bank
	next  *int64
	mu    sync.Mutex
	acked []int64
	errs  int
	stop  chan struct{}
	wg    sync.WaitGroup
}

func (b *bank) startLoad(ctx context.Context, clients int, next *int64) *bankLoad {
	l := &bankLoad{b: b, next: next, stop: make(chan struct{})}
	var mu sync.Mutex
	for c := 0; c < clients; c++ {
		l.wg.Add(1)
		go func(c int) {
			defer l.wg.Done()
			var conn *pgx.Conn
			for i := 0; ; i++ {
				select {
				case <-l.stop:
					if conn != nil {
						conn.Close(ctx)
					}
					return
				default:
				}
				if conn == nil || conn.IsClosed() {
					cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
					var err error
					conn, err = pgx.Connect(cctx, b.proxy.dsn())
					cancel()
					if err != nil {
						conn = nil
						select {
						case <-l.stop:
							return
						case <-time.After(50 * time.Millisecond): // the proxy restarts
						}
						continue
					}
				}
				mu.Lock()
				*l.next++
				xfer := *l.next
				mu.Unlock()
				pair := b.pairs(1, int64(c*13+i))[0]
				tctx, cancel := context.WithTimeout(ctx, 10*time.Second)
				err := transfer(tctx, conn, xfer, pair)
				cancel()
				l.mu.Lock()
				if err == nil {
					l.acked = append(l.acked, xfer)
				} else {
					l.errs++
					conn.Close(ctx)
					conn = nil
				}
				l.mu.Unlock()
			}
		}(c)
	}
	return l
}

// count returns how many transfers were acknowledged so far.
func (l *bankLoad) count() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.acked)
}

func (l *bankLoad) finish() []int64 {
	close(l.stop)
	l.wg.Wait()
	return l.acked
}

func TestTwoPhaseCommitUnderConcurrentLoad(t *testing.T) {
	b := startBank(t)
	ctx := testCtx(t, 4*time.Minute)
	var next int64 = 1_000_000

	// 1. Three clients transfer at once while the proxy dies between the
	// PREPAREs of its tenth two-phase commit, then restarts.
	b.proxy.stop()
	b.proxy.env = []string{"SHARDPROXY_CRASH_AT=prepared-1:10"}
	b.proxy.start(t)
	load := b.startLoad(ctx, 3, &next)
	ctlWait(t, 60*time.Second, "the proxy to die at its tenth commit", func() bool { return !b.proxy.running() })
	b.proxy.env = nil
	b.proxy.start(t)
	before := load.count()
	ctlWait(t, 60*time.Second, "transfers to resume after the restart", func() bool { return load.count() >= before+10 })
	acked := load.finish()
	b.waitNoPrepared(ctx)
	done := b.check(ctx)
	for _, x := range acked {
		if !done[x] {
			t.Fatalf("transfer %d was acknowledged but is not in the ledger", x)
		}
	}

	// 2. A participant shard crashes and restarts under the same load,
	// with the proxy alive: clients get errors for what was in flight,
	// nothing acknowledged is lost, nothing is half applied.
	load = b.startLoad(ctx, 3, &next)
	ctlWait(t, 60*time.Second, "transfers to run", func() bool { return load.count() >= 10 })
	victim := b.cluster.Shards[2].Primary
	if err := victim.Kill(); err != nil {
		t.Fatal(err)
	}
	if err := victim.Start(ctx); err != nil {
		t.Fatal(err)
	}
	b.direct[2] = connectPgx(t, ctx, victim.DSN("postgres"))
	before = load.count()
	ctlWait(t, 60*time.Second, "transfers to resume after the shard restart", func() bool { return load.count() >= before+10 })
	acked = load.finish()
	b.waitNoPrepared(ctx)
	done = b.check(ctx)
	for _, x := range acked {
		if !done[x] {
			t.Fatalf("transfer %d was acknowledged but is not in the ledger", x)
		}
	}
	if len(acked) == 0 {
		t.Fatal("no transfer was acknowledged")
	}

	// 3. A reference-table write that one shard refuses leaves no shard
	// changed.
	app := b.connect(ctx)
	defer app.Close(ctx)
	mustExec(t, ctx, app, "CREATE TABLE branches (code text PRIMARY KEY, city text NOT NULL)")
	if _, err := b.direct[1].Exec(ctx, "INSERT INTO branches VALUES ('zz', 'only on one shard')"); err != nil {
		t.Fatal(err)
	}
	_, err := app.Exec(ctx, "INSERT INTO branches VALUES ('aa', 'Amsterdam'), ('zz', 'Zurich')")
	if sqlState(err) != "23505" {
		t.Fatalf("reference write conflicting on one shard: %v, want 23505", err)
	}
	for i, c := range b.direct {
		var n int
		if err := c.QueryRow(ctx, "SELECT count(*) FROM branches WHERE code = 'aa'").Scan(&n); err != nil || n != 0 {
			t.Fatalf("shard %d kept %d rows of the failed reference write (%v)", i, n, err)
		}
	}
}

// split pays 10 from one account to each of two others, the three on
// three different shards (three writers: two prepare, one decides).
func split(ctx context.Context, c *pgx.Conn, xfer, from, to1, to2 int64) error {
	tx, err := c.Begin(ctx)
	if err != nil {
		return err
	}
	defer tx.Rollback(ctx)
	for _, st := range []struct {
		id, delta int64
	}{{from, -20}, {to1, 10}, {to2, 10}} {
		if _, err := tx.Exec(ctx, "UPDATE accounts SET balance = balance + $2 WHERE id = $1", st.id, st.delta); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, "INSERT INTO ledger (account_id, xfer, amount) VALUES ($1, $2, $3)", st.id, xfer, st.delta); err != nil {
			return err
		}
	}
	return tx.Commit(ctx)
}

// A transaction over three shards: the proxy dies after one of the two
// PREPAREs answered (rolled back everywhere), or between the two COMMIT
// PREPAREDs (committed everywhere).
func TestTwoPhaseCommitThreeShardsCrash(t *testing.T) {
	b := startBank(t)
	ctx := testCtx(t, 3*time.Minute)
	// Three accounts on three different shards.
	var trio []int64
	used := map[int]bool{}
	for id := int64(1); id <= bankAccounts && len(trio) < 3; id++ {
		if !used[b.shardOf[id]] {
			used[b.shardOf[id]] = true
			trio = append(trio, id)
		}
	}
	xfer := int64(500_000)
	for _, stage := range []string{"prepared-1", "committed-2"} {
		b.proxy.stop()
		b.proxy.env = []string{"SHARDPROXY_CRASH_AT=" + stage + ":2"}
		b.proxy.start(t)
		app := b.connect(ctx)
		xfer++
		if err := split(ctx, app, xfer, trio[0], trio[1], trio[2]); err != nil {
			t.Fatalf("stage %s: the first split failed: %v", stage, err)
		}
		acked := xfer
		xfer++
		if err := split(ctx, app, xfer, trio[0], trio[1], trio[2]); err == nil {
			t.Fatalf("stage %s: the second split succeeded; the crash hook did not fire", stage)
		}
		app.Close(ctx)
		ctlWait(t, 10*time.Second, "the proxy to exit at "+stage, func() bool { return !b.proxy.running() })
		b.proxy.env = nil
		b.proxy.start(t)
		b.waitNoPrepared(ctx)
		done := b.check(ctx)
		if !done[acked] {
			t.Fatalf("stage %s: acknowledged split %d is not in the ledger", stage, acked)
		}
		if want := stage == "committed-2"; done[xfer] != want {
			t.Fatalf("stage %s: in-doubt split %d kept=%v, want %v", stage, xfer, done[xfer], want)
		}
	}
}
