package admin

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/shardproxy/shardproxy/topology"
)

// Failover: POST /v1/shards/{name}/failover promotes one of a shard's
// replicas to primary (docs/replicas.md). It runs on the Raft leader
// (leaderOnly forwards it there) and, one failover at a time:
//
//  1. fences the old primary if it answers: ALTER SYSTEM SET
//     default_transaction_read_only = on, pg_reload_conf(), terminate its
//     client backends; then notes its WAL insert position so the candidate
//     can be given a moment to receive everything it wrote;
//  2. picks the replica that has received the most WAL (or the one asked
//     for) and promotes it with pg_promote(true, 60);
//  3. applies topology.PromoteReplica, which drops the old primary from
//     the topology: every proxy attaches new server connections to the new
//     primary and closes its pools to the old address, so no proxy writes
//     to the old primary again;
//  4. points every other replica at the new primary (its slot created
//     there, ALTER SYSTEM SET primary_conninfo, pg_reload_conf()) and
//     checks that it streams, or reports that it needs re-cloning;
//  5. runs CHECKPOINT on the new primary, so that pg_rewind of the old
//     primary (the operator's step before shardctl shards add-replica,
//     rejoin.go) sees the new timeline.
//
// A retry after a failure in step 3 or 4 is safe: a chosen replica that is
// already out of recovery is not promoted again.

// FailoverRequest is the body of POST /v1/shards/{name}/failover (may be
// empty).
type FailoverRequest struct {
	// To is the replica to promote ("host:port"); "" = the replica that
	// has received the most WAL.
	To string `json:"to,omitempty"`
	// ExpectPrimary, if set, makes the failover refuse to run unless the
	// shard's primary is still this address (automatic failover uses it so
	// two detections of one outage cannot promote twice).
	ExpectPrimary string `json:"expect_primary,omitempty"`
	ExpectVersion uint64 `json:"expect_version,omitempty"`
}

// FailoverResult answers a failover.
type FailoverResult struct {
	Version    uint64 `json:"version"`
	Shard      string `json:"shard"`
	OldPrimary string `json:"old_primary"`
	NewPrimary string `json:"new_primary"`
	// Fence is what happened to the old primary: "fenced" (read-only,
	// client backends terminated) or "unreachable".
	Fence       string `json:"fence"`
	FenceDetail string `json:"fence_detail,omitempty"`
	// OldPrimaryLSN is the old primary's WAL insert position after the
	// fence ("" when it was unreachable); PromotedAtLSN is the WAL the new
	// primary had received when it was promoted. When PromotedAtLSN is
	// behind OldPrimaryLSN, transactions the old primary acknowledged
	// after that point are not on the new primary.
	OldPrimaryLSN string `json:"old_primary_lsn,omitempty"`
	PromotedAtLSN string `json:"promoted_at_lsn"`
	// Candidates are the replicas as they were found before promotion.
	Candidates []FailoverCandidate `json:"candidates"`
	// Replicas are the shard's other replicas after the failover.
	Replicas []ReplicaRepoint `json:"replicas"`
	Message  string           `json:"message"`
	Warnings []string         `json:"warnings,omitempty"`
	Duration string           `json:"duration"`
}

// FailoverCandidate is one replica as seen before the promotion.
type FailoverCandidate struct {
	Addr       string `json:"addr"`
	Reachable  bool   `json:"reachable"`
	InRecovery bool   `json:"in_recovery"`
	ReceiveLSN string `json:"receive_lsn,omitempty"`
	ReplayLSN  string `json:"replay_lsn,omitempty"`
	Chosen     bool   `json:"chosen"`
	Error      string `json:"error,omitempty"`
}

// Repoint states of ReplicaRepoint.State.
const (
	RepointStreaming    = "streaming"     // follows the new primary
	RepointNeedsReclone = "needs_reclone" // has WAL the new primary lacks, or did not start streaming
	RepointUnreachable  = "unreachable"   // could not be reached to repoint it
)

// ReplicaRepoint is what happened to one other replica.
type ReplicaRepoint struct {
	Addr   string `json:"addr"`
	State  string `json:"state"`
	Slot   string `json:"slot,omitempty"`
	Detail string `json:"detail,omitempty"`
}

// Failover bounds.
const (
	failoverFenceTimeout   = 3 * time.Second  // reaching and fencing the old primary
	failoverCatchUpWait    = 3 * time.Second  // candidate receiving the fenced primary's last WAL
	failoverPromoteTimeout = 70 * time.Second // pg_promote waits up to 60 s
	failoverStreamWait     = 10 * time.Second // a repointed replica starting to stream
	// failoverMaxDuration bounds a whole failover (the steps above, in
	// the worst case about 90 s, plus recording it through Raft); a
	// follower waits this long for a failover it forwarded to the leader
	// (longForwardTimeout), and shardctl failover by default too.
	failoverMaxDuration = 2 * time.Minute
)

// longForwardTimeout returns how long a follower waits for the leader's
// answer to a forwarded write r that may take long (a failover), or 0 for
// Options.ForwardTimeout.
func longForwardTimeout(r *http.Request) time.Duration {
	if r.Method == http.MethodPost && strings.HasSuffix(r.URL.Path, "/failover") {
		return failoverMaxDuration + 10*time.Second
	}
	return 0
}

func (s *Server) postFailover(w http.ResponseWriter, r *http.Request) error {
	body, err := readBody(r)
	if err != nil {
		return err
	}
	var req FailoverRequest
	if len(strings.TrimSpace(string(body))) > 0 {
		if err := decode(body, &req); err != nil {
			return err
		}
	}
	// A failover must not stop half-way (promoted but not recorded)
	// because the client or a forwarding node gave up waiting: it runs to
	// its end, bounded by failoverMaxDuration.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), failoverMaxDuration)
	defer cancel()
	res, err := s.Failover(ctx, r.PathValue("name"), req)
	if err != nil {
		return err
	}
	s.log.Info("failover through the admin API", "shard", res.Shard, "old_primary", res.OldPrimary,
		"new_primary", res.NewPrimary, "version", res.Version, "remote", r.RemoteAddr)
	writeJSON(w, http.StatusOK, res)
	return nil
}

// AutoFailover is the proxy's automatic failover hook (proxy.FailoverFunc):
// on the Raft leader (or a static node) it fails shard over when primary is
// still its primary; on followers it does nothing, the leader's own
// watcher acts.
func (s *Server) AutoFailover(ctx context.Context, shard, primary string) error {
	if s.cluster != nil && !s.cluster.IsLeader() {
		return nil
	}
	res, err := s.Failover(ctx, shard, FailoverRequest{ExpectPrimary: primary})
	if err != nil {
		return err
	}
	s.log.Warn("automatic failover done", "shard", shard, "old_primary", res.OldPrimary, "new_primary", res.NewPrimary,
		"fence", res.Fence, "promoted_at_lsn", res.PromotedAtLSN, "old_primary_lsn", res.OldPrimaryLSN, "warnings", res.Warnings)
	return nil
}

// Failover promotes a replica of shard (see the comment at the top of this
// file). Run it on the leader (or a static node): it applies a topology
// command.
func (s *Server) Failover(ctx context.Context, shard string, req FailoverRequest) (*FailoverResult, error) {
	if s.opts.ShardConn == nil {
		return nil, &APIError{Status: http.StatusServiceUnavailable, Code: CodeUnavailable,
			Msg: "this proxy cannot log in to PostgreSQL servers (no server credentials wired), so it cannot fail over"}
	}
	s.failoverMu.Lock()
	defer s.failoverMu.Unlock()
	start := time.Now()
	snap := s.store.Current()
	sh, ok := snap.Shard(shard)
	if !ok {
		return nil, &APIError{Status: http.StatusNotFound, Code: CodeNotFound,
			Msg: fmt.Sprintf("no shard %q", shard), Hint: "list the shards with shardctl shards list"}
	}
	if req.ExpectPrimary != "" && req.ExpectPrimary != sh.Primary {
		return nil, &APIError{Status: http.StatusConflict, Code: CodeVersionMismatch,
			Msg:  fmt.Sprintf("shard %s's primary is now %s, not %s; nothing was done", shard, sh.Primary, req.ExpectPrimary),
			Hint: "a failover already happened; check shardctl status"}
	}
	if req.ExpectVersion != 0 && req.ExpectVersion != snap.Version() {
		return nil, &topology.VersionMismatchError{Expected: req.ExpectVersion, Actual: snap.Version()}
	}
	if len(sh.Replicas) == 0 {
		return nil, &APIError{Status: http.StatusUnprocessableEntity, Code: CodeInvalid,
			Msg:  fmt.Sprintf("shard %s has no replica to promote", shard),
			Hint: "add a streaming replica to the shard's replicas first"}
	}
	if req.To != "" && !slices.Contains(sh.Replicas, req.To) {
		return nil, &APIError{Status: http.StatusUnprocessableEntity, Code: CodeInvalid,
			Msg:  fmt.Sprintf("%s is not a replica of shard %s (its replicas: %s)", req.To, shard, strings.Join(sh.Replicas, ", ")),
			Hint: "pass one of the shard's replicas with --to, or none to pick the most advanced"}
	}
	res := &FailoverResult{Shard: shard, OldPrimary: sh.Primary}

	// 1. Fence the old primary.
	fenceLSN, fenceText, err := s.fence(ctx, sh.Primary)
	if err != nil {
		fenceLSN = 0
		res.Fence, res.FenceDetail = "unreachable", err.Error()
	} else {
		res.Fence, res.OldPrimaryLSN = "fenced", fenceText
	}

	// 2. Choose and promote.
	cands := s.inspectReplicas(ctx, sh.Replicas)
	if fenceLSN != 0 {
		cands = s.waitReceived(ctx, sh.Replicas, cands, req.To, fenceLSN)
	}
	chosen := chooseCandidate(cands, req.To)
	for _, c := range cands {
		res.Candidates = append(res.Candidates, c.FailoverCandidate)
	}
	if chosen < 0 {
		return nil, &APIError{Status: http.StatusServiceUnavailable, Code: CodeUnavailable,
			Msg:  fmt.Sprintf("no replica of shard %s can be promoted: %s", shard, describeCandidates(cands)),
			Hint: "bring a replica back, or name a reachable one with --to; the topology was not changed" + fenceHint(res)}
	}
	c := &cands[chosen]
	c.Chosen = true
	res.Candidates[chosen].Chosen = true
	res.NewPrimary = c.Addr
	res.PromotedAtLSN = c.positionText()
	if c.InRecovery {
		if err := s.promote(ctx, c.Addr); err != nil {
			return nil, &APIError{Status: http.StatusBadGateway, Code: CodeUnavailable,
				Msg:  fmt.Sprintf("promoting %s failed: %v", c.Addr, err),
				Hint: "the topology was not changed; check the replica's log and retry" + fenceHint(res)}
		}
	}
	if fenceLSN > c.position() {
		res.Warnings = append(res.Warnings, fmt.Sprintf("the new primary had received WAL up to %s, the old primary had written up to %s: transactions committed on the old primary after %s are not on the new primary",
			res.PromotedAtLSN, res.OldPrimaryLSN, res.PromotedAtLSN))
	}
	if res.Fence != "fenced" {
		res.Warnings = append(res.Warnings, fmt.Sprintf("the old primary %s could not be fenced (%s); no proxy routes to it any more, but do not restart it as a primary: rewind (pg_rewind) or re-clone it as a replica of %s", sh.Primary, res.FenceDetail, c.Addr))
	}

	// 3. Record the new primary in the topology.
	next, err := s.store.Apply(ctx, topology.PromoteReplica{Shard: shard, Endpoint: c.Addr})
	if err != nil {
		return nil, fmt.Errorf("%s was promoted, but recording it in the topology failed (retry the failover with --to %s): %w", c.Addr, c.Addr, err)
	}
	res.Version = next.Version()
	if s.cluster == nil {
		res.Warnings = append(res.Warnings, "static topology (no raft.dir): the new primary lives only in this proxy's memory until it restarts; update the config's shards before restarting")
	}

	// 4. Repoint the other replicas.
	var others []candidate
	for i, o := range cands {
		if i != chosen {
			others = append(others, o)
		}
	}
	res.Replicas = s.repointAll(ctx, c.Addr, *c, others)
	for _, r := range res.Replicas {
		if r.State != RepointStreaming {
			res.Warnings = append(res.Warnings, fmt.Sprintf("replica %s: %s (%s)", r.Addr, r.State, r.Detail))
		}
	}
	// 5. A checkpoint puts the new timeline into the new primary's
	// control file, which pg_rewind reads: without it, rewinding the old
	// primary right after the failover finds "no rewind required".
	if err := s.checkpoint(ctx, c.Addr); err != nil {
		res.Warnings = append(res.Warnings, fmt.Sprintf("CHECKPOINT on the new primary failed (%v): run it there before rewinding the old primary with pg_rewind", err))
	}
	res.Warnings = append(res.Warnings, fmt.Sprintf("the old primary %s is out of the shard: to bring it back as a replica, rewind it from %s (pg_rewind) and run shardctl shards add-replica %s %s (docs/replicas.md)", sh.Primary, c.Addr, shard, sh.Primary))
	res.Message = fmt.Sprintf("shard %s: %s promoted to primary (was %s); topology version %d", shard, c.Addr, sh.Primary, res.Version)
	res.Duration = time.Since(start).Round(time.Millisecond).String()
	return res, nil
}

func fenceHint(res *FailoverResult) string {
	if res.Fence == "fenced" {
		return fmt.Sprintf("; note the old primary %s is fenced read-only: undo with ALTER SYSTEM RESET default_transaction_read_only; SELECT pg_reload_conf() if it should stay primary", res.OldPrimary)
	}
	return ""
}

// fence makes the old primary refuse writes (best effort) and returns its
// WAL insert position afterwards. An error means it could not be reached
// or is not a primary any more.
func (s *Server) fence(ctx context.Context, addr string) (int64, string, error) {
	ctx, cancel := context.WithTimeout(ctx, failoverFenceTimeout)
	defer cancel()
	conn, err := s.opts.ShardConn(ctx, addr, "postgres")
	if err != nil {
		return 0, "", err
	}
	defer conn.Close(context.Background())
	var inRecovery bool
	if err := conn.QueryRow(ctx, "SELECT pg_is_in_recovery()").Scan(&inRecovery); err != nil {
		return 0, "", err
	}
	if inRecovery {
		return 0, "", errors.New("it is in recovery (not a primary)")
	}
	for _, q := range []string{
		"ALTER SYSTEM SET default_transaction_read_only = on",
		"SELECT pg_reload_conf()",
		"SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()",
	} {
		if _, err := conn.Exec(ctx, q); err != nil {
			return 0, "", fmt.Errorf("%s: %w", q, err)
		}
	}
	var lsn int64
	var text string
	err = conn.QueryRow(ctx, "SELECT (pg_current_wal_insert_lsn() - '0/0')::bigint, pg_current_wal_insert_lsn()::text").Scan(&lsn, &text)
	return lsn, text, err
}

// candidate is a replica with its WAL positions in numbers.
type candidate struct {
	FailoverCandidate
	receive, replay int64  // bytes since 0/0
	slot            string // its primary_slot_name
	conninfo        string // its primary_conninfo
}

// position is the most WAL the replica has (received or replayed), in
// bytes since 0/0 and as text.
func (c candidate) position() int64 { return max(c.receive, c.replay) }

func (c candidate) positionText() string {
	if c.replay > c.receive {
		return c.ReplayLSN
	}
	return c.ReceiveLSN
}

// candidateQuery reads a replica's state; WAL positions come as text and
// as bytes since 0/0 (to compare positions of different servers).
const candidateQuery = `SELECT pg_is_in_recovery(),
	COALESCE(pg_last_wal_receive_lsn()::text, ''), COALESCE(pg_last_wal_replay_lsn()::text, ''),
	COALESCE((pg_last_wal_receive_lsn() - '0/0')::bigint, 0), COALESCE((pg_last_wal_replay_lsn() - '0/0')::bigint, 0),
	current_setting('primary_slot_name'), current_setting('primary_conninfo')`

// inspectReplicas reads every replica's WAL positions in parallel.
func (s *Server) inspectReplicas(ctx context.Context, addrs []string) []candidate {
	out := make([]candidate, len(addrs))
	var wg sync.WaitGroup
	for i, addr := range addrs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			out[i] = s.inspectReplica(ctx, addr)
		}()
	}
	wg.Wait()
	return out
}

func (s *Server) inspectReplica(ctx context.Context, addr string) candidate {
	c := candidate{FailoverCandidate: FailoverCandidate{Addr: addr}}
	ctx, cancel := context.WithTimeout(ctx, failoverFenceTimeout)
	defer cancel()
	conn, err := s.opts.ShardConn(ctx, addr, "postgres")
	if err != nil {
		c.Error = err.Error()
		return c
	}
	defer conn.Close(context.Background())
	if err := conn.QueryRow(ctx, candidateQuery).Scan(&c.InRecovery, &c.ReceiveLSN, &c.ReplayLSN, &c.receive, &c.replay, &c.slot, &c.conninfo); err != nil {
		c.Error = err.Error()
		return c
	}
	c.Reachable = true
	return c
}

// waitReceived gives the candidates up to failoverCatchUpWait to receive
// the fenced primary's WAL up to lsn (a planned switchover then loses
// nothing, also with asynchronous replication).
func (s *Server) waitReceived(ctx context.Context, addrs []string, cands []candidate, to string, lsn int64) []candidate {
	deadline := time.Now().Add(failoverCatchUpWait)
	for {
		if i := chooseCandidate(cands, to); i < 0 || cands[i].position() >= lsn || time.Now().After(deadline) {
			return cands
		}
		select {
		case <-ctx.Done():
			return cands
		case <-time.After(50 * time.Millisecond):
		}
		cands = s.inspectReplicas(ctx, addrs)
	}
}

// chooseCandidate returns the index of the replica to promote: to if
// given and usable, else the reachable replica with the most WAL (a
// replica already out of recovery is usable only when named: it is a
// retry). -1 if none.
func chooseCandidate(cands []candidate, to string) int {
	best := -1
	for i, c := range cands {
		if !c.Reachable {
			continue
		}
		if to != "" {
			if c.Addr == to {
				return i
			}
			continue
		}
		if c.InRecovery && (best < 0 || c.position() > cands[best].position()) {
			best = i
		}
	}
	return best
}

func describeCandidates(cands []candidate) string {
	var parts []string
	for _, c := range cands {
		switch {
		case !c.Reachable:
			parts = append(parts, fmt.Sprintf("%s unreachable (%s)", c.Addr, c.Error))
		case !c.InRecovery:
			parts = append(parts, fmt.Sprintf("%s is not in recovery (already promoted? pass it with --to to record it)", c.Addr))
		}
	}
	return strings.Join(parts, "; ")
}

// promote runs pg_promote on addr and checks it left recovery.
func (s *Server) promote(ctx context.Context, addr string) error {
	ctx, cancel := context.WithTimeout(ctx, failoverPromoteTimeout)
	defer cancel()
	conn, err := s.opts.ShardConn(ctx, addr, "postgres")
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	var ok, inRecovery bool
	if err := conn.QueryRow(ctx, "SELECT pg_promote(true, 60)").Scan(&ok); err != nil {
		return err
	}
	if err := conn.QueryRow(ctx, "SELECT pg_is_in_recovery()").Scan(&inRecovery); err != nil {
		return err
	}
	if !ok || inRecovery {
		return fmt.Errorf("pg_promote returned %v and the server is still in recovery after 60 s", ok)
	}
	return nil
}

// checkpoint runs CHECKPOINT on addr.
func (s *Server) checkpoint(ctx context.Context, addr string) error {
	ctx, cancel := context.WithTimeout(ctx, failoverStreamWait)
	defer cancel()
	return s.withConn(ctx, addr, func(c *pgx.Conn) error {
		_, err := c.Exec(ctx, "CHECKPOINT")
		return err
	})
}

// repointAll points every other replica at the new primary, in parallel.
func (s *Server) repointAll(ctx context.Context, primary string, promotedAt candidate, others []candidate) []ReplicaRepoint {
	out := make([]ReplicaRepoint, len(others))
	var wg sync.WaitGroup
	for i, o := range others {
		wg.Add(1)
		go func() {
			defer wg.Done()
			out[i] = s.repoint(ctx, primary, promotedAt, o)
		}()
	}
	wg.Wait()
	return out
}

// repoint makes one replica follow primary and waits until it streams.
func (s *Server) repoint(ctx context.Context, primary string, promotedAt candidate, r candidate) ReplicaRepoint {
	out := ReplicaRepoint{Addr: r.Addr, Slot: r.slot}
	if !r.Reachable {
		out.State, out.Detail = RepointUnreachable, "not reachable before the promotion: "+r.Error+"; re-clone it from the new primary, or repoint it once it is back"
		return out
	}
	if !r.InRecovery {
		out.State, out.Detail = RepointNeedsReclone, "it is not in recovery (a second primary?): re-clone it from the new primary"
		return out
	}
	if r.position() > promotedAt.position() {
		out.State = RepointNeedsReclone
		out.Detail = fmt.Sprintf("it has WAL up to %s, past the new primary's %s (diverged): re-clone it (pg_basebackup, or pg_rewind)", r.positionText(), promotedAt.positionText())
		return out
	}
	host, port, err := net.SplitHostPort(primary)
	if err != nil {
		out.State, out.Detail = RepointNeedsReclone, err.Error()
		return out
	}
	conninfo, err := rewriteConninfo(r.conninfo, host, port)
	if err != nil {
		out.State, out.Detail = RepointNeedsReclone, fmt.Sprintf("cannot rewrite its primary_conninfo: %v; set it by hand", err)
		return out
	}
	if err := s.repointSteps(ctx, primary, r.Addr, r.slot, conninfo); err != nil {
		out.State, out.Detail = RepointUnreachable, err.Error()
		return out
	}
	if err := s.waitStreaming(ctx, r.Addr, port); err != nil {
		out.State, out.Detail = RepointNeedsReclone, err.Error()+"; check its log: if it cannot follow the new timeline, re-clone it"
		return out
	}
	out.State, out.Detail = RepointStreaming, "streams from "+primary
	return out
}

func (s *Server) repointSteps(ctx context.Context, primary, addr, slot, conninfo string) error {
	ctx, cancel := context.WithTimeout(ctx, failoverFenceTimeout)
	defer cancel()
	if slot != "" {
		pc, err := s.opts.ShardConn(ctx, primary, "postgres")
		if err != nil {
			return fmt.Errorf("creating its slot %s on the new primary: %w", slot, err)
		}
		_, err = pc.Exec(ctx, `SELECT pg_create_physical_replication_slot($1, true)
			WHERE NOT EXISTS (SELECT 1 FROM pg_replication_slots WHERE slot_name = $1)`, slot)
		pc.Close(context.Background())
		if err != nil {
			return fmt.Errorf("creating its slot %s on the new primary: %w", slot, err)
		}
	}
	conn, err := s.opts.ShardConn(ctx, addr, "postgres")
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	if _, err := conn.Exec(ctx, "ALTER SYSTEM SET primary_conninfo = "+quoteLiteral(conninfo)); err != nil {
		return err
	}
	_, err = conn.Exec(ctx, "SELECT pg_reload_conf()")
	return err
}

// waitStreaming waits until addr's WAL receiver streams from port.
func (s *Server) waitStreaming(ctx context.Context, addr, port string) error {
	ctx, cancel := context.WithTimeout(ctx, failoverStreamWait)
	defer cancel()
	var conn *pgx.Conn
	defer func() {
		if conn != nil {
			conn.Close(context.Background())
		}
	}()
	last := "no WAL receiver"
	for {
		if conn == nil {
			conn, _ = s.opts.ShardConn(ctx, addr, "postgres")
		}
		if conn != nil {
			var status string
			var senderPort int
			err := conn.QueryRow(ctx, "SELECT status, COALESCE(sender_port, 0) FROM pg_stat_wal_receiver").Scan(&status, &senderPort)
			switch {
			case err == nil && status == "streaming" && strconv.Itoa(senderPort) == port:
				return nil
			case err == nil:
				last = fmt.Sprintf("WAL receiver %s from port %d", status, senderPort)
			case errors.Is(err, pgx.ErrNoRows):
				last = "no WAL receiver"
			default:
				conn.Close(context.Background())
				conn = nil
				last = err.Error()
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("not streaming from the new primary after %s (%s)", failoverStreamWait, last)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// rewriteConninfo returns a libpq keyword/value connection string with
// host and port replaced (hostaddr dropped) and every other keyword kept.
func rewriteConninfo(conninfo, host, port string) (string, error) {
	kvs, err := parseConninfo(conninfo)
	if err != nil {
		return "", err
	}
	parts := []string{"host=" + conninfoQuote(host), "port=" + conninfoQuote(port)}
	for _, kv := range kvs {
		switch kv[0] {
		case "host", "hostaddr", "port":
		default:
			parts = append(parts, kv[0]+"="+conninfoQuote(kv[1]))
		}
	}
	return strings.Join(parts, " "), nil
}

// parseConninfo splits "k=v k2='quoted \' value'" into pairs (libpq's
// keyword/value format; URIs are not accepted).
func parseConninfo(s string) ([][2]string, error) {
	var out [][2]string
	i := 0
	skip := func() {
		for i < len(s) && (s[i] == ' ' || s[i] == '\t' || s[i] == '\n' || s[i] == '\r') {
			i++
		}
	}
	for {
		skip()
		if i >= len(s) {
			return out, nil
		}
		k := i
		for i < len(s) && s[i] != '=' && s[i] != ' ' {
			i++
		}
		key := s[k:i]
		skip()
		if i >= len(s) || s[i] != '=' || key == "" {
			return nil, fmt.Errorf("bad connection string near %q", s[k:])
		}
		i++
		skip()
		var b strings.Builder
		if i < len(s) && s[i] == '\'' {
			i++
			closed := false
			for i < len(s) {
				switch c := s[i]; {
				case c == '\\' && i+1 < len(s):
					b.WriteByte(s[i+1])
					i += 2
				case c == '\'':
					i++
					closed = true
				default:
					b.WriteByte(c)
					i++
				}
				if closed {
					break
				}
			}
			if !closed {
				return nil, errors.New("unterminated quoted value in connection string")
			}
		} else {
			for i < len(s) && s[i] != ' ' && s[i] != '\t' && s[i] != '\n' {
				if s[i] == '\\' && i+1 < len(s) {
					i++
				}
				b.WriteByte(s[i])
				i++
			}
		}
		out = append(out, [2]string{key, b.String()})
	}
}

// conninfoQuote quotes a connection string value.
func conninfoQuote(v string) string {
	return "'" + strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(v) + "'"
}

// quoteLiteral quotes a SQL string literal (standard_conforming_strings).
func quoteLiteral(v string) string { return "'" + strings.ReplaceAll(v, "'", "''") + "'" }
