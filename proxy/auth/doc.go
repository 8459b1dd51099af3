// Package auth implements the server side of PostgreSQL client
// authentication for the proxy: SCRAM-SHA-256 (RFC 5802/7677 as PostgreSQL
// uses it, without channel binding), md5, trust, and a cleartext password
// request for passthrough authentication, over a pgproto3.Backend.
//
// Authenticate and RequestCleartextPassword run on the goroutine that owns
// the connection's Backend; they never send AuthenticationOk or an
// ErrorResponse (the caller, package proxy, writes those). Failures a client
// should see are *AuthError values carrying a SQLSTATE.
//
// The only state shared between calls is a bounded cache of SCRAM
// verifiers derived from plain passwords (one PBKDF2 per user and password,
// not per connection); everything is safe for concurrent use.
//
// auth imports only the standard library, golang.org/x/text and pgproto3;
// it does no I/O except on the Backend it is given.
package auth
