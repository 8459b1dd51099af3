package pool

import (
	"errors"
	"os"
	"sync/atomic"
	"time"
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
// connection the check cannot run on is marked broken (Release discards
// it).
func (p *Pool) verifyStmtCache(sc *ServerConn) {
	names, err := sc.queryColumn("SELECT name FROM pg_prepared_statements", 5*time.Second)
	var serverErr *Error
	if errors.As(err, &serverErr) {
		return // e.g. a cancel meant for the previous query arrived late: nothing to compare
	}
	if err != nil {
		sc.MarkBroken()
		return
	}
	onServer := make(map[string]bool, len(names))
	for _, n := range names {
		onServer[n] = true
	}
	for _, name := range sc.Prepared.Names() {
		if !onServer[name] {
			preparedDrift.Add(1)
			p.logger.Error("prepared statement cache drift: cached but not on the server", "pid", sc.PID, "statement", name)
		}
	}
}
