package e2e

import (
	"errors"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/shardproxy/shardproxy/proxy/admin"
	"github.com/shardproxy/shardproxy/test/pgcluster"
)

// After a failover the old primary comes back as a replica of the new one,
// the way an operator does it (docs/replicas.md, "Re-attaching the old
// primary"): it is stopped, rewound with the installed pg_rewind from the
// new primary (--write-recovery-conf: standby.signal and primary_conninfo),
// started, and POST /v1/shards/{name}/replicas (shardctl shards
// add-replica) checks that it streams from the new primary before it is
// recorded as a replica and gets reads.
func TestReplicaRejoinOldPrimaryAfterFailover(t *testing.T) {
	ctx := testCtx(t, 3*time.Minute)
	// pg_rewind needs wal_log_hints (or data checksums) and
	// full_page_writes (which a persistent cluster keeps on). Its
	// --source-server copies every file of the new primary's data
	// directory and fails on a Unix socket there: a data directory path
	// too long for a socket makes the harness put the sockets elsewhere,
	// as packaged servers have them (/var/run/postgresql).
	root := filepath.Join(t.TempDir(), strings.Repeat("d", 80))
	cl, p := failoverClusterWith(t, ctx, pgcluster.Options{Replicas: 2, DataDir: root, Settings: map[string]string{"wal_log_hints": "on"}}, noPrimaryReads)
	sh := cl.Shards[0]
	old := sh.Primary
	_, api := failoverAPI(t, p)
	c := connectPgx(t, ctx, p.dsn("postgres"))
	for i := 1; i <= 50; i++ {
		mustExec(t, ctx, c, "INSERT INTO acked (id) VALUES ($1)", i)
	}

	// The primary crashes: a write through the proxy fails at once with a
	// connection error naming the server, not after a timeout.
	if err := old.Kill(); err != nil {
		t.Fatal(err)
	}
	w := connectPgx(t, ctx, p.dsn("postgres"))
	_, err := w.Exec(ctx, "INSERT INTO acked (id) VALUES (1000)")
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) || !(strings.HasPrefix(pgErr.Code, "08") || strings.HasPrefix(pgErr.Code, "57P")) {
		t.Errorf("write while the primary is down: %v, want a connection error (SQLSTATE class 08 / 57P)", err)
	} else {
		t.Logf("write while the primary is down: SQLSTATE %s: %s", pgErr.Code, pgErr.Message)
	}
	var res admin.FailoverResult
	if err := api.Do(ctx, "POST", "/v1/shards/"+sh.Name+"/failover", nil, &res); err != nil {
		t.Fatalf("failover: %v", err)
	}
	newPrimary := sh.Replicas[0]
	other := sh.Replicas[1]
	for _, r := range sh.Replicas {
		if r.Addr() == res.NewPrimary {
			newPrimary = r
		} else {
			other = r
		}
	}
	t.Logf("failover: %s", res.Message)
	// The session whose write failed writes to the new primary.
	mustExec(t, ctx, w, "INSERT INTO acked (id) VALUES (51)")

	// The old primary comes back on its own as a primary (nothing routes
	// to it) and takes a write the new primary never sees: it diverged.
	if err := old.Start(ctx); err != nil {
		t.Fatal(err)
	}
	execOn(t, ctx, old, "INSERT INTO acked (id) VALUES (-1)")
	var addErr *admin.APIError
	err = api.Do(ctx, "POST", "/v1/shards/"+sh.Name+"/replicas", admin.AddReplicaRequest{Addr: old.Addr(), DataDir: old.DataDir}, nil)
	if !errors.As(err, &addErr) || !strings.Contains(addErr.Msg, "not a standby") || !strings.Contains(addErr.Hint, "pg_rewind --target-pgdata="+old.DataDir) {
		t.Fatalf("adding the diverged old primary: %v, want a refusal naming pg_rewind", err)
	}
	t.Logf("refused: %v", err)

	// The operator's procedure on the old primary's host.
	if err := old.Stop(); err != nil {
		t.Fatal(err)
	}
	source := "host=" + newPrimary.Host + " port=" + strconv.Itoa(newPrimary.Port) + " user=postgres dbname=postgres"
	out, err := cl.RunTool(ctx, "pg_rewind", "--target-pgdata="+old.DataDir, "--source-server="+source, "--write-recovery-conf")
	if err != nil {
		t.Fatalf("pg_rewind: %v", err)
	}
	t.Logf("pg_rewind: %s", strings.TrimSpace(string(out)))
	if err := old.Start(ctx); err != nil {
		t.Fatal(err)
	}
	var added admin.AddReplicaResult
	waitFor(t, 30*time.Second, "the rewound old primary accepted as a replica (streaming from the new primary)", func() bool {
		err := api.Do(ctx, "POST", "/v1/shards/"+sh.Name+"/replicas", admin.AddReplicaRequest{Addr: old.Addr()}, &added)
		if err != nil {
			t.Logf("add-replica: %v", err)
		}
		return err == nil
	})
	t.Logf("add-replica: %s (fence removed: %v)", added.Message, added.FenceRemoved)
	got, _ := p.srv.Topology().Current().Shard(sh.Name)
	if got.Primary != newPrimary.Addr() || len(got.Replicas) != 2 || got.Replicas[1] != old.Addr() {
		t.Fatalf("topology after add-replica: %+v, want primary %s and replicas %s, %s", got, newPrimary.Addr(), other.Addr(), old.Addr())
	}
	// It follows the new primary: the diverged row is gone, the new
	// primary's rows are there, and reads through the proxy reach it.
	mustExec(t, ctx, c, "INSERT INTO acked (id) VALUES (52)")
	waitRowCount(t, ctx, old, 52)
	// The other replica follows the new primary too; the count read below
	// may be answered by it (another session: read-your-writes does not
	// apply), so it must have replayed row 52 as well.
	waitRowCount(t, ctx, other, 52)
	oc := connectPgx(t, ctx, old.DSN("postgres"))
	var diverged int
	if err := oc.QueryRow(ctx, "SELECT count(*) FROM acked WHERE id < 0").Scan(&diverged); err != nil || diverged != 0 {
		t.Errorf("the diverged row on the rewound old primary: %d (%v), want it gone", diverged, err)
	}
	r := connectPgx(t, ctx, p.dsn("postgres"))
	waitFor(t, 15*time.Second, "a read through the proxy reaching the old primary", func() bool {
		return serverPort(t, ctx, r, "SELECT inet_server_port()") == old.Port
	})
	// Writes still go to the new primary.
	if port := primaryPortThroughProxy(t, ctx, p); port != newPrimary.Port {
		t.Errorf("writes go to port %d, want the new primary %d", port, newPrimary.Port)
	}
	var n int
	if err := r.QueryRow(ctx, "SELECT count(*) FROM acked", pgx.QueryExecModeSimpleProtocol).Scan(&n); err != nil || n != 52 {
		t.Errorf("rows read through the proxy: %d (%v), want 52", n, err)
	}
}
