package proxy

import (
	"context"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"

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
			ref := openWire(t, ctx, direct)
			via := openWire(t, ctx, px.dsn)
			for i := 0; i < sequences; i++ {
				msgs := fuzzBatch(rng)
				if i%7 == 3 {
					if _, err := other.Exec(ctx, "SELECT count(*) FROM fz"); err != nil {
						t.Fatal(err)
					}
				}
				want := ref.run(msgs)
				got := via.run(msgs)
				if strings.Join(got, "\n") != strings.Join(want, "\n") {
					t.Fatalf("sequence %d differs\nmessages:\n%s\nPostgreSQL:\n%s\nthrough the proxy:\n%s",
						i, describeMsgs(msgs), strings.Join(want, "\n"), strings.Join(got, "\n"))
				}
				if len(want) > 0 && strings.HasPrefix(want[len(want)-1], "closed") {
					return
				}
			}
		})
	}
}

// fuzzBatch returns up to a dozen random messages ending with Sync (or a
// simple Query now and then).
func fuzzBatch(rng *rand.Rand) []pgproto3.FrontendMessage {
	queries := []string{"SELECT $1::int + 1", "SELECT 1 AS one", "SELEC oops", "SELECT v FROM fz WHERE id = $1",
		"SELECT id, v FROM fz ORDER BY id", "BEGIN", "COMMIT", "ROLLBACK", "", "SELECT 1; SELECT 2",
		"SELECT $1::text, $2::int", "SELECT 1/0", "SAVEPOINT a", "SHOW search_path"}
	stmts := []string{"", "s1", "s2", "nope"}
	portals := []string{"", "p1"}
	pick := func(xs []string) string { return xs[rng.IntN(len(xs))] }
	param := func() []byte {
		switch rng.IntN(5) {
		case 0:
			return nil
		case 1:
			return []byte("abc")
		case 2:
			return binary.BigEndian.AppendUint32(nil, uint32(rng.IntN(7)))
		default:
			return []byte(fmt.Sprint(rng.IntN(7)))
		}
	}
	target := func() (byte, string) { // of a Describe or Close
		if rng.IntN(2) == 0 {
			return 'P', pick(portals)
		}
		return 'S', pick(stmts)
	}
	var msgs []pgproto3.FrontendMessage
	n := 1 + rng.IntN(10)
	for i := 0; i < n; i++ {
		switch rng.IntN(12) {
		case 0, 1:
			p := &pgproto3.Parse{Name: pick(stmts[:3]), Query: pick(queries)}
			if rng.IntN(3) == 0 {
				p.ParameterOIDs = []uint32{23}
			}
			msgs = append(msgs, p)
		case 2, 3:
			b := &pgproto3.Bind{DestinationPortal: pick(portals), PreparedStatement: pick(stmts)}
			for k := rng.IntN(3); k > 0; k-- {
				b.Parameters = append(b.Parameters, param())
			}
			if rng.IntN(3) == 0 {
				b.ParameterFormatCodes = []int16{int16(rng.IntN(2))}
			}
			if rng.IntN(3) == 0 {
				b.ResultFormatCodes = []int16{int16(rng.IntN(2))}
			}
			msgs = append(msgs, b)
		case 4:
			kind, name := target()
			msgs = append(msgs, &pgproto3.Describe{ObjectType: kind, Name: name})
		case 5, 6:
			msgs = append(msgs, &pgproto3.Execute{Portal: pick(portals), MaxRows: uint32(rng.IntN(2) * (1 + rng.IntN(2)))})
		case 7:
			kind, name := target()
			msgs = append(msgs, &pgproto3.Close{ObjectType: kind, Name: name})
		case 8:
			msgs = append(msgs, &pgproto3.Flush{})
		case 9:
			msgs = append(msgs, &pgproto3.Sync{})
		case 10:
			if len(msgs) == 0 || isSync(msgs[len(msgs)-1]) {
				msgs = append(msgs, &pgproto3.Query{String: pick([]string{"SELECT 1", "BEGIN", "ROLLBACK", "COMMIT",
					"SELECT v FROM fz ORDER BY id LIMIT 2", "DEALLOCATE ALL", "SELECT 1/0"})})
			}
		case 11:
			msgs = append(msgs, &pgproto3.Parse{Name: "s1", Query: "SELECT $1::int * 2"}, &pgproto3.Bind{PreparedStatement: "s1",
				Parameters: [][]byte{[]byte("21")}}, &pgproto3.Execute{})
		}
	}
	if len(msgs) == 0 || !isSync(msgs[len(msgs)-1]) {
		msgs = append(msgs, &pgproto3.Sync{})
	}
	return msgs
}

func isSync(m pgproto3.FrontendMessage) bool {
	switch m.(type) {
	case *pgproto3.Sync, *pgproto3.Query:
		return true
	}
	return false
}

func describeMsgs(msgs []pgproto3.FrontendMessage) string {
	var b strings.Builder
	for _, m := range msgs {
		fmt.Fprintf(&b, "  %T %+v\n", m, m)
	}
	return b.String()
}

// wireConn is a raw protocol connection that turns answers into
// transcript lines.
type wireConn struct {
	t  *testing.T
	c  *pgconn.HijackedConn
	fe *pgproto3.Frontend
}

func openWire(t *testing.T, ctx context.Context, dsn string) *wireConn {
	hj := wire.Dial(t, ctx, dsn)
	return &wireConn{t: t, c: hj, fe: hj.Frontend}
}

// run sends msgs and reads until every Sync and Query has had its
// ReadyForQuery (a Flush before a Sync is given time to answer, as a
// client waiting on it would be).
func (w *wireConn) run(msgs []pgproto3.FrontendMessage) []string {
	w.t.Helper()
	var out []string
	readies := 0
	for _, m := range msgs {
		w.fe.Send(m)
		if isSync(m) {
			readies++
		}
	}
	if err := w.fe.Flush(); err != nil {
		return []string{"closed: " + err.Error()}
	}
	_ = w.c.Conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	defer w.c.Conn.SetReadDeadline(time.Time{})
	for readies > 0 {
		msg, err := w.fe.Receive()
		if err != nil {
			return append(out, "closed: "+err.Error())
		}
		if _, ok := msg.(*pgproto3.ReadyForQuery); ok {
			readies--
		}
		if line := wire.Line(msg); line != "" {
			out = append(out, line)
		}
	}
	return out
}
