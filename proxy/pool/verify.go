package pool

import (
	"os"
	"slices"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"
)

// Prepared-statement verification, for tests and debugging: with it on
// (SetVerifyPrepared, or SHARDPROXY_VERIFY_PREPARED=1 in the environment),
// every connection released to a pool is asked for pg_prepared_statements,
// and each statement its StmtCache lists but the server lacks is counted
// (PreparedDrift) and logged. Such drift makes a later client's Bind fail
// with 26000; it is a proxy bug. One extra round trip per release.

var (
	verifyPrepared atomic.Bool
	preparedDrift  atomic.Int64
)

func init() { verifyPrepared.Store(os.Getenv("SHARDPROXY_VERIFY_PREPARED") != "") }

// SetVerifyPrepared turns the verification on or off for every pool.
func SetVerifyPrepared(on bool) { verifyPrepared.Store(on) }

// PreparedDrift returns how many cached statements released connections
// lacked on their server since the process started.
func PreparedDrift() int64 { return preparedDrift.Load() }

// verifyStmtCache compares sc's StmtCache with the server's statements. A
// connection that fails the check is marked broken (Release discards it).
func (p *Pool) verifyStmtCache(sc *ServerConn) {
	if err := sc.Conn.SetDeadline(time.Now().Add(5 * time.Second)); err != nil {
		sc.MarkBroken()
		return
	}
	sc.queryMsg.String = "SELECT name FROM pg_prepared_statements"
	sc.Frontend.SendQuery(&sc.queryMsg)
	if err := sc.Frontend.Flush(); err != nil {
		sc.MarkBroken()
		return
	}
	var onServer []string
	failed := false // e.g. a cancel meant for the previous query arrived late: nothing to compare
	for {
		msg, err := sc.Frontend.Receive()
		if err != nil {
			sc.MarkBroken()
			return
		}
		switch m := msg.(type) {
		case *pgproto3.DataRow:
			onServer = append(onServer, string(m.Values[0]))
		case *pgproto3.ErrorResponse:
			failed = true
		case *pgproto3.ReadyForQuery:
			if err := sc.Conn.SetDeadline(time.Time{}); err != nil {
				sc.MarkBroken()
				return
			}
			if failed {
				return
			}
			for _, name := range sc.Prepared.Names() {
				if !slices.Contains(onServer, name) {
					preparedDrift.Add(1)
					p.logger.Error("prepared statement cache drift: cached but not on the server", "pid", sc.PID, "statement", name)
				}
			}
			return
		}
	}
}
