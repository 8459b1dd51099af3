// Package router holds the sharding functions (PostgreSQL-compatible hash,
// range and list) and maps keys to shards over a topology Snapshot. It is
// pure: no I/O, no goroutines, safe for concurrent use.
//
// router may import only topology and the standard library.
package router
