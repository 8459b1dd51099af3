// Package topology defines the cluster's shape as immutable, versioned
// Snapshots (shards, replicas, tables, distributions, range tables, key
// overrides, moves), the commands that change it with their validation, and
// the Store interface (Current, Watch, Apply). topology/raftstore implements
// Store with hashicorp/raft; StaticStore is the in-memory implementation for
// static-config mode and tests.
//
// # Model
//
// A Shard is a primary "host:port" with replicas, a region label and a
// state. A Table (name schema-qualified and lower-case, see QualifyName) is
// Distributed (key column + distribution) or Reference (copy on every
// shard); tables that are not listed are "other" and live on the
// DefaultShard. A Distribution is a colocation group with a Scheme (Hash,
// RangeScheme, List), a KeyType (Int, Text, UUID) and, per scheme, a range
// table, text ranges or list values, plus per-key Overrides that win over
// the scheme. Keys in ListValues and Overrides are canonical text
// (CanonicalKey).
//
// Hash range tables are over the int64 results of PostgreSQL's
// hash*extended(key, 0) (computed by package router) and cover
// [MinInt64, MaxInt64] exactly once. Their initial layout is a
// consistent-hash ring (HashLayout); AddShardLayout adds a shard taking
// about 1/N of the space and moving nothing between existing shards.
// Natural-key range tables use Range{Lo, Hi} for int keys and
// TextRange{From, To} (byte order) for text and uuid keys; they may have
// gaps.
//
// # Changing it
//
// Snapshots never change. Builder, Build (from a config Spec),
// DecodeSnapshot and ApplyCommand make new ones, each validated
// (Snapshot.Validate). Commands are plain data with a type tag
// (EncodeCommand/DecodeCommand), deterministic, and carry an ExpectVersion
// for compare-and-swap (ErrVersionMismatch). Every successful command
// increments the version by one.
//
// # Concurrency
//
// Snapshots are safe for concurrent use; getters return copies. A Store's
// Current is one atomic load. Routing code derives its indexes once per
// snapshot (Snapshot.Memo; see router.For).
//
// topology imports only the standard library.
package topology
