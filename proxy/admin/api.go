package admin

import (
	"time"

	"github.com/shardproxy/shardproxy/topology"
	"github.com/shardproxy/shardproxy/topology/raftstore"
)

// APIError is the body of every non-2xx answer, and the error Client
// returns for one.
type APIError struct {
	Status int    `json:"-"`
	Code   string `json:"code"`  // not_leader, no_quorum, version_mismatch, invalid, not_found, unauthorized, forbidden, bad_request, unavailable, internal
	Msg    string `json:"error"` // what went wrong
	Hint   string `json:"hint,omitempty"`
	// Retryable is set when nothing was changed and the same request may
	// simply be sent again (e.g. leadership moved while it was in flight).
	Retryable bool `json:"retryable,omitempty"`
	// Version is the topology version the answering node serves.
	Version uint64 `json:"version,omitempty"`
}

func (e *APIError) Error() string {
	if e.Hint == "" {
		return e.Msg
	}
	return e.Msg + "\nhint: " + e.Hint
}

// Error codes.
const (
	CodeNotLeader       = "not_leader"
	CodeNoQuorum        = "no_quorum"
	CodeVersionMismatch = "version_mismatch"
	CodeInvalid         = "invalid"
	CodeNotFound        = "not_found"
	CodeUnauthorized    = "unauthorized"
	CodeForbidden       = "forbidden"
	CodeBadRequest      = "bad_request"
	CodeUnavailable     = "unavailable"
	CodeInternal        = "internal"
)

// Status is GET /v1/status.
type Status struct {
	NodeID          string            `json:"node_id"`
	Mode            string            `json:"mode"` // "raft" or "static"
	TopologyVersion uint64            `json:"topology_version"`
	DefaultShard    string            `json:"default_shard"`
	Leader          *Node             `json:"leader,omitempty"`
	Nodes           []Node            `json:"nodes"`
	Shards          []ShardStatus     `json:"shards"`
	Tables          int               `json:"tables"`
	Distributions   int               `json:"distributions"`
	Raft            *raftstore.Status `json:"raft,omitempty"`
	Warnings        []string          `json:"warnings,omitempty"`
}

// Node is one member of the Raft configuration (or the single static node).
type Node struct {
	ID       string `json:"id"`
	RaftAddr string `json:"raft_addr,omitempty"`
	AdminURL string `json:"admin_url,omitempty"`
	Suffrage string `json:"suffrage,omitempty"` // voter, nonvoter, staging
	Leader   bool   `json:"leader"`
	Self     bool   `json:"self"`
}

// ShardStatus is a shard with the health of its servers.
type ShardStatus struct {
	topology.Shard
	Default bool     `json:"default"`
	Health  []Health `json:"health,omitempty"`
}

// Health is the result of probing one PostgreSQL server.
type Health struct {
	Addr      string  `json:"addr"`
	Role      string  `json:"role"` // configured role: primary or replica
	Up        bool    `json:"up"`
	LatencyMS float64 `json:"latency_ms"`
	// InRecovery is what the server itself says (pg_is_in_recovery), when
	// the admin API could log in; a primary in recovery or a replica that
	// is not means a failover happened behind the topology's back.
	InRecovery *bool `json:"in_recovery,omitempty"`
	// MaxPreparedTransactions is the server's setting, when the admin API
	// could log in; 0 on a primary means two-phase commit cannot work.
	MaxPreparedTransactions *int   `json:"max_prepared_transactions,omitempty"`
	Error                   string `json:"error,omitempty"`
}

// ShardRequest is POST /v1/shards.
type ShardRequest struct {
	Name          string   `json:"name"`
	Primary       string   `json:"primary"`
	Replicas      []string `json:"replicas,omitempty"`
	Region        string   `json:"region,omitempty"`
	ExpectVersion uint64   `json:"expect_version,omitempty"`
}

// DistributeRequest is POST /v1/tables/distribute (see
// topology.DistributeTable).
type DistributeRequest struct {
	Table         string           `json:"table"`
	KeyColumn     string           `json:"key_column"`
	Distribution  string           `json:"distribution"`
	KeyType       topology.KeyType `json:"key_type,omitempty"`
	Shards        []string         `json:"shards,omitempty"`
	VNodes        int              `json:"vnodes,omitempty"`
	ExpectVersion uint64           `json:"expect_version,omitempty"`
}

// ReferenceRequest is POST /v1/tables/reference.
type ReferenceRequest struct {
	Table         string `json:"table"`
	ExpectVersion uint64 `json:"expect_version,omitempty"`
}

// DirectoryRequest is PUT (set) and DELETE (unset) /v1/directory. Name the
// distribution directly or through one of its tables.
type DirectoryRequest struct {
	Table         string `json:"table,omitempty"`
	Distribution  string `json:"distribution,omitempty"`
	Key           string `json:"key"`
	Shard         string `json:"shard,omitempty"` // set only
	ExpectVersion uint64 `json:"expect_version,omitempty"`
}

// DirectoryEntry is one key override.
type DirectoryEntry struct {
	Distribution string `json:"distribution"`
	Key          string `json:"key"`
	Shard        string `json:"shard"`
}

// WriteResult answers every successful write.
type WriteResult struct {
	Version uint64 `json:"version"`
	Message string `json:"message"`
	Warning string `json:"warning,omitempty"`
}

// Tables is GET /v1/tables.
type Tables struct {
	Version      uint64           `json:"version"`
	DefaultShard string           `json:"default_shard"`
	Tables       []topology.Table `json:"tables"`
	// Distributions summarises the colocation groups the tables use.
	Distributions []DistributionInfo `json:"distributions"`
}

// DistributionInfo summarises a distribution.
type DistributionInfo struct {
	Name      string           `json:"name"`
	Scheme    topology.Scheme  `json:"scheme"`
	KeyType   topology.KeyType `json:"key_type"`
	Ranges    int              `json:"ranges"`
	Shards    []string         `json:"shards"`
	Overrides int              `json:"overrides"`
}

// KeyAnswer is GET /v1/key: where a key lives and why.
type KeyAnswer struct {
	Version      uint64              `json:"version"`
	Table        string              `json:"table,omitempty"`
	Kind         string              `json:"kind"` // distributed, reference, other
	Distribution string              `json:"distribution,omitempty"`
	KeyColumn    string              `json:"key_column,omitempty"`
	KeyType      topology.KeyType    `json:"key_type,omitempty"`
	Key          string              `json:"key"`            // canonical text
	Hash         *int64              `json:"hash,omitempty"` // hash schemes: PostgreSQL's hash*extended(key, 0)
	Shard        string              `json:"shard,omitempty"`
	Shards       []string            `json:"shards,omitempty"` // reference tables: every shard
	Reason       string              `json:"reason"`           // override, range, text_range, list, default_shard, reference
	Range        *topology.Range     `json:"range,omitempty"`
	TextRange    *topology.TextRange `json:"text_range,omitempty"`
	Explanation  string              `json:"explanation"`
}

// Ranges is GET /v1/ranges.
type Ranges struct {
	Version       uint64               `json:"version"`
	Database      string               `json:"database,omitempty"`
	Distributions []DistributionRanges `json:"distributions"`
}

// DistributionRanges is the range table of one distribution, with row
// counts when asked for.
type DistributionRanges struct {
	Name       string               `json:"name"`
	Scheme     topology.Scheme      `json:"scheme"`
	KeyType    topology.KeyType     `json:"key_type"`
	Tables     []string             `json:"tables"`
	Ranges     []RangeInfo          `json:"ranges,omitempty"`
	TextRanges []topology.TextRange `json:"text_ranges,omitempty"`
	ListValues map[string]string    `json:"list_values,omitempty"`
	Overrides  map[string]string    `json:"overrides,omitempty"`
	// Stray counts rows found on a shard that does not own their range
	// (left behind by an interrupted move, or written around the proxy).
	Stray      []StrayRows `json:"stray,omitempty"`
	StatsError []string    `json:"stats_errors,omitempty"`
}

// RangeInfo is one range with its owner and, with stats, its rows.
type RangeInfo struct {
	Lo       int64   `json:"lo"`
	Hi       int64   `json:"hi"`
	Shard    string  `json:"shard"`
	Fraction float64 `json:"fraction"` // share of the hash space (hash schemes)
	// Rows and Bytes (sum of pg_column_size of the rows, i.e. data without
	// indexes) over every table of the distribution, counted on the owner;
	// nil without stats. RelationBytes estimates the on-disk share
	// (pg_total_relation_size × rows / rows of the table on that shard).
	Rows          *int64           `json:"rows,omitempty"`
	Bytes         *int64           `json:"bytes,omitempty"`
	RelationBytes *int64           `json:"relation_bytes,omitempty"`
	TableRows     map[string]int64 `json:"table_rows,omitempty"`
}

// StrayRows are rows of a range found on a shard that does not own it.
type StrayRows struct {
	Shard string `json:"shard"`
	Table string `json:"table"`
	Lo    int64  `json:"lo"`
	Hi    int64  `json:"hi"`
	Owner string `json:"owner"`
	Rows  int64  `json:"rows"`
}

// JoinRequest is POST /v1/nodes/join, sent by a starting node to any
// member.
type JoinRequest struct {
	ID       string `json:"id"`
	RaftAddr string `json:"raft_addr"`
	AdminURL string `json:"admin_url"`
}

// JoinResult answers a join: the role the node got and the admin directory.
type JoinResult struct {
	Suffrage string            `json:"suffrage"`
	LeaderID string            `json:"leader_id"`
	Peers    map[string]string `json:"peers"`
}

// Peers is GET /v1/internal/peers: node ID → admin URL as the answering
// node knows them.
type Peers struct {
	From  string            `json:"from"`
	Peers map[string]string `json:"peers"`
}

// ReadIndex is GET /v1/internal/read-index: the topology version the
// leader LeaderID had committed when it answered.
type ReadIndex struct {
	LeaderID string `json:"leader_id"`
	Version  uint64 `json:"version"`
}

// Nodes is GET /v1/nodes.
type Nodes struct {
	Version uint64 `json:"version"`
	Mode    string `json:"mode"`
	Nodes   []Node `json:"nodes"`
}

// Health answers /healthz and /readyz.
type Readiness struct {
	Ready   bool     `json:"ready"`
	Version uint64   `json:"version"`
	Reasons []string `json:"reasons,omitempty"`
	Time    string   `json:"time"`
}

func nowString() string { return time.Now().UTC().Format(time.RFC3339) }
