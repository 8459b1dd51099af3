// Package proxy is the client-facing edge of shardproxy: the listener, client
// sessions (startup, TLS, authentication, the message loop and transaction
// state), the PostgreSQL wire protocol on both sides, server connection pooling
// (proxy/pool), prepared-statement and session-state tracking for transaction
// pooling, cancellation, and metrics.
//
// # Public API
//
// cmd/shardproxy uses NewServer, Serve/ListenAndServe, Addr, Shutdown and
// Reload. Serve returns ErrServerClosed after Shutdown. Shutdown stops
// accepting, closes idle clients, lets clients inside a transaction finish
// it and then closes them with 57P01; when its context expires everyone left
// gets 57P01. Reload swaps users, auth, TLS and pool settings without
// dropping clients; listen address, node id and shard changes need a restart
// and are only logged.
//
// # Sessions
//
// One goroutine per client (session.run) owns the client connection, its
// read buffer and all session state. Messages are read and relayed as raw
// bytes (msgReader, wire.go); only Parse, Bind, Describe, Close and Query
// bodies are looked into, and from the server only the type byte plus a few
// small messages (ReadyForQuery, CommandComplete, ErrorResponse,
// ParameterStatus). Output to the client is batched and flushed when the
// server has nothing more buffered, at ReadyForQuery, or before the session
// blocks on the client.
//
// Transaction pooling: a session holds no server connection while idle. The
// first message that needs a server acquires one from the pool for
// (user, database, backend) and first brings the connection's session
// settings in line with the client's (SET/RESET in one internal query whose
// responses are consumed). The connection goes back to the pool at a
// ReadyForQuery 'I' when no extended-protocol batch is open, nothing is
// queued for the server and the session is not pinned. Session mode holds
// one connection for the whole session and releases it with the reset query.
//
// Ordering: every forwarded message and every answer the proxy gives itself
// (ParseComplete for a statement the server already has, CloseComplete for
// a statement Close, errors it raises) is an entry in a FIFO in client
// order; drain emits synthetic entries when they reach the head and reads
// the server for the others, so the client sees exactly PostgreSQL's order.
// After an error inside an extended batch the entries up to the next Sync
// are dropped and their optimistic bookkeeping undone in reverse order, as
// PostgreSQL skips those messages.
//
// Prepared statements: each distinct statement (query text + parameter
// OIDs) gets one server-side name "sp_<64-bit hash>" (SQL-level PREPARE:
// "sps_<hash>"), interned process-wide. Clients' names map to these per
// session; statements are prepared lazily on whichever server connection
// serves the next Bind or Describe, tracked in ServerConn.Prepared (an LRU;
// evicted ones are closed on the server). A Parse of a statement some server
// already accepted, from a session holding no server connection, is answered
// without taking one (errors from later schema changes then surface at Bind). Close of
// a statement only forgets the client's name. SQL PREPARE/EXECUTE/DEALLOCATE
// are rewritten to the server names; a one-statement PREPARE or DEALLOCATE
// is answered by the proxy. In a multi-statement string, a PREPARE of a
// statement the server connection already has is preceded by a DEALLOCATE
// of that server name, whose CommandComplete is not shown.
//
// Session state: SET, RESET, RESET ALL, set_config(…, false) and DISCARD ALL
// (seen through proxy/sqlclass on simple queries and Parse texts) change the
// client's wanted settings once the server confirms them and the
// transaction that ran them commits (a rolled-back SET is undone, as in
// PostgreSQL; ROLLBACK TO SAVEPOINT is not tracked). Startup parameters are
// part of the wanted settings and are what RESET returns to.
//
// Pinning: LISTEN, session advisory locks, temporary objects, WITH HOLD
// cursors and set_config with computed arguments keep the server connection
// until DISCARD ALL (UNLISTEN * and DISCARD TEMP remove their reason) or
// disconnect. While a pinned session is idle, a helper goroutine pair
// watches both sockets so notifications reach the client at once.
//
// Cancellation: the BackendKeyData handed to clients is the proxy's own:
// ProcessID = node_id<<20 | session counter (the top 12 bits name the proxy
// node that issued it), SecretKey random. A CancelRequest is forwarded to the
// server connection currently serving that session. A watchdog cancels the
// server query of a client that disconnected while waiting for it.
//
// Failures: a server connection lost between transactions fails only the
// request in flight (the client keeps its session); inside a transaction the
// client gets a FATAL error and is closed. Malformed client input gets a
// FATAL 08P01 and closes that client only.
//
// This is the only package that turns errors into ErrorResponse messages
// (errors.go). It may import planner, router, topology, pgproto3 and pgconn.
// Nothing but cmd imports proxy.
package proxy
