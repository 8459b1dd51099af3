package admin

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"slices"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/shardproxy/shardproxy/topology"
)

// Adding a replica: POST /v1/shards/{name}/replicas puts a standby into a
// shard's read rotation, typically the old primary after a failover once
// the operator has rewound it (docs/replicas.md, "Re-attaching the old
// primary"). The proxy never touches a server's data directory (it runs
// elsewhere); it only checks, over SQL, that the server is a standby of
// the shard's primary and streams from it, then records it with
// topology.AddReplica. A server that is not ready gets an error whose hint
// says what to run on its host: pg_rewind when the server allows it
// (wal_log_hints or data checksums on), else pg_basebackup.

// AddReplicaRequest is the body of POST /v1/shards/{name}/replicas.
type AddReplicaRequest struct {
	// Addr is the standby's host:port as the proxies reach it.
	Addr string `json:"addr"`
	// DataDir, if given, is used in the hints (the commands to run on the
	// standby's host); it is not checked.
	DataDir       string `json:"data_dir,omitempty"`
	ExpectVersion uint64 `json:"expect_version,omitempty"`
}

// AddReplicaResult answers POST /v1/shards/{name}/replicas.
type AddReplicaResult struct {
	Version uint64 `json:"version"`
	Shard   string `json:"shard"`
	Addr    string `json:"addr"`
	Primary string `json:"primary"`
	// ReplayLSN is the standby's replay position when it was checked.
	ReplayLSN string `json:"replay_lsn"`
	// FenceRemoved is set when the standby still carried a failover's
	// fence (default_transaction_read_only in postgresql.auto.conf) and
	// it was reset, so the server can be promoted again later.
	FenceRemoved bool     `json:"fence_removed,omitempty"`
	Message      string   `json:"message"`
	Warnings     []string `json:"warnings,omitempty"`
}

func (s *Server) postReplica(w http.ResponseWriter, r *http.Request) error {
	body, err := readBody(r)
	if err != nil {
		return err
	}
	var req AddReplicaRequest
	if err := decode(body, &req); err != nil {
		return err
	}
	// The checks must not stop half-way because a forwarding node or the
	// client gave up: they are short and bounded on their own.
	res, err := s.AddReplica(context.WithoutCancel(r.Context()), r.PathValue("name"), req)
	if err != nil {
		return err
	}
	s.log.Info("replica added through the admin API", "shard", res.Shard, "addr", res.Addr, "version", res.Version, "remote", r.RemoteAddr)
	writeJSON(w, http.StatusOK, res)
	return nil
}

// AddReplica checks that req.Addr is a standby streaming from shard's
// primary and records it as a replica of shard. Run it on the leader (or
// a static node): it applies a topology command.
func (s *Server) AddReplica(ctx context.Context, shard string, req AddReplicaRequest) (*AddReplicaResult, error) {
	if s.opts.ShardConn == nil {
		return nil, &APIError{Status: http.StatusServiceUnavailable, Code: CodeUnavailable,
			Msg: "this proxy cannot log in to PostgreSQL servers (no server credentials wired), so it cannot check a replica"}
	}
	if _, _, err := net.SplitHostPort(req.Addr); err != nil {
		return nil, badRequest("addr must be host:port: %v", err)
	}
	s.failoverMu.Lock() // not while a failover changes the shard's primary
	defer s.failoverMu.Unlock()
	snap := s.store.Current()
	sh, ok := snap.Shard(shard)
	if !ok {
		return nil, &APIError{Status: http.StatusNotFound, Code: CodeNotFound,
			Msg: fmt.Sprintf("no shard %q", shard), Hint: "list the shards with shardctl shards list"}
	}
	if req.Addr == sh.Primary {
		return nil, &APIError{Status: http.StatusUnprocessableEntity, Code: CodeInvalid,
			Msg: fmt.Sprintf("%s is shard %s's primary", req.Addr, shard)}
	}
	if slices.Contains(sh.Replicas, req.Addr) {
		return nil, &APIError{Status: http.StatusConflict, Code: CodeInvalid,
			Msg: fmt.Sprintf("%s is already a replica of shard %s", req.Addr, shard)}
	}
	st, err := s.inspectStandby(ctx, req.Addr, sh.Primary)
	if err != nil {
		return nil, err
	}
	if problem := st.problem(sh.Primary); problem != "" {
		return nil, &APIError{Status: http.StatusUnprocessableEntity, Code: CodeInvalid,
			Msg:  fmt.Sprintf("%s cannot become a replica of shard %s yet: %s; the topology was not changed", req.Addr, shard, problem),
			Hint: st.repairHint(sh.Primary, req.DataDir)}
	}
	res := &AddReplicaResult{Shard: shard, Addr: req.Addr, Primary: sh.Primary, ReplayLSN: st.replayLSN}
	if st.fenced {
		if err := s.unfence(ctx, req.Addr); err != nil {
			res.Warnings = append(res.Warnings, fmt.Sprintf("it still has a failover's fence (default_transaction_read_only = on in postgresql.auto.conf) and resetting it failed (%v): run ALTER SYSTEM RESET default_transaction_read_only; SELECT pg_reload_conf() on it before it is ever promoted", err))
		} else {
			res.FenceRemoved = true
		}
	}
	next, err := s.store.Apply(ctx, topology.AddReplica{Shard: shard, Endpoint: req.Addr, ExpectVersion: req.ExpectVersion})
	if err != nil {
		return nil, err
	}
	res.Version = next.Version()
	if s.cluster == nil {
		res.Warnings = append(res.Warnings, "static topology (no raft.dir): the change lives only in this proxy's memory until it restarts; add it to the shard's replicas in the config")
	}
	res.Message = fmt.Sprintf("%s is a replica of shard %s (streams from %s, replayed up to %s); topology version %d: reads may go to it once its health checks pass",
		req.Addr, shard, sh.Primary, st.replayLSN, res.Version)
	return res, nil
}

// standbyState is what a server reports about itself over SQL.
type standbyState struct {
	inRecovery     bool
	sameSystem     bool   // its system identifier is the primary's
	walLogHints    bool   // pg_rewind can rewind it (with fullPageWrites)
	checksums      bool   // pg_rewind can rewind it (with fullPageWrites)
	fullPageWrites bool   // pg_rewind needs it
	receiver       string // pg_stat_wal_receiver.status ("" = no WAL receiver)
	senderHost     string
	senderPort     string
	receivedTLI    int64
	primaryTLI     int64 // the primary's current timeline
	replayLSN      string
	fenced         bool // default_transaction_read_only = on from postgresql.auto.conf
	primaryErr     error
}

const standbyQuery = `SELECT pg_is_in_recovery(), (SELECT system_identifier::text FROM pg_control_system()),
	current_setting('wal_log_hints') = 'on', current_setting('data_checksums') = 'on', current_setting('full_page_writes') = 'on',
	COALESCE((SELECT status FROM pg_stat_wal_receiver), ''), COALESCE((SELECT sender_host FROM pg_stat_wal_receiver), ''),
	COALESCE((SELECT sender_port FROM pg_stat_wal_receiver), 0)::text, COALESCE((SELECT received_tli FROM pg_stat_wal_receiver), 0)::bigint,
	COALESCE(pg_last_wal_replay_lsn()::text, ''),
	EXISTS (SELECT 1 FROM pg_settings WHERE name = 'default_transaction_read_only' AND setting = 'on' AND sourcefile LIKE '%postgresql.auto.conf')`

// primaryQuery reads the primary's system identifier and current
// timeline (the first 8 hex digits of its current WAL file's name).
const primaryQuery = `SELECT (SELECT system_identifier::text FROM pg_control_system()),
	('x' || substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8))::bit(32)::bigint`

// inspectStandby reads addr's state and the primary's; an error means
// addr could not be reached (an APIError with the procedure as its hint).
func (s *Server) inspectStandby(ctx context.Context, addr, primary string) (*standbyState, error) {
	ctx, cancel := context.WithTimeout(ctx, failoverFenceTimeout)
	defer cancel()
	st := &standbyState{}
	var sysID, primarySysID string
	if err := s.withConn(ctx, addr, func(c *pgx.Conn) error {
		return c.QueryRow(ctx, standbyQuery).Scan(&st.inRecovery, &sysID, &st.walLogHints, &st.checksums, &st.fullPageWrites,
			&st.receiver, &st.senderHost, &st.senderPort, &st.receivedTLI, &st.replayLSN, &st.fenced)
	}); err != nil {
		return nil, &APIError{Status: http.StatusServiceUnavailable, Code: CodeUnavailable,
			Msg:  fmt.Sprintf("cannot read the state of %s: %v; the topology was not changed", addr, err),
			Hint: "start it as a standby of the shard's primary first (docs/replicas.md, \"Re-attaching the old primary\")"}
	}
	st.primaryErr = s.withConn(ctx, primary, func(c *pgx.Conn) error {
		return c.QueryRow(ctx, primaryQuery).Scan(&primarySysID, &st.primaryTLI)
	})
	st.sameSystem = st.primaryErr == nil && sysID == primarySysID
	return st, nil
}

func (s *Server) withConn(ctx context.Context, addr string, f func(*pgx.Conn) error) error {
	c, err := s.opts.ShardConn(ctx, addr, "postgres")
	if err != nil {
		return err
	}
	defer c.Close(context.Background())
	return f(c)
}

// problem says why the server cannot take the shard's reads ("" = it can).
func (st *standbyState) problem(primary string) string {
	switch {
	case st.primaryErr != nil:
		return fmt.Sprintf("the shard's primary %s cannot be read (%v)", primary, st.primaryErr)
	case !st.inRecovery:
		return "it is not a standby (pg_is_in_recovery() is false): it still runs as a primary, like an old primary a failover fenced"
	case !st.sameSystem:
		return "it is a copy of another database cluster (its system identifier differs from the primary's)"
	case st.receiver != "streaming":
		what := "it has no WAL receiver"
		if st.receiver != "" {
			what = "its WAL receiver is " + st.receiver
		}
		return what + ", so it does not stream from the primary (if its log says the new timeline \"forked off\" before its recovery point or \"is not a child of this server's history\", it diverged and needs pg_rewind)"
	case !sameEndpoint(st.senderHost, st.senderPort, primary):
		return fmt.Sprintf("it streams from %s, not from the shard's primary %s", net.JoinHostPort(st.senderHost, st.senderPort), primary)
	case st.receivedTLI != st.primaryTLI:
		return fmt.Sprintf("it streams timeline %d, the primary is on timeline %d", st.receivedTLI, st.primaryTLI)
	}
	return ""
}

// repairHint is the procedure for the server's host.
func (st *standbyState) repairHint(primary, dataDir string) string {
	host, port, _ := net.SplitHostPort(primary)
	if dataDir == "" {
		dataDir = "$PGDATA"
	}
	source := fmt.Sprintf("host=%s port=%s user=postgres dbname=postgres", host, port)
	reclone := fmt.Sprintf("re-clone it: stop it, empty %s, run pg_basebackup -h %s -p %s -U postgres -D %s -X stream -R, start it", dataDir, host, port, dataDir)
	rewind := fmt.Sprintf("rewind it on its host: stop it (pg_ctl stop -D %s), run pg_rewind --target-pgdata=%s --source-server='%s' --write-recovery-conf, start it (if pg_rewind says \"no rewind required\", run CHECKPOINT on %s first)", dataDir, dataDir, source, primary)
	switch {
	case st.primaryErr != nil:
		return "bring the shard's primary back, or fail over first"
	case !st.sameSystem:
		return reclone + "; then run this command again"
	case st.inRecovery && st.receiver == "streaming":
		return "set its primary_conninfo to " + source + " (ALTER SYSTEM SET primary_conninfo = '…'; SELECT pg_reload_conf()) and run this command again once it streams"
	case st.fullPageWrites && (st.walLogHints || st.checksums):
		return rewind + " (it then streams from the primary); then run this command again. If pg_rewind fails, " + reclone
	}
	return "pg_rewind cannot be used on it (it needs wal_log_hints = on or data checksums, and full_page_writes = on, from before the failover): " + reclone + "; then run this command again"
}

// unfence resets the failover's fence on a standby (ALTER SYSTEM works
// during recovery; the setting matters once it is promoted).
func (s *Server) unfence(ctx context.Context, addr string) error {
	ctx, cancel := context.WithTimeout(ctx, failoverFenceTimeout)
	defer cancel()
	return s.withConn(ctx, addr, func(c *pgx.Conn) error {
		if _, err := c.Exec(ctx, "ALTER SYSTEM RESET default_transaction_read_only"); err != nil {
			return err
		}
		_, err := c.Exec(ctx, "SELECT pg_reload_conf()")
		return err
	})
}

// sameEndpoint reports whether a WAL sender at host:port is the server at
// addr: the same port, and the same host name or addresses (names are
// resolved; loopback addresses are one host).
func sameEndpoint(host, port, addr string) bool {
	ahost, aport, err := net.SplitHostPort(addr)
	if err != nil || port != aport {
		return false
	}
	if strings.EqualFold(host, ahost) {
		return true
	}
	resolve := func(h string) []net.IP {
		if ip := net.ParseIP(h); ip != nil {
			return []net.IP{ip}
		}
		names, _ := net.LookupHost(h)
		var ips []net.IP
		for _, n := range names {
			if ip := net.ParseIP(n); ip != nil {
				ips = append(ips, ip)
			}
		}
		return ips
	}
	for _, a := range resolve(host) {
		for _, b := range resolve(ahost) {
			if a.Equal(b) || a.IsLoopback() && b.IsLoopback() {
				return true
			}
		}
	}
	return false
}
