// Package pool owns server connections to PostgreSQL backends: dialing and
// authenticating (through pgconn, then taking the raw connection), pools per
// (user, database, backend) with a size limit, a FIFO wait queue with a
// timeout, idle and lifetime limits, health checks of idle connections and
// reset on release.
//
// Concurrency: a Pool is safe for concurrent use. A ServerConn is owned by
// exactly one client session between Acquire and Release.
//
// pool must not import proxy.
package pool
