// Package pool owns server connections to PostgreSQL backends: dialing and
// authenticating (through pgconn, then taking the raw connection), pools per
// (user, database, backend) with a size limit, a FIFO wait queue with a
// timeout, idle and lifetime limits, health checks of idle connections and
// reset on release.
//
// # Contract
//
// Acquire hands out a *ServerConn for exclusive use; the holder talks to the
// server through sc.Frontend and must give it back exactly once, with
// Release when the server is idle (last ReadyForQuery 'I') or with Discard
// (or MarkBroken then Release) when the protocol state is unknown. Between
// Acquire and Release the holder owns sc.Params, sc.Prepared and sc.Applied;
// they stay with the connection across holders (that is how the session
// layer re-uses prepared statements and avoids re-sending SETs), except that
// Release(sc, true) runs Options.ResetQuery and clears them.
//
// Idle connections are handed out last-in first-out. Before one is handed
// out, a non-blocking peek at its socket (no allocation, one syscall) drops
// connections the server closed or wrote to while idle (e.g. 57P01 on
// restart); one unused for longer than HealthCheckInterval also answers an
// empty query first. Queued callers are served strictly first-in first-out;
// a released connection goes straight to the oldest waiter. A waiter whose
// context ends at the moment it is handed a connection gives it back, so
// nothing leaks. One maintenance goroutine per Pool closes dead, expired
// and long-idle connections (keeping MinIdle) and opens up to MinIdle.
//
// Errors are *Error with the SQLSTATE a client should see: 53300 "pool
// exhausted" on wait timeout (never worded as a server outage), 08001 when
// the server cannot be reached, the server's own code for login failures
// (28P01, 3D000, ...), 57014 when the caller's context ends, 57P01 after
// Close.
//
// Concurrency: Pool and Set are safe for concurrent use. A ServerConn is
// owned by exactly one client session between Acquire and Release; only
// Cancel and MarkBroken may be called by others.
//
// pool must not import proxy.
package pool
