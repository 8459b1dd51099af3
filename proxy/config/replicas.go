package config

import (
	"fmt"
	"strings"
	"time"
)

// Replicas configures read/write splitting over each shard's streaming
// replicas (docs/replicas.md). Reads that are provably read-only may go to
// a replica that is healthy, within the lag limits and — with
// ReadYourWrites — has replayed past the session's last write on that
// shard; everything else goes to the primary.
type Replicas struct {
	// Balance picks among qualifying servers: sticky (default: each
	// session keeps reading from one server while that server qualifies;
	// sessions are spread evenly), round_robin (every read the next
	// server) or least_busy (fewest server connections in use).
	Balance string `yaml:"balance"`
	// PrimaryReads lets the primary take its share of the reads
	// (default true); false sends reads to the primary only when no
	// replica qualifies.
	PrimaryReads *bool `yaml:"primary_reads"`
	// TargetRole is the default of the session setting
	// shardproxy.target_role: any (default), primary or replica.
	TargetRole string `yaml:"target_role"`
	// MaxLagBytes: a replica whose replay position is this many bytes of
	// WAL behind its primary gets no reads (default 16 MiB; -1 = no limit).
	MaxLagBytes int64 `yaml:"max_lag_bytes"`
	// MaxLag: a replica whose last replayed transaction is older than this
	// while it is behind its primary gets no reads (default 10s; -1s = no
	// limit).
	MaxLag Duration `yaml:"max_lag"`
	// ReadYourWrites (default true): after a session's write on a shard
	// commits, its reads there go only to replicas that replayed past it.
	ReadYourWrites *bool `yaml:"read_your_writes"`
	// ReadOnlyFunctions are function names (lower case, unqualified) a
	// SELECT may call and still go to a replica, on top of the built-in
	// list of read-only functions. Calls of any other function make a
	// statement a write.
	ReadOnlyFunctions []string `yaml:"read_only_functions"`
	// CheckInterval is how often every primary and replica is polled for
	// health, replay position and lag (default 250ms).
	CheckInterval Duration `yaml:"check_interval"`
	// CheckTimeout bounds one health check, connect included (default 2s).
	CheckTimeout Duration `yaml:"check_timeout"`
	// MaxBackoff caps the doubling pause between checks of a failing
	// server (default 10s).
	MaxBackoff Duration `yaml:"max_backoff"`
	// FailoverTimeout > 0 turns on automatic failover: when a shard's
	// primary has failed every health check for this long, the Raft
	// leader promotes a replica (as shardctl failover does). 0 = off
	// (default).
	FailoverTimeout Duration `yaml:"failover_timeout"`
}

// Balancing policies for balance.
const (
	BalanceSticky     = "sticky"
	BalanceRoundRobin = "round_robin"
	BalanceLeastBusy  = "least_busy"
)

// Role names for target_role.
const (
	RoleAny     = "any"
	RolePrimary = "primary"
	RoleReplica = "replica"
)

// PrimaryTakesReads reports the effective primary_reads.
func (r Replicas) PrimaryTakesReads() bool { return r.PrimaryReads == nil || *r.PrimaryReads }

// ReadYourWritesOn reports the effective read_your_writes.
func (r Replicas) ReadYourWritesOn() bool { return r.ReadYourWrites == nil || *r.ReadYourWrites }

func (r *Replicas) applyDefaults() {
	if r.Balance == "" {
		r.Balance = BalanceSticky
	}
	if r.TargetRole == "" {
		r.TargetRole = RoleAny
	}
	if r.MaxLagBytes == 0 {
		r.MaxLagBytes = 16 << 20
	}
	if r.MaxLag == 0 {
		r.MaxLag = Duration(10 * time.Second)
	}
	if r.CheckInterval == 0 {
		r.CheckInterval = Duration(250 * time.Millisecond)
	}
	if r.CheckTimeout == 0 {
		r.CheckTimeout = Duration(2 * time.Second)
	}
	if r.MaxBackoff == 0 {
		r.MaxBackoff = Duration(10 * time.Second)
	}
	for i, f := range r.ReadOnlyFunctions {
		r.ReadOnlyFunctions[i] = strings.ToLower(strings.TrimSpace(f))
	}
}

func (r *Replicas) validate() error {
	bad := func(key, format string, args ...any) error {
		return &FieldError{Key: "replicas." + key, Problem: fmt.Sprintf(format, args...)}
	}
	switch r.Balance {
	case BalanceSticky, BalanceRoundRobin, BalanceLeastBusy:
	default:
		return bad("balance", "must be sticky, round_robin or least_busy, got %q", r.Balance)
	}
	switch r.TargetRole {
	case RoleAny, RolePrimary, RoleReplica:
	default:
		return bad("target_role", "must be any, primary or replica, got %q", r.TargetRole)
	}
	if r.MaxLagBytes < -1 {
		return bad("max_lag_bytes", "must be a byte count or -1 (no limit), got %d", r.MaxLagBytes)
	}
	if r.MaxLag < 0 && r.MaxLag.D() != -time.Second {
		return bad("max_lag", "must be a positive duration or -1s (no limit), got %s", r.MaxLag.D())
	}
	for _, d := range []struct {
		key string
		v   Duration
	}{{"check_interval", r.CheckInterval}, {"check_timeout", r.CheckTimeout}, {"max_backoff", r.MaxBackoff}} {
		if d.v <= 0 {
			return bad(d.key, "must be a positive duration, got %s", d.v.D())
		}
	}
	if r.FailoverTimeout < 0 {
		return bad("failover_timeout", "must be 0 (off) or a positive duration, got %s", r.FailoverTimeout.D())
	}
	for i, f := range r.ReadOnlyFunctions {
		if f == "" || strings.ContainsAny(f, " \t();") {
			return bad(fmt.Sprintf("read_only_functions[%d]", i), "%q is not a function name", f)
		}
	}
	return nil
}
