// Package admin is shardproxy's HTTP admin API, mounted on the admin
// listener next to /metrics: cluster status with shard health, shards,
// tables, range tables with per-range row counts, key lookups, the key
// directory (overrides), Raft membership and replica failover
// (failover.go: fence, promote, PromoteReplica, repoint; also the proxy's
// automatic failover hook AutoFailover), adding a checked standby as a
// replica, e.g. a rewound old primary (rejoin.go). shardctl is its client
// (Client in this package); docs/admin.md describes the endpoints.
//
// # Writes and the leader
//
// Every write goes through topology.Store.Apply and is acknowledged only
// after Raft committed it. A write that reaches a follower is forwarded
// over HTTP to the leader's admin API (one hop at most). Followers find the
// leader's admin URL in a small directory of node ID → admin URL that
// travels with joins and is synchronised between nodes in the background
// (Server.Run) and kept in the Raft data directory across restarts. Reads
// are answered from the node's own snapshot, which trails the leader by
// at most a heartbeat or so; every answer carries its topology version.
//
// # Authentication
//
// With a token (config admin_token) every /v1 request needs
// "Authorization: Bearer <token>"; nodes forward the caller's header, so
// every proxy of a cluster must share the token. Without a token /v1
// answers loopback clients only. /healthz and /readyz are always open.
//
// # Concurrency
//
// A Server is safe for concurrent use; handlers hold no locks while they
// talk to Raft or PostgreSQL. Run owns the background peer sync.
//
// admin imports topology, topology/raftstore, router, pgx and prometheus;
// it does not import package proxy (cmd wires the two together).
package admin
