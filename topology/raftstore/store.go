package raftstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
	"go.etcd.io/bbolt"

	"github.com/shardproxy/shardproxy/topology"
)

// Store is a topology.Store replicated with Raft. Open makes one; all
// methods are safe for concurrent use.
type Store struct {
	cfg   Config
	log   *slog.Logger
	raft  *raft.Raft
	trans *raft.NetworkTransport
	bolt  *raftboltdb.BoltStore
	hub   *hub
	met   *metrics
	// restarted: Open found Raft state (see Restarted, CatchUp).
	restarted bool

	obsCh    chan raft.Observation
	observer *raft.Observer
	stop     chan struct{} // closed by Shutdown
	done     chan struct{} // closed when the leadership loop exits

	leadMu    sync.Mutex
	ready     bool // leader and caught up (after a Barrier)
	leadSubs  map[chan bool]struct{}
	leadClose bool

	shutOnce sync.Once
	shutErr  error
}

var _ topology.Store = (*Store)(nil)

// Server is one member of the Raft configuration.
type Server struct {
	ID       string `json:"id"`
	Address  string `json:"address"`
	Suffrage string `json:"suffrage"` // "voter", "nonvoter" or "staging"
	Leader   bool   `json:"leader"`
}

// Open starts a Raft node with cfg: it opens (or creates) the log, stable
// store and snapshots in cfg.DataDir, listens on cfg.BindAddr, restores the
// latest snapshot, and bootstraps a one-node cluster when cfg.Bootstrap is
// set and DataDir has no Raft state. It does not wait for an election:
// Current is usable at once — the last topology this node applied before
// it stopped (DataDir/topology.json), else the restored Raft snapshot, else
// topology.Empty() — and Raft replays the log behind it as soon as this
// node learns the commit index from a leader (or becomes one), never
// serving an older version than the one it started with.
func Open(cfg Config) (_ *Store, err error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	logger := cfg.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	logger = logger.With("node", cfg.NodeID)
	hl := newHCLog(logger)

	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("raftstore: data dir: %w", err)
	}
	var closers []func() error
	defer func() {
		if err != nil {
			for i := len(closers) - 1; i >= 0; i-- {
				_ = closers[i]()
			}
		}
	}()

	bolt, err := raftboltdb.New(raftboltdb.Options{
		Path:        filepath.Join(cfg.DataDir, "raft.db"),
		BoltOptions: &bbolt.Options{Timeout: 2 * time.Second},
	})
	if err != nil {
		return nil, fmt.Errorf("raftstore: open %s (is another node using this data dir?): %w",
			filepath.Join(cfg.DataDir, "raft.db"), err)
	}
	closers = append(closers, bolt.Close)

	snaps, err := raft.NewFileSnapshotStoreWithLogger(cfg.DataDir, cfg.RetainSnapshots, hl.Named("snapshots"))
	if err != nil {
		return nil, fmt.Errorf("raftstore: snapshot store: %w", err)
	}

	var adv net.Addr // nil: the listener's address
	if cfg.AdvertiseAddr != "" {
		a, err := advertiseAddr(cfg.AdvertiseAddr)
		if err != nil {
			return nil, fmt.Errorf("raftstore: AdvertiseAddr: %w", err)
		}
		adv = a
	}
	trans, err := raft.NewTCPTransportWithConfig(cfg.BindAddr, adv, &raft.NetworkTransportConfig{
		Logger:  hl.Named("transport"),
		MaxPool: cfg.MaxPool,
		Timeout: cfg.TransportTimeout,
	})
	if err != nil {
		return nil, fmt.Errorf("raftstore: listen on %s: %w", cfg.BindAddr, err)
	}
	closers = append(closers, trans.Close)

	rc := raft.DefaultConfig()
	rc.LocalID = raft.ServerID(cfg.NodeID)
	rc.Logger = hl
	rc.HeartbeatTimeout = cfg.HeartbeatTimeout
	rc.ElectionTimeout = cfg.ElectionTimeout
	rc.LeaderLeaseTimeout = cfg.LeaderLeaseTimeout
	rc.CommitTimeout = cfg.CommitTimeout
	rc.SnapshotInterval = cfg.SnapshotInterval
	rc.SnapshotThreshold = cfg.SnapshotThreshold
	rc.TrailingLogs = cfg.TrailingLogs
	rc.NoLegacyTelemetry = true
	if err := raft.ValidateConfig(rc); err != nil {
		return nil, fmt.Errorf("raftstore: %w", err)
	}

	existing, err := raft.HasExistingState(bolt, bolt, snaps)
	if err != nil {
		return nil, fmt.Errorf("raftstore: read state: %w", err)
	}

	cache := newLastApplied(cfg.DataDir, logger)
	served := topology.Empty()
	if existing {
		if c := cache.load(); c != nil {
			served = c
		}
	}
	s := &Store{
		cfg:       cfg,
		log:       logger,
		trans:     trans,
		bolt:      bolt,
		hub:       newHub(served),
		restarted: existing,
		stop:      make(chan struct{}),
		done:      make(chan struct{}),
		leadSubs:  map[chan bool]struct{}{},
		obsCh:     make(chan raft.Observation, 64),
	}
	r, err := raft.NewRaft(rc, newFSM(s.hub, cache), bolt, bolt, snaps, trans)
	if err != nil {
		return nil, fmt.Errorf("raftstore: start raft: %w", err)
	}
	s.raft = r
	closers = append(closers, func() error { return r.Shutdown().Error() })

	if !existing && cfg.Bootstrap {
		f := r.BootstrapCluster(raft.Configuration{Servers: []raft.Server{{
			Suffrage: raft.Voter, ID: rc.LocalID, Address: trans.LocalAddr(),
		}}})
		switch err := f.Error(); {
		case err == nil:
			logger.Info("raftstore: bootstrapped a new one-node cluster", "addr", trans.LocalAddr())
		case !errors.Is(err, raft.ErrCantBootstrap):
			return nil, fmt.Errorf("raftstore: bootstrap: %w", err)
		}
	} else if !existing {
		logger.Info("raftstore: no Raft state; waiting to be added to a cluster", "addr", trans.LocalAddr())
	}

	s.met = newMetrics(s, cfg.Registerer)
	s.observer = raft.NewObserver(s.obsCh, false, func(o *raft.Observation) bool {
		switch o.Data.(type) {
		case raft.LeaderObservation, raft.RaftState:
			return true
		}
		return false
	})
	r.RegisterObserver(s.observer)
	go s.leadershipLoop()
	return s, nil
}

// Addr returns the Raft address other nodes use to reach this node.
func (s *Store) Addr() string { return string(s.trans.LocalAddr()) }

// NodeID returns this node's ID.
func (s *Store) NodeID() string { return s.cfg.NodeID }

// Current implements topology.Store: the latest snapshot this node has
// applied (one atomic load; never blocks, also without quorum or after
// Shutdown).
func (s *Store) Current() *topology.Snapshot { return s.hub.cur.Load() }

// Watch implements topology.Store: the channel first holds the current
// snapshot, then each newer one this node applies, in version order; a
// slow reader skips to the newest. It is closed when ctx is done or the
// store shuts down.
func (s *Store) Watch(ctx context.Context) <-chan *topology.Snapshot { return s.hub.watch(ctx) }

// Apply implements topology.Store. It returns the new snapshot once the
// command is committed by a quorum and applied here. Errors:
//   - *topology.VersionMismatchError and topology errors (ErrInvalid,
//     ErrNotFound): the command was rejected; state unchanged everywhere;
//   - *NotLeaderError: this node is a follower; send the command to
//     LeaderID;
//   - *NoQuorumError (ErrNoQuorum): no leader within ApplyTimeout, or the
//     leader could not commit; Current keeps serving the last snapshot;
//   - ctx's error, or ErrClosed after Shutdown.
func (s *Store) Apply(ctx context.Context, cmd topology.Command) (*topology.Snapshot, error) {
	start := time.Now()
	payload, err := topology.EncodeCommand(cmd)
	if err != nil {
		s.met.observeApply(start, err)
		return nil, err
	}
	snap, err := s.apply(ctx, entryCommand, payload)
	s.met.observeApply(start, err)
	return snap, err
}

// errApplyTimeout is the context cause when ApplyTimeout expires.
var errApplyTimeout = errors.New("apply timeout")

func (s *Store) apply(ctx context.Context, typ byte, payload []byte) (*topology.Snapshot, error) {
	ctx, cancel := context.WithTimeoutCause(ctx, s.cfg.ApplyTimeout, errApplyTimeout)
	defer cancel()
	if err := s.waitLeader(ctx); err != nil {
		return nil, err
	}
	data := make([]byte, 0, 1+len(payload))
	data = append(append(data, typ), payload...)
	remaining := time.Until(deadlineOf(ctx))
	f := s.raft.Apply(data, remaining)
	done := make(chan struct{})
	go func() { _ = f.Error(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
		if context.Cause(ctx) == errApplyTimeout {
			return nil, s.noQuorum(fmt.Sprintf("write not committed within %s; it may still commit", s.cfg.ApplyTimeout), true)
		}
		return nil, fmt.Errorf("raftstore: %w (the write may still commit)", ctx.Err())
	}
	if err := f.Error(); err != nil {
		return nil, s.mapRaftError(err)
	}
	switch r := f.Response().(type) {
	case *topology.Snapshot:
		return r, nil
	case error:
		return nil, r
	default:
		return nil, fmt.Errorf("raftstore: unexpected FSM response %T", r)
	}
}

func deadlineOf(ctx context.Context) time.Time {
	d, _ := ctx.Deadline() // always set: apply adds ApplyTimeout
	return d
}

// waitLeader returns nil when this node is the leader, *NotLeaderError
// when another node is, and waits while no leader is known (an election
// is running, or there is no quorum) until ctx ends.
func (s *Store) waitLeader(ctx context.Context) error {
	t := time.NewTicker(20 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return ErrClosed
		default:
		}
		if s.raft.State() == raft.Leader {
			return nil
		}
		if addr, id := s.raft.LeaderWithID(); id != "" && string(id) != s.cfg.NodeID {
			return &NotLeaderError{LeaderID: string(id), LeaderAddr: string(addr)}
		}
		select {
		case <-t.C:
		case <-s.stop:
			return ErrClosed
		case <-ctx.Done():
			if context.Cause(ctx) == errApplyTimeout {
				return s.noQuorum(fmt.Sprintf("no leader elected within %s", s.cfg.ApplyTimeout), false)
			}
			return ctx.Err()
		}
	}
}

func (s *Store) noQuorum(reason string, uncertain bool) error {
	return &NoQuorumError{Version: s.Current().Version(), Reason: reason, Uncertain: uncertain}
}

// mapRaftError turns raft's errors into this package's.
func (s *Store) mapRaftError(err error) error {
	switch {
	case errors.Is(err, raft.ErrRaftShutdown):
		return ErrClosed
	case errors.Is(err, raft.ErrNotLeader), errors.Is(err, raft.ErrNotVoter):
		if addr, id := s.raft.LeaderWithID(); id != "" && string(id) != s.cfg.NodeID {
			return &NotLeaderError{LeaderID: string(id), LeaderAddr: string(addr)}
		}
		return s.noQuorum("this node lost leadership and no new leader is known", false)
	case errors.Is(err, raft.ErrLeadershipLost):
		return s.noQuorum("leadership lost before the write committed; it may still commit", true)
	case errors.Is(err, raft.ErrEnqueueTimeout):
		return s.noQuorum("Raft did not accept the write in time", false)
	}
	return fmt.Errorf("raftstore: %w", err)
}

// ReadIndex returns a snapshot that reflects every write committed before
// the call (a linearizable read): it succeeds only on the leader, after a
// Raft barrier. Errors as for Apply.
func (s *Store) ReadIndex(ctx context.Context) (*topology.Snapshot, error) {
	ctx, cancel := context.WithTimeoutCause(ctx, s.cfg.ApplyTimeout, errApplyTimeout)
	defer cancel()
	if err := s.waitLeader(ctx); err != nil {
		return nil, err
	}
	if err := s.wait(ctx, s.raft.Barrier(time.Until(deadlineOf(ctx)))); err != nil {
		return nil, err
	}
	return s.Current(), nil
}

// wait waits for a raft future within ctx and maps its error.
func (s *Store) wait(ctx context.Context, f raft.Future) error {
	done := make(chan struct{})
	go func() { _ = f.Error(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
		if context.Cause(ctx) == errApplyTimeout {
			return s.noQuorum(fmt.Sprintf("not committed within %s", s.cfg.ApplyTimeout), true)
		}
		return ctx.Err()
	}
	if err := f.Error(); err != nil {
		return s.mapRaftError(err)
	}
	return nil
}

// Snapshot makes Raft take a snapshot now and compact its log (normally
// done automatically; see Config.SnapshotThreshold). Nothing new to
// snapshot is not an error.
func (s *Store) Snapshot() error {
	err := s.raft.Snapshot().Error()
	if err == nil || errors.Is(err, raft.ErrNothingNewToSnapshot) {
		return nil
	}
	return s.mapRaftError(err)
}

// Leader returns the current leader's node ID and Raft address as this
// node knows them; empty when no leader is known.
func (s *Store) Leader() (id, addr string) {
	a, i := s.raft.LeaderWithID()
	return string(i), string(a)
}

// IsLeader reports whether this node is the Raft leader right now.
// Leader-only controllers should rather follow LeadershipChanges, which
// reports leadership only once this node has applied every earlier entry.
func (s *Store) IsLeader() bool { return s.raft.State() == raft.Leader }

// State returns the Raft state: "Follower", "Candidate", "Leader" or
// "Shutdown".
func (s *Store) State() string { return s.raft.State().String() }

// Servers returns the latest Raft configuration (committed or not).
func (s *Store) Servers() ([]Server, error) {
	f := s.raft.GetConfiguration()
	if err := f.Error(); err != nil {
		return nil, s.mapRaftError(err)
	}
	_, leader := s.raft.LeaderWithID()
	var out []Server
	for _, sv := range f.Configuration().Servers {
		out = append(out, Server{
			ID:       string(sv.ID),
			Address:  string(sv.Address),
			Suffrage: suffrageName(sv.Suffrage),
			Leader:   sv.ID == leader,
		})
	}
	return out, nil
}

func suffrageName(s raft.ServerSuffrage) string {
	switch s {
	case raft.Voter:
		return "voter"
	case raft.Nonvoter:
		return "nonvoter"
	default:
		return "staging"
	}
}

// AddVoter adds (or re-addresses) a voting member. Leader only
// (*NotLeaderError elsewhere); returns once the configuration change is
// committed.
func (s *Store) AddVoter(ctx context.Context, id, addr string) error {
	return s.membership(ctx, func(timeout time.Duration) raft.Future {
		return s.raft.AddVoter(raft.ServerID(id), raft.ServerAddress(addr), 0, timeout)
	})
}

// AddNonvoter adds a member that receives the log but does not vote.
// Leader only.
func (s *Store) AddNonvoter(ctx context.Context, id, addr string) error {
	return s.membership(ctx, func(timeout time.Duration) raft.Future {
		return s.raft.AddNonvoter(raft.ServerID(id), raft.ServerAddress(addr), 0, timeout)
	})
}

// RemoveServer removes a member (it shuts its Raft down when it learns
// of it). Leader only. Removing an unknown ID is a no-op.
func (s *Store) RemoveServer(ctx context.Context, id string) error {
	return s.membership(ctx, func(timeout time.Duration) raft.Future {
		return s.raft.RemoveServer(raft.ServerID(id), 0, timeout)
	})
}

func (s *Store) membership(ctx context.Context, op func(time.Duration) raft.Future) error {
	ctx, cancel := context.WithTimeoutCause(ctx, s.cfg.ApplyTimeout, errApplyTimeout)
	defer cancel()
	if err := s.waitLeader(ctx); err != nil {
		return err
	}
	return s.wait(ctx, op(time.Until(deadlineOf(ctx))))
}

// Join adds node id at Raft address addr to the cluster with this policy:
// a voter while the cluster has fewer than Config.MaxVoters voters,
// otherwise a non-voter. It is idempotent: a member already known with the
// same address keeps its role; a member with a new address, or another
// member holding addr, is replaced. Leader only. It returns the suffrage
// the node has afterwards ("voter" or "nonvoter").
func (s *Store) Join(ctx context.Context, id, addr string) (string, error) {
	if id == "" || addr == "" {
		return "", errors.New("raftstore: join needs a node ID and a Raft address")
	}
	wctx, cancel := context.WithTimeoutCause(ctx, s.cfg.ApplyTimeout, errApplyTimeout)
	err := s.waitLeader(wctx)
	cancel()
	if err != nil {
		return "", err
	}
	servers, err := s.Servers()
	if err != nil {
		return "", err
	}
	voters := 0
	for _, sv := range servers {
		if sv.ID == id && sv.Address == addr {
			s.log.Debug("raftstore: join: already a member", "joiner", id, "addr", addr)
			return sv.Suffrage, nil
		}
		if sv.ID == id || sv.Address == addr {
			s.log.Info("raftstore: join: replacing stale member", "old_id", sv.ID, "old_addr", sv.Address)
			if err := s.RemoveServer(ctx, sv.ID); err != nil {
				return "", err
			}
			continue
		}
		if sv.Suffrage == "voter" {
			voters++
		}
	}
	if voters < s.cfg.MaxVoters {
		if err := s.AddVoter(ctx, id, addr); err != nil {
			return "", err
		}
		s.log.Info("raftstore: node joined as voter", "joiner", id, "addr", addr)
		return "voter", nil
	}
	if err := s.AddNonvoter(ctx, id, addr); err != nil {
		return "", err
	}
	s.log.Info("raftstore: node joined as non-voter", "joiner", id, "addr", addr)
	return "nonvoter", nil
}

// LeadershipChanges returns a channel for leader-only controllers. It first
// holds whether this node is a ready leader now, then each change: true
// once this node is leader and has applied every earlier entry (after a
// Barrier), false when it loses leadership. Only the latest value is kept
// for a slow reader, so a controller must treat every received true as
// "(re)start from the current state". Closed when ctx is done or the store
// shuts down.
func (s *Store) LeadershipChanges(ctx context.Context) <-chan bool {
	ch := make(chan bool, 1)
	s.leadMu.Lock()
	ch <- s.ready
	if s.leadClose {
		close(ch)
		s.leadMu.Unlock()
		return ch
	}
	s.leadSubs[ch] = struct{}{}
	s.leadMu.Unlock()
	context.AfterFunc(ctx, func() {
		s.leadMu.Lock()
		defer s.leadMu.Unlock()
		if _, ok := s.leadSubs[ch]; ok {
			delete(s.leadSubs, ch)
			close(ch)
		}
	})
	return ch
}

func (s *Store) setReady(v bool) {
	s.leadMu.Lock()
	defer s.leadMu.Unlock()
	if s.ready == v {
		return
	}
	s.ready = v
	for ch := range s.leadSubs {
		select {
		case ch <- v:
		default:
			select {
			case <-ch:
			default:
			}
			ch <- v
		}
	}
}

// leadershipLoop follows Raft's state changes: on becoming leader it runs a
// Barrier (so the FSM holds every earlier entry), seeds Config.Initial into
// a version-0 topology, and then reports leadership.
func (s *Store) leadershipLoop() {
	defer close(s.done)
	lastLeader := ""
	check := func() {
		if id, addr := s.Leader(); id != lastLeader {
			lastLeader = id
			if id != "" {
				s.log.Info("raftstore: leader", "leader", id, "leader_addr", addr, "term", s.raft.CurrentTerm())
			} else {
				s.log.Info("raftstore: no leader", "term", s.raft.CurrentTerm())
			}
		}
		if s.raft.State() != raft.Leader {
			s.setReady(false)
			return
		}
		s.leadMu.Lock()
		ready := s.ready
		s.leadMu.Unlock()
		if ready {
			return
		}
		if err := s.raft.Barrier(s.cfg.ApplyTimeout).Error(); err != nil {
			s.log.Warn("raftstore: barrier after election failed", "err", err)
			return // retried on the next tick while still leader
		}
		s.seedInitial()
		if s.raft.State() == raft.Leader {
			s.setReady(true)
		}
	}
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-s.obsCh:
		case <-tick.C:
		}
		check()
	}
}

// seedInitial applies Config.Initial through the log when the topology is
// still at version 0. The FSM ignores it if another node seeded first.
func (s *Store) seedInitial() {
	if s.cfg.Initial == nil || s.Current().Version() != 0 {
		return
	}
	b, err := json.Marshal(s.cfg.Initial)
	if err != nil {
		s.log.Error("raftstore: encode initial topology", "err", err)
		return
	}
	snap, err := s.apply(context.Background(), entryInitial, b)
	switch {
	case err == nil:
		s.log.Info("raftstore: seeded initial topology", "version", snap.Version())
	case errors.Is(err, ErrAlreadyInitialized):
	default:
		s.log.Warn("raftstore: seeding initial topology failed; will retry as leader", "err", err)
	}
}

// Shutdown stops the node: leaves Raft (without removing itself from the
// configuration), closes the transport, the log store and every watch and
// leadership channel. Idempotent; later calls return the first result.
// Current keeps returning the last snapshot.
func (s *Store) Shutdown() error {
	s.shutOnce.Do(func() {
		close(s.stop)
		var errs []error
		// Raft first: a Barrier or Apply the leadership loop is waiting on
		// then fails at once with ErrRaftShutdown.
		if err := s.raft.Shutdown().Error(); err != nil {
			errs = append(errs, fmt.Errorf("raft: %w", err))
		}
		<-s.done
		s.raft.DeregisterObserver(s.observer)
		if err := s.trans.Close(); err != nil {
			errs = append(errs, fmt.Errorf("transport: %w", err))
		}
		if err := s.bolt.Close(); err != nil {
			errs = append(errs, fmt.Errorf("log store: %w", err))
		}
		s.met.unregister()
		s.hub.close()
		s.leadMu.Lock()
		s.leadClose = true
		s.ready = false
		for ch := range s.leadSubs {
			delete(s.leadSubs, ch)
			close(ch)
		}
		s.leadMu.Unlock()
		s.shutErr = errors.Join(errs...)
	})
	return s.shutErr
}

// Status is a point-in-time view of this node for status pages (shardctl
// status, the admin API).
type Status struct {
	NodeID          string        `json:"node_id"`
	Addr            string        `json:"addr"`
	State           string        `json:"state"` // Follower, Candidate, Leader, Shutdown
	LeaderID        string        `json:"leader_id"`
	LeaderAddr      string        `json:"leader_addr"`
	Term            uint64        `json:"term"`
	LastIndex       uint64        `json:"last_index"`
	CommitIndex     uint64        `json:"commit_index"`
	AppliedIndex    uint64        `json:"applied_index"`
	LastContact     time.Duration `json:"last_contact_ns"` // since the leader was last heard; 0 on the leader or if never
	TopologyVersion uint64        `json:"topology_version"`
	Servers         []Server      `json:"servers"`
}

// Status returns this node's Raft status. Servers is left empty when the
// configuration cannot be read (after Shutdown).
func (s *Store) Status() Status {
	st := Status{
		NodeID:          s.cfg.NodeID,
		Addr:            s.Addr(),
		State:           s.State(),
		Term:            s.raft.CurrentTerm(),
		LastIndex:       s.raft.LastIndex(),
		CommitIndex:     s.raft.CommitIndex(),
		AppliedIndex:    s.raft.AppliedIndex(),
		TopologyVersion: s.Current().Version(),
	}
	st.LeaderID, st.LeaderAddr = s.Leader()
	if lc := s.raft.LastContact(); !lc.IsZero() && s.raft.State() != raft.Leader {
		st.LastContact = time.Since(lc)
	}
	st.Servers, _ = s.Servers()
	return st
}
