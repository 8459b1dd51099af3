package wire

import (
	"context"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"
)

// RandomBatch returns up to a dozen random extended-protocol messages
// ending with Sync (or a simple Query now and then): valid, misnamed,
// mistyped and out of order, over the statements s1, s2 and the unnamed
// one, the portals p1 and the unnamed one, and a table fz (id int, v text);
// more adds statement texts to choose from.
func RandomBatch(rng *rand.Rand, more ...string) []pgproto3.FrontendMessage {
	queries := append([]string{"SELECT $1::int + 1", "SELECT 1 AS one", "SELEC oops", "SELECT v FROM fz WHERE id = $1",
		"SELECT id, v FROM fz ORDER BY id", "BEGIN", "COMMIT", "ROLLBACK", "", "SELECT 1; SELECT 2",
		"SELECT $1::text, $2::int", "SELECT 1/0", "SAVEPOINT a", "SHOW search_path"}, more...)
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
			if len(msgs) == 0 || IsSync(msgs[len(msgs)-1]) {
				msgs = append(msgs, &pgproto3.Query{String: pick([]string{"SELECT 1", "BEGIN", "ROLLBACK", "COMMIT",
					"SELECT v FROM fz ORDER BY id LIMIT 2", "DEALLOCATE ALL", "SELECT 1/0"})})
			}
		case 11:
			msgs = append(msgs, &pgproto3.Parse{Name: "s1", Query: "SELECT $1::int * 2"}, &pgproto3.Bind{PreparedStatement: "s1",
				Parameters: [][]byte{[]byte("21")}}, &pgproto3.Execute{})
		}
	}
	if len(msgs) == 0 || !IsSync(msgs[len(msgs)-1]) {
		msgs = append(msgs, &pgproto3.Sync{})
	}
	return msgs
}

// IsSync reports whether m ends a batch with a ReadyForQuery.
func IsSync(m pgproto3.FrontendMessage) bool {
	switch m.(type) {
	case *pgproto3.Sync, *pgproto3.Query:
		return true
	}
	return false
}

// Describe lists msgs, one per line, for a failure message.
func Describe(msgs []pgproto3.FrontendMessage) string {
	var b strings.Builder
	for _, m := range msgs {
		fmt.Fprintf(&b, "  %T %+v\n", m, m)
	}
	return b.String()
}

// Same sends msgs to want (PostgreSQL) and got (the proxy) and fails t,
// naming the case with what, when their transcripts differ.
func Same(t testing.TB, want, got *Conn, msgs []pgproto3.FrontendMessage, what string) {
	t.Helper()
	if w, g := want.Run(msgs), got.Run(msgs); strings.Join(g, "\n") != strings.Join(w, "\n") {
		t.Errorf("%s\nmessages:\n%s\nPostgreSQL: %q\nthrough the proxy: %q", what, Describe(msgs), w, g)
	}
}

// Conn is a raw protocol connection that turns answers into transcript
// lines.
type Conn struct {
	t  testing.TB
	c  *pgconn.HijackedConn
	fe *pgproto3.Frontend
}

// Open dials dsn (see Dial) for Run.
func Open(t testing.TB, ctx context.Context, dsn string) *Conn {
	hj := Dial(t, ctx, dsn)
	return &Conn{t: t, c: hj, fe: hj.Frontend}
}

// Run sends msgs and reads until every Sync and Query has had its
// ReadyForQuery (a Flush before a Sync is given time to answer, as a
// client waiting on it would be).
func (w *Conn) Run(msgs []pgproto3.FrontendMessage) []string {
	w.t.Helper()
	var out []string
	readies := 0
	for _, m := range msgs {
		w.fe.Send(m)
		if IsSync(m) {
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
		if line := Line(msg); line != "" {
			out = append(out, line)
		}
	}
	return out
}
