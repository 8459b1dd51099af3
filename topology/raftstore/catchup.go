package raftstore

import (
	"context"
	"fmt"
	"sync"
	"time"
)

// LeaderVersionFunc asks the cluster's leader, linearizably, for the
// topology version it has committed (the leader's ReadIndex: a Raft
// barrier, then its current version). It returns the version and the
// leader's node ID. The proxy implements it over the admin API, which
// knows the other nodes' addresses; tests call the leader's Store.
type LeaderVersionFunc func(ctx context.Context) (version uint64, leaderID string, err error)

// CatchUpResult says how a node caught up with the cluster.
type CatchUpResult struct {
	// LeaderID is the node that answered the committed version (this
	// node's own ID when it became the leader itself).
	LeaderID string
	// LeaderVersion is the version the leader had committed when asked.
	LeaderVersion uint64
	// StartVersion is the version this node served when CatchUp began
	// (its last applied topology); Version the one it serves now.
	StartVersion, Version uint64
	// Took is how long CatchUp ran.
	Took time.Duration
}

// Restarted reports whether Open found Raft state in DataDir: the node
// was a member before and serves the topology it had applied when it
// stopped, which may be older than the cluster's (see CatchUp).
func (s *Store) Restarted() bool { return s.restarted }

// CatchUp waits until this node's topology includes every change the
// cluster committed before the call, so that a restarted node does not
// route by the topology it had before it stopped while the leader still
// backs off from contacting it (hashicorp/raft retries a follower that
// failed after up to ~10 s).
//
// It asks the leader for its committed version with leaderVersion and then
// waits until this node has applied that version (Current().Version() ≥
// it). A node that becomes the ready leader itself is caught up (its
// post-election Barrier applied every committed entry). Failed questions
// (no leader yet, leader unreachable) are retried every retry interval
// until ctx ends; then CatchUp returns ctx's error wrapped with the last
// failure, and the node keeps serving its last topology (the policy under
// quorum loss). Versions only grow in the one committed history, so
// comparing versions is enough.
func (s *Store) CatchUp(ctx context.Context, leaderVersion LeaderVersionFunc, retry time.Duration) (CatchUpResult, error) {
	res := CatchUpResult{StartVersion: s.Current().Version()}
	start := time.Now()
	done := func() (CatchUpResult, error) {
		res.Version, res.Took = s.Current().Version(), time.Since(start)
		return res, nil
	}
	// The leader's answer arrives on answers; questions run in the
	// background so that becoming leader here ends the wait at once.
	type answer struct {
		v   uint64
		id  string
		err error
	}
	// A question still running when CatchUp returns is cancelled and
	// waited for: no goroutine of CatchUp outlives it.
	answers := make(chan answer, 1)
	askCtx, cancelAsk := context.WithCancel(ctx)
	var asking sync.WaitGroup
	defer asking.Wait()
	defer cancelAsk()
	ask := func() {
		defer asking.Done()
		v, id, err := leaderVersion(askCtx)
		answers <- answer{v, id, err}
	}
	lead := s.LeadershipChanges(ctx)
	asking.Add(1)
	go ask()
	var lastErr error
	for {
		select {
		case ready, ok := <-lead:
			if !ok {
				if ctx.Err() == nil {
					return res, ErrClosed
				}
				lead = nil
				continue
			}
			if ready {
				res.LeaderID, res.LeaderVersion = s.cfg.NodeID, s.Current().Version()
				return done()
			}
		case a := <-answers:
			if a.err == nil {
				res.LeaderID, res.LeaderVersion = a.id, a.v
				if err := s.awaitVersion(ctx, a.v); err != nil {
					return res, fmt.Errorf("raftstore: leader %s committed version %d; this node is at %d: %w",
						a.id, a.v, s.Current().Version(), err)
				}
				return done()
			}
			lastErr = a.err
			t := time.NewTimer(retry)
			select {
			case <-t.C:
				asking.Add(1)
				go ask()
			case <-ctx.Done():
				t.Stop()
			case <-s.stop:
				t.Stop()
				return res, ErrClosed
			}
		case <-ctx.Done():
			if lastErr != nil {
				return res, fmt.Errorf("raftstore: could not learn the leader's committed topology: %w (last error: %v)", ctx.Err(), lastErr)
			}
			return res, fmt.Errorf("raftstore: could not learn the leader's committed topology: %w", ctx.Err())
		case <-s.stop:
			return res, ErrClosed
		}
	}
}

// awaitVersion waits until this node serves version v or newer, or ctx
// ends. A node that becomes leader meets it too: after its Barrier it has
// applied everything committed, v included.
func (s *Store) awaitVersion(ctx context.Context, v uint64) error {
	if s.Current().Version() >= v {
		return nil
	}
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	for snap := range s.hub.watch(wctx) {
		if snap.Version() >= v {
			return nil
		}
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return ErrClosed
}
