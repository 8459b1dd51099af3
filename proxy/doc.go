// Package proxy is the client-facing edge of shardproxy: the listener, client
// sessions (startup, TLS, authentication, the message loop and transaction
// state), the PostgreSQL wire protocol on both sides, server connection pooling
// (proxy/pool), prepared-statement and session-state tracking for transaction
// pooling, cancellation, the admin console, and metrics.
//
// Concurrency: one goroutine per client connection owns that client's
// pgproto3.Backend and session state; pools are safe for concurrent use.
// Messages received from pgproto3 are copied before the next Receive.
//
// This is the only package that turns errors into ErrorResponse messages.
// It may import planner, router, topology, pgproto3 and pgconn. Nothing but
// cmd imports proxy.
package proxy
