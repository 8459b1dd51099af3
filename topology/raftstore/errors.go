package raftstore

import (
	"errors"
	"fmt"
)

var (
	// ErrNotLeader matches *NotLeaderError: the write or membership change
	// must be sent to the leader.
	ErrNotLeader = errors.New("not the Raft leader")
	// ErrNoQuorum matches *NoQuorumError: the cluster cannot commit writes
	// right now; topology is read-only.
	ErrNoQuorum = errors.New("no Raft quorum")
	// ErrClosed is returned by writes after Shutdown.
	ErrClosed = errors.New("raftstore: store is shut down")
	// ErrAlreadyInitialized is the response to an initial-snapshot entry
	// when the topology already has a version (another node seeded it
	// first). It is harmless.
	ErrAlreadyInitialized = errors.New("raftstore: topology already initialised")
)

// NotLeaderError is returned by writes and membership changes on a node
// that is not the leader while a leader is known. LeaderAddr is the
// leader's Raft address, LeaderID its node ID; callers map the ID to the
// leader's admin API to forward the request.
type NotLeaderError struct {
	LeaderID   string
	LeaderAddr string
}

func (e *NotLeaderError) Error() string {
	return fmt.Sprintf("not the Raft leader: send topology writes to the leader %s (%s)", e.LeaderID, e.LeaderAddr)
}

// Is matches ErrNotLeader.
func (e *NotLeaderError) Is(target error) bool { return target == ErrNotLeader }

// NoQuorumError says a write could not be committed because the cluster
// has no quorum (no leader could be found, or the leader could not reach a
// majority). Version is the topology version this node keeps routing
// with. Reason says what happened; when Uncertain is set the write was
// handed to Raft and may still commit later (check the version before
// retrying a command without ExpectVersion).
type NoQuorumError struct {
	Version   uint64
	Reason    string
	Uncertain bool
}

func (e *NoQuorumError) Error() string {
	return fmt.Sprintf("topology is read-only: no Raft quorum (%s); routing continues with version %d", e.Reason, e.Version)
}

// Is matches ErrNoQuorum.
func (e *NoQuorumError) Is(target error) bool { return target == ErrNoQuorum }
