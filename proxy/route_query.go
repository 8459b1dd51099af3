package proxy

import (
	"errors"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/shardproxy/shardproxy/planner"
	"github.com/shardproxy/shardproxy/planner/plan"
	"github.com/shardproxy/shardproxy/topology"
)

// handleQuery serves a simple Query: planned and routed over a sharded
// topology, relayed as it is otherwise.
func (ss *session) handleQuery(body []byte) error {
	// A simple Query drops the client's unnamed statement, as on
	// PostgreSQL (a later Bind of it fails with 26000).
	delete(ss.stmts, "")
	ss.txEndInBatch = false
	snap, sharded := ss.snapshot()
	if sharded {
		return ss.routeQuery(snap, body)
	}
	return ss.splitQuery(snap, body)
}

// routeQuery plans a simple Query and runs it.
func (ss *session) routeQuery(snap *topology.Snapshot, body []byte) error {
	ss.start = time.Now()
	sql := string(trimNUL(body))
	a, err := ss.srv.planner.Analyze(sql)
	if err != nil {
		return ss.queryFailed(err)
	}
	if err := ss.loadCatalog(snap, a); err != nil {
		return ss.queryFailed(err)
	}
	if ss.codeOnListedTables(snap, a) {
		if f, ok := planner.ParseTempInsertFunction(sql); ok {
			return ss.tempInsertFunction(snap, f)
		}
		return ss.queryFailed(codeRefusal)
	}
	snap, op, err := ss.planHeld(snap, func(s *topology.Snapshot) (plan.Operator, error) {
		return ss.srv.planner.Plan(s, a, planner.Params{ForcedShard: ss.forcedShard})
	})
	if err != nil {
		return ss.queryFailed(err)
	}
	ss.noteRoute(op)
	switch o := op.(type) {
	case *plan.Route:
		if o.SQL == sql && o.ParamIndexes == nil {
			shard := o.Shard
			if o.ReadAnyShard && ss.sc != nil && snap.HasShard(ss.shard) {
				shard = ss.shard
			}
			ss.noteDeclare(a, shard)
			return ss.relayRouted(snap, shard, !o.ReadOnly, op, body)
		}
	case *plan.Session:
		return ss.sessionQuery(snap, o, body)
	case *plan.Sequence:
		return ss.sequenceQuery(snap, a, o, body)
	}
	return ss.execQuery(snap, op)
}

// queryFailed answers a simple Query with err; inside a transaction block
// the transaction is aborted, as PostgreSQL does.
func (ss *session) queryFailed(err error) error {
	var sg *errServerGone
	if errors.As(err, &sg) || errors.Is(err, errClientGone) {
		return err
	}
	ss.sendError(toErrorFields(err))
	ss.failInTx()
	ss.out = appendRFQ(ss.out, ss.txStatus)
	ss.start = time.Time{}
	return nil
}

// querySynthetic answers a simple Query with a command tag.
func (ss *session) querySynthetic(tag string) error {
	ss.out = appendCommandComplete(ss.out, tag)
	ss.out = appendRFQ(ss.out, ss.txStatus)
	ss.observeRequest()
	ss.start = time.Time{}
	return nil
}

// relayRouted relays a simple Query to shard.
func (ss *session) relayRouted(snap *topology.Snapshot, shard string, write bool, op plan.Operator, body []byte) error {
	if ss.blockedByAbort(shard) {
		return ss.queryFailed(&sqlError{abortedError})
	}
	if write {
		if err := ss.checkWrite([]string{shard}); err != nil {
			return ss.queryFailed(err)
		}
	}
	if err := ss.useShardFor(snap, shard, write, op); err != nil {
		return ss.queryFailed(err)
	}
	ss.routeNotice(op)
	return ss.relayQuery(body)
}

// execQuery runs a plan the proxy executes itself for a simple Query.
func (ss *session) execQuery(snap *topology.Snapshot, op plan.Operator) error {
	ss.routeNotice(op)
	if err := ss.settle(); err != nil {
		return err
	}
	ss.execing = true
	out := &execOut{simple: true}
	tag, err := ss.execPlan(snap, op, planner.Params{ForcedShard: ss.forcedShard}, nil, out)
	ss.execing = false
	if err != nil {
		return ss.queryFailed(err)
	}
	ss.noteSchemaChange(tag)
	return ss.querySynthetic(tag)
}

// sequenceQuery runs a multi-statement query string. It is relayed whole
// when all its statements belong on one shard; otherwise the proxy runs
// its statements one at a time (sequenceOneByOne).
func (ss *session) sequenceQuery(snap *topology.Snapshot, a *planner.Analysis, seq *plan.Sequence, body []byte) error {
	shard, write, whole := "", false, true
	for _, st := range seq.Statements {
		switch o := st.(type) {
		case *plan.Route:
			if o.ReadAnyShard && shard != "" {
				continue
			}
			if shard != "" && shard != o.Shard {
				if o.ReadAnyShard {
					continue
				}
				whole = false
			}
			shard = o.Shard
			write = write || !o.ReadOnly
		case *plan.Session:
			if o.Proxy {
				return ss.queryFailed(&plan.Unsupported{Message: "SET shardproxy.* must be sent as a query of its own"})
			}
			if o.Kind == "transaction" && savepointStatement[o.Name] != "" {
				// Run one by one, so that shards joining the transaction
				// later get the savepoint too (recordReplay).
				whole = false
			}
		default:
			whole = false
		}
	}
	if shard == "" {
		shard = ss.sessionStatementShard(snap)
	}
	for _, s := range ss.txShards() {
		if s != shard {
			whole = false
		}
	}
	if ss.txStatus == 'E' {
		// The failure may not be this shard's (another shard's, or one the
		// proxy raised): a COMMIT or ROLLBACK in the string must end the
		// block everywhere, and nothing else may run before it.
		whole = false
	}
	if !whole {
		return ss.sequenceOneByOne(snap, a, seq)
	}
	return ss.relayRouted(snap, shard, write, seq, body)
}

// sessionQuery handles statements the planner leaves to the session rules.
func (ss *session) sessionQuery(snap *topology.Snapshot, o *plan.Session, body []byte) error {
	if o.Proxy {
		return ss.proxySetting(snap, o)
	}
	switch o.Kind {
	case "transaction":
		return ss.txControl(snap, o, body)
	case "empty":
		ss.out = appendEmpty(ss.out, msgEmptyQuery)
		ss.out = appendRFQ(ss.out, ss.txStatus)
		ss.start = time.Time{}
		return nil
	case "fetch", "close":
		if handled, err := ss.cursorQuery(o); handled {
			return err
		}
		if shard, ok := ss.cursors[strings.ToLower(o.Name)]; ok {
			if o.Kind == "close" {
				delete(ss.cursors, strings.ToLower(o.Name))
			}
			return ss.relayRouted(snap, shard, false, o, body)
		}
	case "prepare", "execute":
		return ss.queryFailed(&plan.Unsupported{
			Message: "SQL-level PREPARE/EXECUTE is not routed over several shards yet",
			Hint:    "use your driver's prepared statements (the extended protocol), which are routed by their parameters",
		})
	case "listen", "unlisten", "notify":
		return ss.relayRouted(snap, snap.DefaultShard(), false, o, body)
	case "set", "reset", "set_local":
		if ss.inTransaction() {
			return ss.setInTx(snap, o, body)
		}
	}
	return ss.relayRouted(snap, ss.sessionStatementShard(snap), false, o, body)
}

// proxySetting handles SET/RESET/SHOW of shardproxy.* settings.
func (ss *session) proxySetting(snap *topology.Snapshot, o *plan.Session) error {
	name := strings.ToLower(o.Name)
	switch o.Kind {
	case "set", "reset":
		val := o.Value
		if o.Kind == "reset" {
			val = ""
		}
		switch name {
		case "shardproxy.shard":
			if val != "" && !snap.HasShard(val) {
				return ss.queryFailed(&plan.Error{Code: "42704", Message: "shard \"" + val + "\" does not exist",
					Hint: "shards: " + strings.Join(snap.ShardNames(), ", ")})
			}
			ss.forcedShard = val
		case "shardproxy.show_routes":
			on, ok := parseBoolSetting(val)
			if !ok {
				return ss.queryFailed(&plan.Error{Code: "22023", Message: "parameter \"shardproxy.show_routes\" requires a Boolean value"})
			}
			ss.showRoutes = on
		case "shardproxy.target_role":
			if err := ss.setTargetRole(val); err != nil {
				return ss.queryFailed(err)
			}
		default:
			return ss.queryFailed(&plan.Error{Code: "42704", Message: "unrecognized configuration parameter \"" + o.Name + "\"",
				Hint: "shardproxy settings: shardproxy.shard, shardproxy.show_routes, shardproxy.target_role"})
		}
		return ss.querySynthetic(strings.ToUpper(o.Kind))
	case "show":
		var val string
		switch name {
		case "shardproxy.shard":
			val = ss.forcedShard
		case "shardproxy.show_routes":
			val = "off"
			if ss.showRoutes {
				val = "on"
			}
		case "shardproxy.target_role":
			val = ss.targetRole()
		default:
			return ss.queryFailed(&plan.Error{Code: "42704", Message: "unrecognized configuration parameter \"" + o.Name + "\""})
		}
		ss.out = appendEncoded(ss.out, &pgproto3.RowDescription{Fields: []pgproto3.FieldDescription{{Name: []byte(name), DataTypeOID: 25, DataTypeSize: -1, TypeModifier: -1}}})
		ss.out = appendMsg(ss.out, msgDataRow, dataRowText(val))
		return ss.querySynthetic("SHOW")
	}
	return ss.queryFailed(&plan.Unsupported{Message: o.Kind + " of shardproxy settings is not supported"})
}

func parseBoolSetting(v string) (bool, bool) {
	switch strings.ToLower(strings.Trim(v, "'\" ")) {
	case "", "off", "false", "0", "no", "f", "n":
		return false, true
	case "on", "true", "1", "yes", "t", "y":
		return true, true
	}
	return false, false
}

// txControl handles transaction control over several shards.
func (ss *session) txControl(snap *topology.Snapshot, o *plan.Session, body []byte) error {
	switch o.Name {
	case "begin":
		if ss.txStatus != 'I' || ss.sc != nil {
			if ss.txStatus == 'I' {
				ss.txBegin = o.SQL
			}
			return ss.relayRouted(snap, ss.sessionStatementShard(snap), false, o, body)
		}
		// Opened lazily: each shard gets the BEGIN when the transaction
		// first touches it.
		ss.txBegin = o.SQL
		ss.txStatus = 'T'
		return ss.querySynthetic("BEGIN")
	case "commit", "rollback":
		ss.heldCursorsAtTxEnd(o)
		return ss.endTx(snap, o.Name == "commit", body)
	case "savepoint", "release", "rollback_to":
		return ss.savepoint(snap, o, body)
	}
	// PREPARE TRANSACTION, COMMIT/ROLLBACK PREPARED
	shards := ss.txShards()
	if len(shards) > 1 {
		return ss.queryFailed(&plan.Unsupported{Message: "PREPARE TRANSACTION of a transaction that spans shards is not supported"})
	}
	shard := ss.sessionStatementShard(snap)
	if len(shards) == 1 {
		shard = shards[0]
	}
	return ss.relayRouted(snap, shard, false, o, body)
}

// endTx ends the transaction on every shard it touched: the others first,
// then the written one, whose answer the client gets.
func (ss *session) endTx(snap *topology.Snapshot, commit bool, body []byte) error {
	shards := ss.txShards()
	failed := ss.txAborted || ss.txStatus == 'E'
	if len(shards) == 0 {
		if ss.txStatus == 'I' {
			ss.out = appendEncoded(ss.out, &pgproto3.NoticeResponse{Severity: "WARNING", SeverityUnlocalized: "WARNING", Code: "25P01", Message: "there is no transaction in progress"})
		}
		tag := "COMMIT"
		if !commit || failed {
			tag = "ROLLBACK"
		}
		ss.txStatus = 'I'
		ss.resetTx()
		ss.endPortals() // the transaction's portals ended with it
		ss.batch = false
		return ss.querySynthetic(tag)
	}
	if writers := ss.writersIn(shards); commit && !failed && len(writers) > 1 {
		return ss.endTwoPhase(snap, shards, writers)
	}
	last := shards[0]
	for _, s := range shards {
		if s == ss.txWriter {
			last = s
		}
	}
	verb := "ROLLBACK"
	if commit && !failed {
		verb = "COMMIT"
	}
	var failure error
	for _, s := range shards {
		if s == last {
			continue
		}
		err := ss.runOnShard(snap, s, verb)
		var sg *errServerGone
		if errors.As(err, &sg) {
			return err
		}
		if err != nil && verb == "COMMIT" {
			failure, verb = err, "ROLLBACK"
		}
	}
	if err := ss.useShard(snap, last); err != nil {
		return ss.queryFailed(err)
	}
	if failure == nil && (verb == "COMMIT" || !commit) {
		return ss.relayQuery(body) // the server's answer ends the client's transaction
	}
	err := ss.runRaw(appendQuery(nil, "ROLLBACK"))
	var sg *errServerGone
	if errors.As(err, &sg) {
		return err
	}
	return ss.finishTx("ROLLBACK", failure)
}

// finishTx ends the client's transaction after the proxy ended it on the
// shards: the error when failure is set, else the command tag.
func (ss *session) finishTx(tag string, failure error) error {
	ss.txStatus = 'I'
	if tag == "COMMIT" && failure == nil {
		ss.commitPending()
	} else {
		ss.pending = ss.pending[:0]
	}
	ss.resetTx()
	ss.endPortals() // the transaction's portals ended with it
	ss.batch = false
	if failure != nil {
		ss.sendError(toErrorFields(failure))
		ss.out = appendRFQ(ss.out, 'I')
		ss.start = time.Time{}
		return nil
	}
	return ss.querySynthetic(tag)
}

// writersIn returns the shards of shards the transaction wrote on, in the
// order it first wrote them.
func (ss *session) writersIn(shards []string) []string {
	in := map[string]bool{}
	for _, s := range shards {
		in[s] = true
	}
	var out []string
	for _, w := range ss.txWriters {
		if in[w] {
			out = append(out, w)
		}
	}
	return out
}

// endTwoPhase answers COMMIT of a transaction that wrote on several
// shards: the shards only read are committed, the writers go through
// two-phase commit.
func (ss *session) endTwoPhase(snap *topology.Snapshot, shards, writers []string) error {
	isWriter := map[string]bool{}
	for _, w := range writers {
		isWriter[w] = true
	}
	for _, s := range shards {
		if !isWriter[s] {
			if err := ss.runOnShard(snap, s, "COMMIT"); err != nil && isServerGone(err) {
				return err
			}
		}
	}
	return ss.finishTx("COMMIT", ss.twoPhaseCommit(snap, writers))
}

// runOnShard runs one internal statement on shard's connection in the
// transaction (active or held) without changing the active one.
func (ss *session) runOnShard(snap *topology.Snapshot, shard, sql string) error {
	if ss.sc != nil && ss.shard == shard {
		return ss.runRaw(appendQuery(nil, sql))
	}
	for i := range ss.held {
		h := &ss.held[i]
		if h.shard == shard {
			status, err := ss.exchangeHeld(h, appendQuery(nil, sql))
			if err == nil || !isServerGone(err) {
				h.inTx = status != 'I'
			}
			return err
		}
	}
	// Not attached (lost, or finishing after PREPARE): a fresh connection.
	if err := ss.useShard(snap, shard); err != nil {
		return err
	}
	return ss.runRaw(appendQuery(nil, sql))
}

// isServerGone reports whether err is (or wraps) an *errServerGone: the
// server connection failed. It does not allocate (ensureServer may call it
// on every attach).
func isServerGone(err error) bool {
	if err == nil {
		return false
	}
	_, ok := errors.AsType[*errServerGone](err) // no allocation, unlike errors.As with a local
	return ok
}

// recordReplay remembers a savepoint statement or a SET for shards that
// join the transaction later (beginOnJoin); ROLLBACK TO ends the proxy's
// own abort.
func (ss *session) recordReplay(o *plan.Session) {
	if o.Kind == "transaction" && o.Name == "rollback_to" {
		ss.dropCursorsSince(o.Value) // the planner's Value: the savepoint
		ss.txAborted = false
		// It dropped the portals bound since its savepoint and kept
		// those before, which are no longer tracked.
		clear(ss.portalStmts)
		ss.portalsPartial = true
	}
	ss.txReplay = append(ss.txReplay, strings.TrimRight(strings.TrimSpace(o.SQL), ";"))
}

// savepoint runs SAVEPOINT, RELEASE or ROLLBACK TO on every shard in the
// transaction and remembers it for shards that join later.
func (ss *session) savepoint(snap *topology.Snapshot, o *plan.Session, body []byte) error {
	if ss.txStatus == 'I' {
		return ss.relayRouted(snap, ss.sessionStatementShard(snap), false, o, body)
	}
	target, err := ss.runOnOtherTxShards(snap, o)
	if err != nil {
		return ss.queryFailed(err)
	}
	if target == "" && o.Name != "savepoint" {
		// No shard is in the transaction yet: one joins (with the
		// savepoints before this) and answers, as PostgreSQL would
		// (3B001 for a savepoint that does not exist, 25P02 for a RELEASE
		// in a failed block). Synthesized, it ended a failed block that a
		// savepoint never saved.
		target = ss.sessionStatementShard(snap)
		if err := ss.useShard(snap, target); err != nil {
			return ss.queryFailed(err)
		}
		ss.recordReplay(o)
		return ss.relayQuery(body)
	}
	ss.recordReplay(o)
	if target == "" {
		return ss.querySynthetic("SAVEPOINT")
	}
	if err := ss.useShard(snap, target); err != nil {
		return ss.queryFailed(err)
	}
	return ss.relayQuery(body)
}

// setInTx runs SET or RESET inside a transaction block on every shard of
// the transaction, and remembers it for shards that join later (a SET
// TRANSACTION, a SET LOCAL statement_timeout or a search_path holds for
// the whole transaction, whichever shards it reaches).
func (ss *session) setInTx(snap *topology.Snapshot, o *plan.Session, body []byte) error {
	target, err := ss.runOnOtherTxShards(snap, o)
	if err != nil {
		return ss.queryFailed(err)
	}
	ss.recordReplay(o)
	if target == "" {
		target = ss.sessionStatementShard(snap)
	}
	return ss.relayRouted(snap, target, false, o, body)
}

// runOnOtherTxShards runs a SAVEPOINT, RELEASE or ROLLBACK TO (o), or a
// SET inside the transaction, on every shard of the transaction but the
// first, which it returns for the client's own statement ("" when no shard
// is in the transaction yet); in a failed transaction only ROLLBACK TO may
// run.
func (ss *session) runOnOtherTxShards(snap *topology.Snapshot, o *plan.Session) (string, error) {
	if ss.txStatus == 'E' && o.Name != "rollback_to" {
		return "", &sqlError{abortedError}
	}
	shards := ss.txShards()
	if len(shards) == 0 {
		return "", nil
	}
	for _, s := range shards[1:] {
		if err := ss.runOnShard(snap, s, o.SQL); err != nil {
			return "", err
		}
	}
	return shards[0], nil
}

// noteDeclare records the shard of a single-shard cursor that a DECLARE
// statement opens, for its FETCH, CLOSE and Describe.
func (ss *session) noteDeclare(a *planner.Analysis, shard string) {
	if len(a.Statements) != 1 || a.Statements[0].Kind != planner.KindCursor {
		return
	}
	if name := declaredCursor(a.SQL); name != "" {
		if ss.cursors == nil {
			ss.cursors = make(map[string]string)
		}
		ss.cursors[name] = shard
	}
}

// declaredCursor returns the (lower-cased) name a DECLARE statement
// declares, "" when it cannot tell.
func declaredCursor(sql string) string {
	f := strings.Fields(sql)
	for i := 0; i+1 < len(f); i++ {
		if strings.EqualFold(f[i], "declare") {
			n := f[i+1]
			if strings.HasPrefix(n, `"`) {
				return strings.Trim(n, `"`)
			}
			return strings.ToLower(n)
		}
	}
	return ""
}
