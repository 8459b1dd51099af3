package raftstore

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/shardproxy/shardproxy/topology"
)

// lastApplied is DataDir/topology.json: the newest topology this node has
// applied, written after each batch of FSM changes. On Open it is served
// (Current, Watch) until Raft replays past it, so a node that restarts
// without a quorum routes with the last topology it had rather than with
// its older Raft snapshot. It is only a cache: Raft's log and snapshots
// stay the source of truth, and a missing or unreadable file is ignored.
//
// Serving it is safe because all snapshots a node applies come from one
// committed history in which versions only increase: a cached version
// ahead of the FSM is exactly what the FSM will reach by replaying.
type lastApplied struct {
	path    string
	log     *slog.Logger
	written uint64 // version on disk; only the FSM goroutine touches it
}

type lastAppliedFile struct {
	Format   int             `json:"format"`
	Topology json.RawMessage `json:"topology"`
}

func newLastApplied(dir string, log *slog.Logger) *lastApplied {
	return &lastApplied{path: filepath.Join(dir, "topology.json"), log: log}
}

// load returns the cached topology, or nil.
func (c *lastApplied) load() *topology.Snapshot {
	b, err := os.ReadFile(c.path)
	if err != nil {
		if !os.IsNotExist(err) {
			c.log.Warn("raftstore: cannot read last applied topology; waiting for Raft", "path", c.path, "err", err)
		}
		return nil
	}
	var f lastAppliedFile
	if err := json.Unmarshal(b, &f); err != nil || f.Format != snapshotFormat {
		c.log.Warn("raftstore: ignoring unreadable last applied topology", "path", c.path, "err", err, "format", f.Format)
		return nil
	}
	snap, err := topology.DecodeSnapshot(f.Topology)
	if err != nil {
		c.log.Warn("raftstore: ignoring invalid last applied topology", "path", c.path, "err", err)
		return nil
	}
	c.written = snap.Version()
	return snap
}

// store writes snap unless the file already holds this version or a newer
// one (as during replay after a restart). Failures are logged, not fatal.
func (c *lastApplied) store(snap *topology.Snapshot) {
	if snap.Version() <= c.written {
		return
	}
	if err := c.write(snap); err != nil {
		c.log.Warn("raftstore: cannot save last applied topology", "path", c.path, "err", err)
		return
	}
	c.written = snap.Version()
}

func (c *lastApplied) write(snap *topology.Snapshot) error {
	topo, err := json.Marshal(snap)
	if err != nil {
		return err
	}
	b, err := json.Marshal(lastAppliedFile{Format: snapshotFormat, Topology: topo})
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(c.path), ".topology-*.json")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name()) // no-op after a successful rename
	if _, err := tmp.Write(b); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp.Name(), c.path); err != nil {
		return fmt.Errorf("rename: %w", err)
	}
	return nil
}
