package raftstore

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/shardproxy/shardproxy/topology"
)

// Config configures a Store. Start from Default() and set at least NodeID,
// DataDir and BindAddr. Open validates it.
type Config struct {
	// NodeID names this node in the Raft configuration; stable across
	// restarts and unique in the cluster.
	NodeID string
	// DataDir holds raft.db (log and stable store) and snapshots/. It is
	// created if missing. One Store per directory (a second Open of the
	// same directory fails after a short lock timeout).
	DataDir string
	// BindAddr is the "host:port" the Raft TCP transport listens on. Port 0
	// picks a free port (see Store.Addr).
	BindAddr string
	// AdvertiseAddr is the "host:port" other nodes dial; default BindAddr.
	// It must not be an unspecified address (0.0.0.0, ::).
	AdvertiseAddr string
	// Bootstrap makes a node whose DataDir has no Raft state form a
	// one-node cluster of itself. It is ignored when state exists, so it is
	// safe to leave on across restarts. Nodes that join an existing
	// cluster leave it off and are added by the leader (Store.Join).
	Bootstrap bool
	// Initial seeds a freshly bootstrapped cluster (e.g. topology built
	// from the config file); nil keeps topology.Empty(). It is applied
	// through the log by the first leader that sees version 0, so every
	// replica agrees. Its version must be at least 1.
	Initial *topology.Snapshot
	// Logger receives structured logs; raft's own info chatter is logged at
	// debug. Nil discards.
	Logger *slog.Logger
	// Registerer receives the Raft metrics; nil registers nothing.
	Registerer prometheus.Registerer

	// ApplyTimeout bounds a write: waiting for a leader, and for the
	// commit. Past it Apply returns a *NoQuorumError.
	ApplyTimeout time.Duration
	// MaxVoters is how many voters Join adds before it adds non-voters.
	MaxVoters int

	// Raft timing (see hashicorp/raft Config). ElectionTimeout >=
	// HeartbeatTimeout >= LeaderLeaseTimeout.
	HeartbeatTimeout   time.Duration
	ElectionTimeout    time.Duration
	LeaderLeaseTimeout time.Duration
	CommitTimeout      time.Duration

	// Snapshots: taken every SnapshotInterval when at least
	// SnapshotThreshold entries were appended since the last one;
	// TrailingLogs entries stay in the log after a snapshot so slightly
	// lagging followers catch up without a snapshot transfer.
	SnapshotInterval  time.Duration
	SnapshotThreshold uint64
	TrailingLogs      uint64
	RetainSnapshots   int

	// Transport: connection pool size per peer and I/O timeout.
	MaxPool          int
	TransportTimeout time.Duration
}

// Default returns a Config with every tunable set; NodeID, DataDir and
// BindAddr are left for the caller.
func Default() Config {
	return Config{
		ApplyTimeout:       5 * time.Second,
		MaxVoters:          5,
		HeartbeatTimeout:   1000 * time.Millisecond,
		ElectionTimeout:    1000 * time.Millisecond,
		LeaderLeaseTimeout: 500 * time.Millisecond,
		CommitTimeout:      50 * time.Millisecond,
		SnapshotInterval:   2 * time.Minute,
		SnapshotThreshold:  1024,
		TrailingLogs:       1024,
		RetainSnapshots:    2,
		MaxPool:            3,
		TransportTimeout:   10 * time.Second,
	}
}

// Validate checks bounds and cross-field rules.
func (c *Config) Validate() error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if c.NodeID == "" {
		bad("raftstore: NodeID is required")
	}
	if c.DataDir == "" {
		bad("raftstore: DataDir is required")
	}
	if _, _, err := net.SplitHostPort(c.BindAddr); err != nil {
		bad("raftstore: BindAddr %q: %v", c.BindAddr, err)
	}
	if c.AdvertiseAddr != "" {
		if _, err := advertiseAddr(c.AdvertiseAddr); err != nil {
			bad("raftstore: AdvertiseAddr: %v", err)
		}
	}
	if c.Initial != nil && c.Initial.Version() == 0 {
		bad("raftstore: Initial topology must have version >= 1")
	}
	if c.ApplyTimeout <= 0 {
		bad("raftstore: ApplyTimeout must be positive")
	}
	if c.MaxVoters < 1 {
		bad("raftstore: MaxVoters must be at least 1")
	}
	if c.HeartbeatTimeout < 5*time.Millisecond || c.ElectionTimeout < c.HeartbeatTimeout ||
		c.LeaderLeaseTimeout < 5*time.Millisecond || c.LeaderLeaseTimeout > c.HeartbeatTimeout {
		bad("raftstore: need ElectionTimeout (%s) >= HeartbeatTimeout (%s) >= LeaderLeaseTimeout (%s) >= 5ms",
			c.ElectionTimeout, c.HeartbeatTimeout, c.LeaderLeaseTimeout)
	}
	if c.CommitTimeout <= 0 {
		bad("raftstore: CommitTimeout must be positive")
	}
	if c.SnapshotInterval < 5*time.Millisecond || c.SnapshotThreshold == 0 {
		bad("raftstore: SnapshotInterval must be >= 5ms and SnapshotThreshold positive")
	}
	if c.RetainSnapshots < 1 {
		bad("raftstore: RetainSnapshots must be at least 1")
	}
	if c.MaxPool < 1 || c.TransportTimeout <= 0 {
		bad("raftstore: MaxPool must be at least 1 and TransportTimeout positive")
	}
	return errors.Join(errs...)
}

// advertiseAddr resolves a "host:port" that other nodes can dial.
func advertiseAddr(s string) (*net.TCPAddr, error) {
	a, err := net.ResolveTCPAddr("tcp", s)
	if err != nil {
		return nil, err
	}
	if a.IP == nil || a.IP.IsUnspecified() {
		return nil, fmt.Errorf("%q is not an address other nodes can dial; set AdvertiseAddr", s)
	}
	if a.Port == 0 {
		return nil, fmt.Errorf("%q has no port", s)
	}
	return a, nil
}
