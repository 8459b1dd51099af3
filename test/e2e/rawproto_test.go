package e2e

import (
	"context"
	"fmt"
	"testing"

	"github.com/jackc/pgx/v5/pgproto3"
)

// rawRunner connects to dsn for hand-written protocol messages (closed
// when the test ends; see wireScript for whole transcripts). The returned
// run sends msgs and reads up to
// ReadyForQuery: the rows' first column, and the other messages as
// kinds — "suspended@<rows so far>", command tags, "error <SQLSTATE>",
// "ready <status>".
func rawRunner(t *testing.T, ctx context.Context, dsn string) func(msgs ...pgproto3.FrontendMessage) (rows []string, kinds []string) {
	t.Helper()
	fe := newWireScript(t, ctx, dsn).fe
	return func(msgs ...pgproto3.FrontendMessage) (rows []string, kinds []string) {
		for _, m := range msgs {
			fe.Send(m)
		}
		if err := fe.Flush(); err != nil {
			t.Fatal(err)
		}
		for {
			msg, err := fe.Receive()
			if err != nil {
				t.Fatal(err)
			}
			switch m := msg.(type) {
			case *pgproto3.DataRow:
				rows = append(rows, string(m.Values[0]))
			case *pgproto3.PortalSuspended:
				kinds = append(kinds, fmt.Sprintf("suspended@%d", len(rows)))
			case *pgproto3.CommandComplete:
				kinds = append(kinds, string(m.CommandTag))
			case *pgproto3.ErrorResponse:
				kinds = append(kinds, "error "+m.Code)
			case *pgproto3.ReadyForQuery:
				kinds = append(kinds, "ready "+string(m.TxStatus))
				return rows, kinds
			}
		}
	}
}
