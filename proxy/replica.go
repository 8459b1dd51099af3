package proxy

import (
	"fmt"
	"strings"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/shardproxy/shardproxy/planner/plan"
	"github.com/shardproxy/shardproxy/proxy/config"
	"github.com/shardproxy/shardproxy/proxy/pool"
	"github.com/shardproxy/shardproxy/proxy/sqlclass"
	"github.com/shardproxy/shardproxy/topology"
)

// Read/write splitting (docs/replicas.md).
//
// Which server a session attaches to is decided in one place, pickServer,
// called by ensureServer before every attach. It takes the server a read
// decision chose (rep.readAddr, set just before by attachForRead) or else
// the primary of the shard — so every path that does not ask for a replica
// explicitly gets the primary. Reads are decided:
//
//   - unsharded topologies: splitQuery (simple Query) and splitStatement
//     (Parse, Bind, statement Describe) classify the statement with
//     sqlclass.ReplicaAccess; autocommit reads and BEGIN READ ONLY go to
//     readTarget's choice, everything else to the primary. A write that
//     arrives while a replica connection is attached (pipelining) first
//     leaves the replica: what was sent there is answered and synced, the
//     connection released, and the write goes to a primary connection.
//   - sharded topologies: the same rules per shard (replicaRead,
//     useShardAs): simple-query Routes (useShardFor), extended-protocol
//     Routes (routeBind), and the parts of reads the proxy runs itself
//     (runReadPart, startScatter), when the planner marked them ReadOnly
//     and the classifier agrees, and every shard of a BEGIN READ ONLY
//     transaction. A read keeps a connection the session already has on
//     the shard. A non-read that needs a shard whose connection is a
//     replica's leaves it first — the active one (leaveReplicaFor) or a
//     held one (leaveHeldReplica) — so a write never runs there.
//
// Read-your-writes: every use of a primary that is not a read decision
// marks its shard dirty. At the next read decision with nothing in flight
// and no transaction open, a dirty shard becomes a mark "the session's
// writes there had committed by time T". The first primary WAL position
// sample (healthMonitor) taken after T is at or past those commits;
// replicas qualify once they replayed up to it. Until such a sample
// exists, reads of the shard go to the primary.

// replicaState is the session's read/write splitting state.
type replicaState struct {
	role     string              // SET shardproxy.target_role ("" = replicas.target_role)
	readAddr string              // one-shot: the server the next attach must use
	dirty    map[string]bool     // shards used for writing since the last read decision
	ryw      map[string]*rywMark // shard → the session's last committed writes
	// sticky numbers the session for balance: sticky (0 until its first
	// read decision): it reads from the qualifying server at that position
	// in the shard's list, so sessions spread evenly and each keeps its
	// server while the list stays the same.
	sticky uint64
}

// rywMark is what read-your-writes remembers per shard.
type rywMark struct {
	primary string    // the primary the writes went to
	after   time.Time // they had committed by then
	lsn     uint64    // a primary WAL position at or past them; 0 until sampled
}

// errNoReplica is returned when target_role = replica and no replica of the
// shard can take reads.
func errNoReplica(shard string) error {
	return &plan.Error{Code: "57P03",
		Message: fmt.Sprintf("no replica of shard %s can take reads now (all down or lagging beyond replicas.max_lag_bytes / max_lag)", shard),
		Hint:    "SET shardproxy.target_role = any to let the primary answer"}
}

// targetRole returns the session's effective target role.
func (ss *session) targetRole() string {
	if ss.rep.role != "" {
		return ss.rep.role
	}
	return ss.srv.config().Replicas.TargetRole
}

// readOnlyFunc reports whether a function is configured as read-only.
func (s *Server) readOnlyFunc(name string) bool {
	for _, f := range s.config().Replicas.ReadOnlyFunctions {
		if f == name || strings.HasSuffix(f, "."+name) {
			return true
		}
	}
	return false
}

func (ss *session) access(sql string) sqlclass.Access {
	return sqlclass.ReplicaAccess(sql, ss.srv.readOnlyFunc)
}

// replicaInfo is the shards with replicas of a snapshot, computed once.
type replicaInfo struct {
	shards map[string]topology.Shard // only shards that have replicas
}

type replicaInfoKey struct{}

func replicasOf(snap *topology.Snapshot) *replicaInfo {
	return snap.Memo(replicaInfoKey{}, func(s *topology.Snapshot) any {
		in := &replicaInfo{shards: make(map[string]topology.Shard)}
		for _, sh := range s.Shards() {
			if len(sh.Replicas) > 0 {
				in.shards[sh.Name] = sh
			}
		}
		return in
	}).(*replicaInfo)
}

// splitting reports whether read/write splitting applies to the session
// for shard at all.
func (ss *session) splitting(snap *topology.Snapshot, shard string) bool {
	if ss.sessionMode || len(ss.pinReasons) > 0 || ss.targetRole() == config.RolePrimary {
		return false
	}
	_, ok := replicasOf(snap).shards[shard]
	return ok
}

// primaryAddr returns the primary of shard ("" = the default shard).
func primaryAddr(snap *topology.Snapshot, shard string) string {
	if shard == "" || !snap.HasShard(shard) {
		shard = snap.DefaultShard()
	}
	return infoOf(snap).primary[shard]
}

// poolAt returns the session's pool for the server at addr.
func (ss *session) poolAt(addr string) *pool.Pool {
	if ss.pool != nil && ss.pool.Key().Backend == addr {
		return ss.pool
	}
	return ss.srv.poolFor(pool.Key{User: ss.key.User, Database: ss.key.Database, Backend: addr})
}

// pickServer chooses the pool of the next attach (see the package comment
// above): the read decision's server, else the shard's primary, which marks
// the shard dirty for read-your-writes.
func (ss *session) pickServer() {
	if addr := ss.rep.readAddr; addr != "" {
		ss.rep.readAddr = ""
		ss.pool = ss.poolAt(addr)
		return
	}
	snap := ss.srv.topo.Current()
	shard := ss.shard
	if shard == "" || !snap.HasShard(shard) {
		if ss.lastSharded && shard != "" && ss.pool != nil {
			// The planner chose shard (and its pool) from the snapshot
			// it planned with and the topology has dropped the shard
			// since: the statement runs there as planned (a shard
			// leaves only when it owns no data, and its pool stays
			// open) instead of on another shard's server under this
			// shard's name.
			return
		}
		shard = snap.DefaultShard()
		ss.shard = shard
	}
	if addr := infoOf(snap).primary[shard]; addr != "" && (ss.pool == nil || ss.pool.Key().Backend != addr) {
		ss.pool = ss.poolAt(addr)
	}
	if _, ok := replicasOf(snap).shards[shard]; ok {
		ss.markDirty(shard)
	}
}

func (ss *session) markDirty(shard string) {
	if ss.rep.dirty == nil {
		ss.rep.dirty = make(map[string]bool)
	}
	ss.rep.dirty[shard] = true
}

// onReplica reports whether the active server connection is not a primary.
func (ss *session) onReplica(snap *topology.Snapshot) bool {
	return ss.sc != nil && ss.pool != nil && ss.pool.Key().Backend != primaryAddr(snap, ss.shard)
}

// resolveDirty turns dirty shards into read-your-writes marks once nothing
// is in flight and no transaction is open: the writes have committed (or
// rolled back) by now.
func (ss *session) resolveDirty(snap *topology.Snapshot) {
	// In an extended-protocol batch the writes commit at its Sync; a batch
	// that has no server connection yet has sent nothing anywhere.
	inBatch := ss.batch && (ss.sc != nil || len(ss.held) > 0)
	if len(ss.rep.dirty) == 0 || ss.txStatus != 'I' || inBatch || ss.pendingCount() > 0 {
		return
	}
	now := time.Now()
	if ss.rep.ryw == nil {
		ss.rep.ryw = make(map[string]*rywMark)
	}
	for shard := range ss.rep.dirty {
		if p := primaryAddr(snap, shard); p != "" {
			ss.rep.ryw[shard] = &rywMark{primary: p, after: now}
			ss.srv.health.kick(p)
		}
	}
	clear(ss.rep.dirty)
}

// minReplayLSN returns the WAL position a replica of shard must have
// replayed for the session to read its own writes there; ok false means
// only the primary will do for now.
func (ss *session) minReplayLSN(snap *topology.Snapshot, shard string) (uint64, bool) {
	if ss.targetRole() == config.RoleReplica || !ss.srv.config().Replicas.ReadYourWritesOn() {
		return 0, true
	}
	if ss.rep.dirty[shard] {
		return 0, false
	}
	mark := ss.rep.ryw[shard]
	if mark == nil {
		return 0, true
	}
	if mark.primary != primaryAddr(snap, shard) {
		delete(ss.rep.ryw, shard) // failover: the new primary's replicas are judged by its own WAL
		return 0, true
	}
	if mark.lsn == 0 {
		b := ss.srv.health.get(mark.primary)
		var smp *lsnSample
		if b != nil {
			smp = b.sample.Load()
		}
		if smp == nil || !smp.start.After(mark.after) {
			ss.srv.health.kick(mark.primary)
			return 0, false
		}
		mark.lsn = smp.lsn
	}
	return mark.lsn, true
}

// readTarget returns the server a read on shard goes to: a qualifying
// replica (or the primary, when it takes reads) chosen by the balancing
// policy, else the primary; errNoReplica with target_role = replica.
func (ss *session) readTarget(snap *topology.Snapshot, shard string) (string, error) {
	sh := replicasOf(snap).shards[shard]
	role := ss.targetRole()
	minLSN, replicasOK := ss.minReplayLSN(snap, shard)
	if !replicasOK {
		return sh.Primary, nil
	}
	cfg := ss.srv.config().Replicas
	h := ss.srv.health
	var primaryLSN uint64
	if pb := h.get(sh.Primary); pb != nil && pb.up.Load() {
		primaryLSN = pb.lsn.Load()
	}
	var cands [8]string
	list := cands[:0]
	for _, r := range sh.Replicas {
		b := h.get(r)
		if b == nil || !b.up.Load() || !b.inRecovery.Load() {
			continue
		}
		replay := b.lsn.Load()
		if replay < minLSN {
			continue
		}
		if primaryLSN > replay {
			if cfg.MaxLagBytes >= 0 && primaryLSN-replay > uint64(cfg.MaxLagBytes) {
				continue
			}
			if cfg.MaxLag > 0 && time.Duration(b.replayAge.Load()) > cfg.MaxLag.D() {
				continue
			}
		}
		list = append(list, r)
	}
	if len(list) == 0 {
		if role == config.RoleReplica {
			return "", errNoReplica(shard)
		}
		return sh.Primary, nil
	}
	if role != config.RoleReplica && cfg.PrimaryTakesReads() {
		list = append(list, sh.Primary)
	}
	if len(list) == 1 {
		return list[0], nil
	}
	switch cfg.Balance {
	case config.BalanceSticky:
		if ss.rep.sticky == 0 {
			ss.rep.sticky = h.sessions.Add(1)
		}
		return list[ss.rep.sticky%uint64(len(list))], nil
	case config.BalanceLeastBusy:
		best, bestActive := "", -1
		for _, addr := range list {
			if a := ss.poolAt(addr).Stats().Active; bestActive < 0 || a < bestActive {
				best, bestActive = addr, a
			}
		}
		return best, nil
	}
	v, _ := h.rr.LoadOrStore(shard, new(atomic.Uint64))
	return list[v.(*atomic.Uint64).Add(1)%uint64(len(list))], nil
}

// attachForRead attaches a server connection for a read on shard. A
// replica that cannot be reached is taken out of rotation and the next
// one tried (nothing was sent yet); the primary is the last resort.
func (ss *session) attachForRead(snap *topology.Snapshot, shard string) error {
	ss.resolveDirty(snap)
	return ss.tryReadTargets(snap, shard, ss.ensureServer)
}

// tryReadTargets attaches readTarget's choice for a read on shard with
// attach (which finds it in rep.readAddr). A replica that cannot be
// reached is taken out of rotation and the next one tried (nothing was
// sent to it); after three, the primary.
func (ss *session) tryReadTargets(snap *topology.Snapshot, shard string, attach func() error) error {
	primary := primaryAddr(snap, shard)
	for attempt := 0; ; attempt++ {
		addr, err := ss.readTarget(snap, shard)
		if err != nil {
			return err
		}
		if attempt >= 3 {
			addr = primary
		}
		ss.rep.readAddr = addr
		err = attach()
		ss.rep.readAddr = ""
		if err == nil {
			if b := ss.srv.health.get(addr); b != nil {
				b.reads.Add(1)
			}
			return nil
		}
		if addr == primary || !unreachable(err) || ss.sc != nil || ss.skip {
			return err
		}
		ss.srv.health.markDown(addr, err)
	}
}

// unreachable reports whether an attach failed because the server could
// not be reached (as opposed to a full pool or a login error).
func unreachable(err error) bool {
	if isServerGone(err) {
		return true
	}
	f := toErrorFields(err)
	return strings.HasPrefix(f.Code, "08") || strings.HasPrefix(f.Code, "57P")
}

// leaveReplica gives back the attached replica connection before a
// statement that needs the primary: what was sent is answered, an open
// extended-protocol batch is synced on the replica (its statements only
// read, so ending their implicit transaction there changes nothing), and
// the connection is released. With ss.skip set afterwards (an error in
// what was answered) the caller must send nothing.
func (ss *session) leaveReplica() error {
	if err := ss.settle(); err != nil {
		return err
	}
	if ss.skip || ss.sc == nil {
		return nil
	}
	if ss.scBatch {
		if err := ss.runRaw(appendEmpty(nil, msgSync)); err != nil {
			if isServerGone(err) {
				ss.abandonServer(err)
				return nil
			}
			return err
		}
		ss.scBatch = false
	}
	ss.detach()
	return nil
}

// splitQuery runs a simple Query over an unsharded topology: reads to the
// server readTarget picks, everything else to the primary.
func (ss *session) splitQuery(snap *topology.Snapshot, body []byte) error {
	sql := trimNUL(body)
	if containsFold(sql, "shardproxy.target_role") {
		if st := sqlclass.ClassifyOne(string(sql)); strings.EqualFold(st.Name, "shardproxy.target_role") {
			ss.start = time.Now()
			return ss.targetRoleStatement(st)
		}
	}
	shard := snap.DefaultShard()
	if !ss.splitting(snap, shard) {
		return ss.relayQuery(body)
	}
	acc, read := ss.readDecision(string(sql))
	if ss.sc != nil && !read && ss.txStatus == 'I' && ss.onReplica(snap) {
		if err := ss.leaveReplica(); err != nil {
			return err
		}
	}
	if ss.sc == nil && read && ss.txStatus == 'I' {
		if err := ss.attachForRead(snap, shard); err != nil {
			return ss.queryFailed(err)
		}
	} else if acc == sqlclass.AccessWrite && !ss.onReplica(snap) {
		ss.markDirty(shard)
	}
	return ss.relayQuery(body)
}

// splitStatement places an extended-protocol message for statement e
// (Parse, Bind, statement Describe) over an unsharded topology before the
// caller attaches. The caller must send nothing when ss.skip is set after.
func (ss *session) splitStatement(e *stmtEntry) error {
	snap, sharded := ss.snapshot()
	if sharded || e == nil {
		return nil
	}
	shard := snap.DefaultShard()
	if !ss.splitting(snap, shard) {
		return nil
	}
	q := e.key
	if i := strings.IndexByte(q, 0); i >= 0 {
		q = q[:i]
	}
	acc, read := ss.readDecision(q)
	if ss.sc != nil {
		if !read && ss.txStatus == 'I' && ss.onReplica(snap) {
			if err := ss.leaveReplica(); err != nil || ss.skip {
				return err
			}
		}
		if acc == sqlclass.AccessWrite && !ss.onReplica(snap) {
			ss.markDirty(shard)
		}
		if ss.sc != nil {
			return nil
		}
	}
	if read && ss.txStatus == 'I' {
		return ss.attachForRead(snap, shard)
	}
	return nil
}

// readDecision classifies sql: read means it may go to a replica (a read,
// or BEGIN READ ONLY outside a transaction).
func (ss *session) readDecision(sql string) (sqlclass.Access, bool) {
	acc := ss.access(sql)
	if acc == sqlclass.AccessNeutral && ss.txStatus == 'I' {
		return acc, ss.beginsReadOnly(sqlclass.ClassifyOne(sql))
	}
	return acc, acc == sqlclass.AccessRead
}

// useShardFor is useShard for a simple-query statement over a sharded
// topology: autocommit reads (and every shard of a READ ONLY transaction,
// whatever its statements: PostgreSQL refuses writes there with 25006 on
// a replica as on the primary — a DECLARE the planner does not mark
// read-only included) may attach a replica. Inside an open
// extended-protocol batch a simple query stays on the primary.
func (ss *session) useShardFor(snap *topology.Snapshot, shard string, write bool, op plan.Operator) error {
	read := false
	if (!write || ss.readOnlyTx()) && (ss.txStatus != 'I' || !ss.batch) {
		read = ss.replicaRead(snap, shard, operatorSQL(op))
	}
	return ss.useShardAs(snap, shard, read)
}

// replicaRead reports whether a statement of sql on shard is a read
// decision over a sharded topology (extended protocol and proxy-run
// reads): splitting applies, and either no transaction is open and sql
// only reads (sqlclass.ReplicaAccess), or the open transaction (also one
// a BEGIN earlier in this batch opened) is READ ONLY. The caller checks
// that the planner marked the statement read-only.
func (ss *session) replicaRead(snap *topology.Snapshot, shard, sql string) bool {
	if ss.pullingForWrite || !ss.splitting(snap, shard) {
		return false
	}
	if ss.txBegin != "" || ss.txStatus != 'I' {
		return ss.readOnlyTx()
	}
	return ss.access(sql) == sqlclass.AccessRead
}

// readOnlyTx reports whether the open transaction (also one a BEGIN
// earlier in this batch opened) is READ ONLY: begun READ ONLY, or begun
// without READ WRITE in a session whose transactions default to READ
// ONLY.
func (ss *session) readOnlyTx() bool {
	if ss.txBegin == "" {
		return false
	}
	return ss.beginsReadOnly(sqlclass.ClassifyOne(ss.txBegin))
}

// beginsReadOnly reports whether st is a BEGIN of a READ ONLY
// transaction: READ ONLY, or no READ WRITE in a session whose
// transactions default to READ ONLY.
func (ss *session) beginsReadOnly(st sqlclass.Statement) bool {
	if st.Kind != sqlclass.Begin {
		return false
	}
	return st.ReadOnly || (!strings.Contains(strings.ToUpper(st.Value), "READ WRITE") && ss.defaultReadOnly())
}

// defaultReadOnly reports whether the session's transactions default to
// READ ONLY: default_transaction_read_only set by SET, set_config, the
// startup options or SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY
// (recorded as that parameter). A value it cannot read says false: the
// primary is always right.
func (ss *session) defaultReadOnly() bool {
	stmt, ok := ss.settings["default_transaction_read_only"]
	if !ok {
		return false
	}
	switch strings.ToLower(strings.Trim(sqlclass.ClassifyOne(stmt).Value, "'\" ")) {
	case "on", "true", "yes", "1":
		return true
	}
	return false
}

// useShardAs is useShard for a statement that is a read decision (read)
// or not. A read keeps the connection the session already has on shard
// (a replica's, or the primary's after a write earlier in the batch),
// else attaches readTarget's choice.
func (ss *session) useShardAs(snap *topology.Snapshot, shard string, read bool) error {
	if !read {
		return ss.useShard(snap, shard)
	}
	if addr := ss.shardConnAddr(shard); addr != "" {
		return ss.useShardKeeping(snap, shard, addr)
	}
	ss.resolveDirty(snap)
	return ss.tryReadTargets(snap, shard, func() error { return ss.useShard(snap, shard) })
}

// useShardKeeping makes the session's connection to addr on shard (active
// or held) the active one without the checks of leaveReplicaFor: readAddr
// set marks the use as a read decision, and useShard returns before it
// would attach.
func (ss *session) useShardKeeping(snap *topology.Snapshot, shard, addr string) error {
	ss.rep.readAddr = addr
	err := ss.useShard(snap, shard)
	ss.rep.readAddr = ""
	return err
}

// usePortalShard makes the connection a portal was bound on active again
// (Describe, Execute): a replica's stays in use; with none, useShard.
func (ss *session) usePortalShard(snap *topology.Snapshot, shard string) error {
	if addr := ss.shardConnAddr(shard); addr != "" {
		return ss.useShardKeeping(snap, shard, addr)
	}
	return ss.useShard(snap, shard)
}

// useShardForStatement makes shard's connection active for a Parse or a
// statement Describe, which only prepare: the session's connection there
// (a replica's too) is kept, else the primary's is attached without
// marking the shard dirty for read-your-writes.
func (ss *session) useShardForStatement(snap *topology.Snapshot, shard string) error {
	addr := ss.shardConnAddr(shard)
	if addr == "" {
		addr = infoOf(snap).primary[shard]
	}
	if addr == "" {
		return ss.useShard(snap, shard) // unknown shard: its error
	}
	return ss.useShardKeeping(snap, shard, addr)
}

// shardConnAddr returns the server of the session's connection on shard,
// active or held ("" = none).
func (ss *session) shardConnAddr(shard string) string {
	if ss.sc != nil && ss.pool != nil && ss.shard == shard {
		return ss.pool.Key().Backend
	}
	for _, h := range ss.held {
		if h.shard == shard {
			return h.pool.Key().Backend
		}
	}
	return ""
}

// leaveHeldReplica is useShard's check of a held connection about to be
// taken back for something that is not a read decision: a replica's,
// outside a transaction, is given back instead (its open batch synced:
// it only read, and its answers were relayed when it was parked), so the
// statement goes to the primary. It reports whether held[i] was left.
func (ss *session) leaveHeldReplica(snap *topology.Snapshot, i int) bool {
	h := &ss.held[i]
	if ss.rep.readAddr != "" || ss.txStatus != 'I' || ss.txBegin != "" || h.pool.Key().Backend == primaryAddr(snap, h.shard) {
		return false
	}
	if h.needSync {
		status, err := ss.exchangeHeld(h, appendEmpty(nil, msgSync))
		if isServerGone(err) {
			return true // exchangeHeld dropped it
		}
		h.needSync, h.inTx = false, status != 'I'
	}
	h2 := *h // before the removal shifts the next held connection into h
	ss.held = append(ss.held[:i], ss.held[i+1:]...)
	h2.br.Reset(nil)
	readerPool.Put(h2.br)
	if h2.inTx {
		h2.sc.MarkBroken()
		h2.pool.Discard(h2.sc)
	} else {
		h2.pool.Release(h2.sc, false)
	}
	return true
}

// operatorSQL is the SQL a relayed operator sends.
func operatorSQL(op plan.Operator) string {
	if r, ok := op.(*plan.Route); ok {
		return r.SQL
	}
	return ""
}

// leaveReplicaFor is useShard's check that the active connection may serve
// what comes next: a replica connection outside a transaction serves only
// read decisions and is left (leaveReplica) otherwise. Every other use of
// a primary marks its shard dirty.
func (ss *session) leaveReplicaFor(snap *topology.Snapshot) error {
	if ss.rep.readAddr != "" || ss.sc == nil {
		return nil
	}
	if ss.onReplica(snap) {
		if ss.txStatus != 'I' {
			return nil
		}
		if ss.execing {
			// A statement the proxy runs itself (a scatter read whose
			// other shards read replicas) may still be reading this
			// connection: it stays with the session, parked, instead of
			// going back to the pool with its answer in flight.
			if err := ss.settle(); err != nil || ss.skip || ss.sc == nil {
				return err
			}
			ss.park()
			return nil
		}
		return ss.leaveReplica()
	}
	if _, ok := replicasOf(snap).shards[ss.shard]; ok {
		ss.markDirty(ss.shard)
	}
	return nil
}

// targetRoleStatement answers SET / RESET / SHOW shardproxy.target_role.
func (ss *session) targetRoleStatement(st sqlclass.Statement) error {
	switch st.Kind {
	case sqlclass.Set, sqlclass.Reset:
		v := ""
		if st.Kind == sqlclass.Set {
			v = st.Value
		}
		if err := ss.setTargetRole(v); err != nil {
			return ss.queryFailed(err)
		}
		return ss.querySynthetic(map[sqlclass.Kind]string{sqlclass.Set: "SET", sqlclass.Reset: "RESET"}[st.Kind])
	case sqlclass.Show:
		ss.showSetting("shardproxy.target_role", ss.targetRole())
		return ss.querySynthetic("SHOW")
	}
	return ss.queryFailed(&plan.Unsupported{Message: "shardproxy.target_role can only be SET, RESET or SHOWn"})
}

// setTargetRole sets shardproxy.target_role ("" resets it).
func (ss *session) setTargetRole(v string) error {
	v = strings.ToLower(strings.Trim(strings.TrimSpace(v), `'"`))
	switch v {
	case "", "default":
		ss.rep.role = ""
	case config.RoleAny, config.RolePrimary, config.RoleReplica:
		ss.rep.role = v
	default:
		return &plan.Error{Code: "22023", Message: fmt.Sprintf("invalid value for parameter \"shardproxy.target_role\": %q", v),
			Hint: "Available values: primary, replica, any."}
	}
	return nil
}

// showSetting appends the rows of SHOW name = value.
func (ss *session) showSetting(name, value string) {
	ss.out = appendEncoded(ss.out, &pgproto3.RowDescription{Fields: []pgproto3.FieldDescription{{Name: []byte(name), DataTypeOID: 25, DataTypeSize: -1, TypeModifier: -1}}})
	ss.out = appendMsg(ss.out, msgDataRow, dataRowText(value))
}

// containsFold reports whether s contains the lower-case ASCII word w,
// ignoring ASCII case.
func containsFold(s []byte, w string) bool {
	for i := 0; i+len(w) <= len(s); i++ {
		if (s[i]|0x20) == w[0] && hasPrefixFold(s[i:], w) {
			return true
		}
	}
	return false
}

// failSplit reports splitStatement's error like failExtended; after a
// skip (an error already answered) it does nothing.
func (ss *session) failSplit(err error) error {
	if err == nil {
		return nil
	}
	return ss.failExtended(err)
}
