package proxy

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/shardproxy/shardproxy/proxy/config"
	"github.com/shardproxy/shardproxy/test/wire"
)

// TestExtendedProtocolDifferential sends seeded random sequences of
// extended-protocol messages — valid, misnamed, mistyped, out of order,
// with and without Flush, inside and outside transaction blocks — to
// PostgreSQL and through the proxy (transaction pooling, a pool smaller
// than the clients so server connections change hands between batches),
// and requires the same answers: message types, SQLSTATEs, rows, column
// names and types, transaction status. A proxy that hung, answered out of
// order or left a connection in a wrong state fails here. Statement names
// inside error texts are not compared (the proxy keeps its own names on
// the servers); SQLSTATEs are.
func TestExtendedProtocolDifferential(t *testing.T) {
	px := startProxy(t, func(c *config.Config) { c.Pool.Size = 2 })
	direct := testCluster.Shards[0].Primary.DSN("postgres")
	ctx := ctx10(t)
	admin := connect(t, direct, pgx.QueryExecModeSimpleProtocol)
	for _, sql := range []string{"DROP TABLE IF EXISTS fz", "CREATE TABLE fz (id int PRIMARY KEY, v text)",
		"INSERT INTO fz SELECT g, 'v' || g FROM generate_series(1, 5) g"} {
		if _, err := admin.Exec(ctx, sql); err != nil {
			t.Fatal(err)
		}
	}
	// Other clients keep the pool's two server connections busy at times,
	// so the fuzzed client's batches land on either connection.
	other := connect(t, px.dsn, pgx.QueryExecModeCacheStatement)
	const clients, sequences = 8, 300
	for c := 0; c < clients; c++ {
		seed := uint64(c + 1)
		t.Run(fmt.Sprintf("seed%d", seed), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(seed, 7))
			ref := wire.Open(t, ctx, direct)
			via := wire.Open(t, ctx, px.dsn)
			for i := 0; i < sequences; i++ {
				msgs := wire.RandomBatch(rng)
				if i%7 == 3 {
					if _, err := other.Exec(ctx, "SELECT count(*) FROM fz"); err != nil {
						t.Fatal(err)
					}
				}
				want := ref.Run(msgs)
				got := via.Run(msgs)
				if strings.Join(got, "\n") != strings.Join(want, "\n") {
					t.Fatalf("sequence %d differs\nmessages:\n%s\nPostgreSQL:\n%s\nthrough the proxy:\n%s",
						i, wire.Describe(msgs), strings.Join(want, "\n"), strings.Join(got, "\n"))
				}
				if len(want) > 0 && strings.HasPrefix(want[len(want)-1], "closed") {
					return
				}
			}
		})
	}
}
