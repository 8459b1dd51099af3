package raftstore

import (
	"encoding/json"
	"fmt"
	"io"
	"sync/atomic"

	"github.com/hashicorp/raft"

	"github.com/shardproxy/shardproxy/topology"
)

// Log entry types: the first byte of every raft.LogCommand entry. Part of
// the on-disk format: never renumber.
const (
	// entryCommand: payload is topology.EncodeCommand(cmd).
	entryCommand byte = 1
	// entryInitial: payload is a snapshot's JSON; applied only while the
	// topology is at version 0, otherwise answered with
	// ErrAlreadyInitialized.
	entryInitial byte = 2
)

// snapshotFormat versions the FSM snapshot file.
const snapshotFormat = 1

// fsmSnapshotFile is the JSON document Persist writes.
type fsmSnapshotFile struct {
	Format   int             `json:"format"`
	Topology json.RawMessage `json:"topology"`
}

// fsm is the only writer of the topology. Raft calls Apply, ApplyBatch,
// Snapshot and Restore from one goroutine (Persist may run concurrently
// with Apply).
//
// state is the FSM's own state, the input of the next command. What the
// node serves (hub) is the same once the FSM has caught up; right after
// Open the hub may serve the newer last-applied cache instead (see
// lastApplied), and offer keeps it from going back.
type fsm struct {
	state atomic.Pointer[topology.Snapshot]
	hub   *hub
	cache *lastApplied // nil: no cache (tests)
}

var _ raft.BatchingFSM = (*fsm)(nil)

func newFSM(h *hub, cache *lastApplied) *fsm {
	f := &fsm{hub: h, cache: cache}
	f.state.Store(topology.Empty())
	return f
}

// set makes next the FSM state and offers it to the hub.
func (f *fsm) set(next *topology.Snapshot) {
	f.state.Store(next)
	f.hub.offer(next)
}

// ApplyBatch implements raft.BatchingFSM: entries are applied one by one,
// the last-applied cache is written once per batch.
func (f *fsm) ApplyBatch(logs []*raft.Log) []any {
	out := make([]any, len(logs))
	before := f.state.Load()
	for i, l := range logs {
		if l.Type == raft.LogCommand {
			out[i] = f.apply(l)
		}
	}
	if now := f.state.Load(); now != before && f.cache != nil {
		f.cache.store(now)
	}
	return out
}

// applyHandlers dispatches entries by type byte. Each returns the value
// the ApplyFuture's Response yields: the new *topology.Snapshot, or an
// error that left the state unchanged.
var applyHandlers = map[byte]func(f *fsm, index uint64, payload []byte) any{
	entryCommand: (*fsm).applyCommand,
	entryInitial: (*fsm).applyInitial,
}

// Apply implements raft.FSM (raft uses ApplyBatch; Apply is the same for
// one entry).
func (f *fsm) Apply(l *raft.Log) any { return f.ApplyBatch([]*raft.Log{l})[0] }

// apply applies one command entry. An entry that cannot be decoded panics:
// a replica that cannot interpret a committed entry must stop, not
// diverge.
func (f *fsm) apply(l *raft.Log) any {
	if len(l.Data) == 0 {
		panic(fmt.Sprintf("raftstore: empty log entry at index %d", l.Index))
	}
	h, ok := applyHandlers[l.Data[0]]
	if !ok {
		panic(fmt.Sprintf("raftstore: unknown log entry type %d at index %d (newer binary in the cluster?)", l.Data[0], l.Index))
	}
	return h(f, l.Index, l.Data[1:])
}

func (f *fsm) applyCommand(index uint64, payload []byte) any {
	cmd, err := topology.DecodeCommand(payload)
	if err != nil {
		panic(fmt.Sprintf("raftstore: cannot decode topology command at index %d: %v", index, err))
	}
	next, err := topology.ApplyCommand(f.state.Load(), cmd)
	if err != nil {
		return err // business error: state unchanged on every replica
	}
	f.set(next)
	return next
}

func (f *fsm) applyInitial(index uint64, payload []byte) any {
	snap, err := topology.DecodeSnapshot(payload)
	if err != nil {
		panic(fmt.Sprintf("raftstore: cannot decode initial topology at index %d: %v", index, err))
	}
	if f.state.Load().Version() != 0 {
		return ErrAlreadyInitialized
	}
	f.set(snap)
	return snap
}

// Snapshot implements raft.FSM: it captures the current pointer; Persist
// does the I/O.
func (f *fsm) Snapshot() (raft.FSMSnapshot, error) {
	return &fsmSnapshot{snap: f.state.Load()}, nil
}

// Restore implements raft.FSM: it replaces the state with a persisted
// snapshot, validated by topology.DecodeSnapshot.
func (f *fsm) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	snap, err := decodeSnapshotFile(rc)
	if err != nil {
		return err
	}
	f.set(snap)
	if f.cache != nil {
		f.cache.store(snap)
	}
	return nil
}

func decodeSnapshotFile(r io.Reader) (*topology.Snapshot, error) {
	var file fsmSnapshotFile
	dec := json.NewDecoder(r)
	dec.DisallowUnknownFields()
	if err := dec.Decode(&file); err != nil {
		return nil, fmt.Errorf("raftstore: decode snapshot: %w", err)
	}
	if file.Format != snapshotFormat {
		return nil, fmt.Errorf("raftstore: snapshot format %d not supported (want %d)", file.Format, snapshotFormat)
	}
	snap, err := topology.DecodeSnapshot(file.Topology)
	if err != nil {
		return nil, fmt.Errorf("raftstore: restore snapshot: %w", err)
	}
	return snap, nil
}

type fsmSnapshot struct{ snap *topology.Snapshot }

// Persist writes the captured snapshot as JSON.
func (s *fsmSnapshot) Persist(sink raft.SnapshotSink) error {
	err := func() error {
		topo, err := json.Marshal(s.snap)
		if err != nil {
			return err
		}
		b, err := json.Marshal(fsmSnapshotFile{Format: snapshotFormat, Topology: topo})
		if err != nil {
			return err
		}
		_, err = sink.Write(b)
		return err
	}()
	if err != nil {
		_ = sink.Cancel()
		return fmt.Errorf("raftstore: persist snapshot: %w", err)
	}
	return sink.Close()
}

func (s *fsmSnapshot) Release() {}
