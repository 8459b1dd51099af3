// Package topology defines the cluster's shape as immutable, versioned
// Snapshots (shards, replicas, tables, distributions, range tables, key
// overrides, moves), the commands that change it with their validation, and
// the Store interface (Current, Watch, Apply). topology/raftstore implements
// Store with hashicorp/raft.
//
// topology imports only the standard library.
package topology
