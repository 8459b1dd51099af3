// Package raftstore implements topology.Store on hashicorp/raft, so every
// proxy of a cluster routes by the same topology.
//
// # Writes
//
// The FSM is the only writer of topology. Every change is a Raft log entry
// `[type byte][payload]`: entryCommand carries a topology.Command
// (topology.EncodeCommand), entryInitial a whole snapshot that seeds a fresh
// cluster (applied only while the topology is still at version 0). The FSM
// applies a command with topology.ApplyCommand to the current snapshot; the
// result is stored in an atomic pointer and handed to watchers. Business
// errors (topology.ErrVersionMismatch, ErrInvalid, ErrNotFound) come back
// through the ApplyFuture's response and leave the state unchanged on every
// replica. A committed entry that cannot be decoded panics: a replica must
// stop rather than diverge.
//
// Store.Apply acknowledges a write only after Raft committed and applied
// it. On a follower it returns *NotLeaderError naming the leader (the admin
// API forwards there). Without a quorum it fails within Config.ApplyTimeout
// with a *NoQuorumError (errors.Is ErrNoQuorum) while Current keeps serving
// the last snapshot: routing never depends on the quorum.
//
// # Membership
//
// A node started with Config.Bootstrap and an empty DataDir forms a
// one-node cluster of itself and, once leader, seeds it with
// Config.Initial. Other nodes start without Bootstrap and are added by the
// leader with Join (up to Config.MaxVoters voters, then non-voters),
// AddVoter or AddNonvoter. DataDir keeps the Raft log and stable store
// (raft.db, BoltDB), snapshots (snapshots/) and the last applied topology
// (topology.json, a cache), so a restart resumes with the same topology
// and membership, and serves the topology it had even before it reaches a
// quorum again.
//
// # Catching up after a restart
//
// That served topology may miss changes committed while the node was down,
// and the leader may take seconds to reach it (Raft backs off retries to a
// failed follower). Restarted reports that Open found Raft state; CatchUp
// then waits until the node has applied the version the leader had
// committed when asked (a LeaderVersionFunc the caller provides, e.g. the
// leader's ReadIndex over the admin API), or until the node is the ready
// leader itself. The proxy accepts clients only afterwards, or after a
// bounded wait when no leader is reachable.
//
// # Concurrency
//
// All methods are safe for concurrent use. Current is one atomic load and
// never blocks. Watch channels never block the FSM: a slow reader skips to
// the newest snapshot. Shutdown is idempotent; afterwards Current still
// returns the last snapshot, writes fail with ErrClosed and watch channels
// are closed.
//
// raftstore imports topology, hashicorp/*, bbolt and prometheus only.
package raftstore
