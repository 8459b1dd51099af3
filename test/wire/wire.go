package wire

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"
)

// Line is msg's transcript line: rows as quoted values, row descriptions
// as name/type OID/format per column (table OIDs left out: they differ
// between servers), tags, SQLSTATEs, parameter types, transaction status;
// other messages by type. Notices and parameter changes give "" (left
// out of transcripts).
func Line(msg pgproto3.BackendMessage) string {
	switch m := msg.(type) {
	case *pgproto3.DataRow:
		vals := make([]string, len(m.Values))
		for i, v := range m.Values {
			vals[i] = fmt.Sprintf("%q", v)
		}
		return "row " + strings.Join(vals, ",")
	case *pgproto3.RowDescription:
		names := make([]string, len(m.Fields))
		for i, f := range m.Fields {
			names[i] = fmt.Sprintf("%s/%d/%d", f.Name, f.DataTypeOID, f.Format)
		}
		return "desc " + strings.Join(names, ",")
	case *pgproto3.ParameterDescription:
		return fmt.Sprintf("params %v", m.ParameterOIDs)
	case *pgproto3.CommandComplete:
		return "tag " + string(m.CommandTag)
	case *pgproto3.ErrorResponse:
		return "error " + m.Code
	case *pgproto3.ReadyForQuery:
		return "ready " + string(m.TxStatus)
	case *pgproto3.NoticeResponse, *pgproto3.ParameterStatus:
		return ""
	}
	return fmt.Sprintf("%T", msg)
}

// Dial connects to dsn and takes the connection over for raw messages;
// it is closed when the test ends.
func Dial(t testing.TB, ctx context.Context, dsn string) *pgconn.HijackedConn {
	t.Helper()
	pc, err := pgconn.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	hj, err := pc.Hijack()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { hj.Conn.Close() })
	return hj
}
