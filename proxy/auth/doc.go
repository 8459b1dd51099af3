// Package auth implements the server side of PostgreSQL client
// authentication for the proxy: SCRAM-SHA-256 (RFC 5802/7677 as PostgreSQL
// uses it), md5 and trust, over a pgproto3.Backend. It holds no state between
// calls and is safe for concurrent use.
package auth
