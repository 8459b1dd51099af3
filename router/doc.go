// Package router holds the sharding functions (PostgreSQL-compatible hash,
// range and list) and maps keys to shards over a topology Snapshot. It is
// pure: no I/O, no goroutines, safe for concurrent use.
//
// Two steps, kept apart:
//
//   - value → hash: HashInt8, HashText and HashUUID equal PostgreSQL's
//     hashint8extended(v, 0) (also used for smallint and integer keys, which
//     PostgreSQL hashes identically), hashtextextended(v, 0) (deterministic
//     collations) and uuid_hash_extended(v, 0), bit for bit on
//     little-endian servers; hash_pg_test.go proves it against a real
//     server. KeyFromText, KeyFromBinary and KeyFromParam turn literals and
//     Bind parameters into typed Values. For char(n) keys, strip trailing
//     spaces first (PostgreSQL's bpchar hash ignores them).
//   - key → shard: Router.ShardForKey over one Snapshot: an override first,
//     then the scheme (binary search over the range table, or the list).
//     router.For(snapshot) returns the Router cached on the snapshot.
//
// Errors a client can see (*RouteError, *KeyError) have a SQLState method.
//
// router may import only topology and the standard library.
package router
