package proxy

import (
	"errors"
	"strings"

	"github.com/shardproxy/shardproxy/proxy/pool"
	"github.com/shardproxy/shardproxy/proxy/sqlclass"
)

// queryState follows one simple Query through its statements so that
// session state changes are recorded only once the server confirmed them.
// Statement i corresponds to the i-th CommandComplete / EmptyQueryResponse.
type queryState struct {
	stmts     []sqlclass.Statement
	actions   []stmtAction // parallel to the CommandCompletes the server will send
	idx       int
	failed    bool
	explicit  bool   // an explicit transaction block is open
	synthetic string // answer with this tag without running anything
}

// failAs returns the error the client gets for the statement of q that
// failed when the server reports the replacement's 26000 (nil q, or none
// replaced: the server's own; a syntax error elsewhere in the string
// comes first, as on PostgreSQL).
func (q *queryState) failAs() *errorFields {
	if q == nil || q.idx >= len(q.actions) {
		return nil
	}
	return q.actions[q.idx].failAs
}

// plain reports whether the Query is one statement the pooler tracks
// nothing of (an UPDATE … SET, say): it may run auto-prepared.
func (q *queryState) plain() bool {
	return len(q.stmts) == 1 && q.stmts[0].Kind == sqlclass.Other && q.synthetic == "" &&
		len(q.actions) == 1 && q.actions[0].entry == nil && !q.actions[0].swallow
}

// stmtAction is what to do when the statement's CommandComplete arrives.
type stmtAction struct {
	stmt    int          // index into stmts, -1 for an injected statement
	swallow bool         // injected: don't show the client
	entry   *stmtEntry   // SQL-level prepared statement involved (injected: the one its DEALLOCATE drops)
	failAs  *errorFields // the statement was replaced by one that fails: the client gets this error for it
	adds    bool         // injected PREPARE of entry (else an injected DEALLOCATE of it)
}

// settingKind says how a settingChange modifies session settings.
type settingKind uint8

const (
	setOne settingKind = iota
	resetOne
	resetAll
	discardAll
)

// settingChange is a confirmed change of session state, held until the
// transaction that made it commits (RFQ 'I' or COMMIT).
type settingChange struct {
	kind  settingKind
	name  string
	apply string
}

// namePlaceholder stands for the statement name in the interned text of an
// SQL-level PREPARE; it cannot occur in SQL text.
const namePlaceholder = "\x01"

// mayTrack is a cheap pre-filter: only SQL containing one of these words
// can change session state, prepared statements or pinning, so only that
// SQL is classified.
func mayTrack(sql []byte) bool {
	for i := 0; i < len(sql); i++ {
		var words []string
		switch sql[i] | 0x20 {
		case 's':
			words = trackS
		case 'd':
			words = trackD
		case 'p':
			words = trackP
		case 'e':
			words = trackE
		case 'l':
			words = trackL
		case 't':
			words = trackT
		case 'h':
			words = trackH
		default:
			continue
		}
		for _, w := range words {
			if hasPrefixFold(sql[i:], w) {
				return true
			}
		}
	}
	return false
}

// Words that make a statement worth classifying, by first letter. "set"
// also covers RESET, set_config and SETs inside other words (harmless: a
// false positive only costs a classification).
var (
	trackS = []string{"set"}
	trackD = []string{"discard", "deallocate"}
	trackP = []string{"prepare"}
	trackE = []string{"execute"}
	trackL = []string{"listen", "lock"}
	trackT = []string{"temp"}
	trackH = []string{"hold"}
)

// hasPrefixFold reports whether s starts with the lower-case ASCII word w,
// ignoring ASCII case.
func hasPrefixFold(s []byte, w string) bool {
	if len(s) < len(w) {
		return false
	}
	for j := 0; j < len(w); j++ {
		c := s[j]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != w[j] {
			return false
		}
	}
	return true
}

// prepareQuery classifies a simple Query when needed and rewrites SQL-level
// prepared statement names. It may run internal statements on the server
// connection (to prepare a statement the connection lacks). A non-nil
// q.synthetic means the proxy answers alone.
func (ss *session) prepareQuery(body []byte) (*queryState, *string, error) {
	sqlb := body
	if n := len(sqlb); n > 0 && sqlb[n-1] == 0 {
		sqlb = sqlb[:n-1]
	}
	if !mayTrack(sqlb) {
		return nil, nil, nil
	}
	stmts := sqlclass.Classify(string(sqlb))
	q := &queryState{stmts: stmts, explicit: ss.txStatus != 'I'}
	rewrite := false
	texts := make([]string, 0, len(stmts))
	single := len(stmts) == 1
	// What the string's statements find: PREPARE and DEALLOCATE earlier
	// in it count (an error ends a string, so each statement runs only
	// after all before it succeeded).
	var view stringView
	for i, st := range stmts {
		act := stmtAction{stmt: i}
		text := st.Text
		switch st.Kind {
		case sqlclass.Listen:
			ss.pin("listen")
		case sqlclass.AdvisoryLock:
			ss.pin("advisory lock")
		case sqlclass.CreateTemp:
			ss.pin("temporary table")
		case sqlclass.DeclareHold:
			ss.pin("WITH HOLD cursor")
		case sqlclass.SetConfigDynamic:
			ss.pin("set_config with computed arguments")
		case sqlclass.Prepare:
			if ss.txStatus == 'E' && single {
				break // the server refuses it (25P02); in a string, a COMMIT or ROLLBACK before it may end the block
			}
			if dup := view.clientStmt(ss, st.Name); dup != nil && !single {
				// The statement fails where it stands in the string (what
				// runs before it still runs): a DEALLOCATE of a name no
				// server has, reported as PostgreSQL's 42P05.
				act.failAs = &errorFields{Code: codeDuplicatePrepared, Message: "prepared statement \"" + st.Name + "\" already exists"}
				texts = append(texts, "DEALLOCATE "+missingServerStmt)
				q.actions = append(q.actions, act)
				rewrite = true
				continue
			}
			if _, dup := ss.sqlStmts[st.Name]; dup && single {
				if ss.txStatus == 'T' {
					// The error aborts the transaction block on the
					// server too, as PostgreSQL's would.
					if err := ss.runClientInternal("DEALLOCATE " + missingServerStmt); isServerGone(err) {
						return nil, nil, err
					}
				}
				ss.sendError(errorFields{Code: codeDuplicatePrepared, Message: "prepared statement \"" + st.Name + "\" already exists"})
				q.synthetic = "-"
				return ss.syntheticDone(q)
			}
			e := ss.srv.intern.sql(sqlclass.RewritePreparedName(st, namePlaceholder))
			act.entry = e
			text = sqlclass.RewritePreparedName(st, e.name)
			rewrite = true
			if single {
				if !ss.sc.Prepared.Has(e.name) {
					if err := ss.runClientInternal(text); err != nil {
						return ss.internalFailed(err)
					}
					ss.addSQLStmt(e.name)
				}
				ss.sqlStmts[st.Name] = e
				q.synthetic = "PREPARE"
				return q, nil, nil
			}
			if view.serverHas(ss, e.name) {
				// Dropped from the connection's record when it runs: an
				// error before it in the string leaves it prepared there.
				texts = append(texts, "DEALLOCATE "+e.name)
				q.actions = append(q.actions, stmtAction{stmt: -1, swallow: true, entry: e})
			}
			view.prepared(st.Name, e)
		case sqlclass.Execute, sqlclass.Deallocate:
			e := ss.sqlStmts[st.Name]
			if !single {
				e = view.clientStmt(ss, st.Name)
			}
			if e == nil {
				// DEALLOCATE also drops protocol-level statements (one namespace).
				if _, ok := ss.stmts[st.Name]; ok && st.Kind == sqlclass.Deallocate && single && ss.txStatus != 'E' {
					delete(ss.stmts, st.Name)
					q.synthetic = "DEALLOCATE"
					return q, nil, nil
				}
				break
			}
			if st.Kind == sqlclass.Deallocate && single && ss.txStatus != 'E' {
				delete(ss.sqlStmts, st.Name)
				q.synthetic = "DEALLOCATE"
				return q, nil, nil
			}
			switch has, known := view.serverState(e.name); {
			case !known:
				if err := ss.ensureSQLStmt(e); err != nil {
					return ss.internalFailed(err)
				}
			case !has:
				// Deallocated earlier in the string (under another client
				// name with the same text, or by DEALLOCATE ALL): prepared
				// again in its place.
				texts = append(texts, e.prepareSQL())
				q.actions = append(q.actions, stmtAction{stmt: -1, swallow: true, entry: e, adds: true})
			}
			view.serverSet(e.name, true)
			if st.Kind == sqlclass.Deallocate {
				view.deallocated(st.Name, e)
			}
			act.entry = e
			text = sqlclass.RewritePreparedName(st, e.name)
			rewrite = true
		case sqlclass.DeallocateAll:
			view.deallocatedAll()
			if single && ss.txStatus != 'E' {
				clear(ss.sqlStmts)
				clear(ss.stmts)
				q.synthetic = "DEALLOCATE ALL"
				return q, nil, nil
			}
		}
		texts = append(texts, text)
		q.actions = append(q.actions, act)
	}
	if !rewrite {
		return q, nil, nil
	}
	s := strings.Join(texts, ";\n")
	return q, &s, nil
}

// prepareSQL is the PREPARE statement that creates the SQL-level statement
// e under its server-side name.
func (e *stmtEntry) prepareSQL() string {
	// The key holds the PREPARE text with the name replaced by namePlaceholder.
	return strings.Replace(strings.TrimPrefix(e.key, "\x00sql\x00"), namePlaceholder, e.name, 1)
}

// stringView is what a statement of a multi-statement Query finds of SQL
// prepared statements once the statements before it in the string ran:
// the client's names and the server connection's statements, where the
// string changed them.
type stringView struct {
	client     map[string]*stmtEntry // nil entry: deallocated in the string
	server     map[string]bool       // server-side name → prepared
	droppedAll bool                  // DEALLOCATE ALL ran in the string
}

// clientStmt returns the statement the client's name stands for.
func (v *stringView) clientStmt(ss *session, name string) *stmtEntry {
	if e, ok := v.client[name]; ok {
		return e
	}
	if v.droppedAll {
		return nil
	}
	return ss.sqlStmts[name]
}

// serverState says whether the server connection has the statement; known
// is false when the string did not touch it (the connection's record holds).
func (v *stringView) serverState(name string) (has, known bool) {
	if has, ok := v.server[name]; ok {
		return has, true
	}
	return false, v.droppedAll
}

func (v *stringView) serverHas(ss *session, name string) bool {
	if has, known := v.serverState(name); known {
		return has
	}
	return ss.sc.Prepared.Has(name)
}

func (v *stringView) serverSet(name string, has bool) {
	if v.server == nil {
		v.server = make(map[string]bool)
	}
	v.server[name] = has
}

func (v *stringView) setClient(name string, e *stmtEntry) {
	if v.client == nil {
		v.client = make(map[string]*stmtEntry)
	}
	v.client[name] = e
}

// prepared notes a PREPARE of name as e.
func (v *stringView) prepared(name string, e *stmtEntry) {
	v.setClient(name, e)
	v.serverSet(e.name, true)
}

// deallocated notes a DEALLOCATE of name, which stood for e.
func (v *stringView) deallocated(name string, e *stmtEntry) {
	v.setClient(name, nil)
	v.serverSet(e.name, false)
}

func (v *stringView) deallocatedAll() {
	*v = stringView{droppedAll: true}
}

// syntheticDone finishes a Query the proxy answered with an error itself.
func (ss *session) syntheticDone(q *queryState) (*queryState, *string, error) {
	ss.out = appendRFQ(ss.out, ss.txStatus)
	return q, nil, nil
}

// internalFailed reports the failure of an internal statement run for the
// client's Query as that Query's error.
func (ss *session) internalFailed(err error) (*queryState, *string, error) {
	var sg *errServerGone
	if errors.As(err, &sg) {
		return nil, nil, err
	}
	ss.sendError(toErrorFields(err))
	ss.out = appendRFQ(ss.out, ss.txStatus)
	return &queryState{synthetic: "-"}, nil, nil
}

// runClientInternal runs sql for the client and tracks the resulting
// transaction status (a failure inside a transaction aborts it).
func (ss *session) runClientInternal(sql string) error {
	err := ss.runInternal(sql)
	if err != nil && ss.txStatus == 'T' {
		ss.txStatus = 'E'
	}
	return err
}

// ensureSQLStmt prepares an SQL-level statement on the server connection
// when it lacks it.
func (ss *session) ensureSQLStmt(e *stmtEntry) error {
	if ss.sc.Prepared.Has(e.name) {
		return nil
	}
	if err := ss.runClientInternal(e.prepareSQL()); err != nil {
		return err
	}
	ss.addSQLStmt(e.name)
	return nil
}

// addSQLStmt records an SQL-level statement on the server connection;
// evicted statements are deallocated right away.
func (ss *session) addSQLStmt(name string) {
	ev := ss.sc.Prepared.Add(name)
	if len(ev) == 0 {
		return
	}
	var b strings.Builder
	for _, n := range ev {
		b.WriteString("DEALLOCATE " + n + "; ")
	}
	if err := ss.runInternal(b.String()); err != nil {
		ss.sc.MarkBroken()
	}
}

// statementDone handles a CommandComplete or EmptyQueryResponse of a
// simple Query. It returns true when the message must not reach the client.
func (ss *session) statementDone(q *queryState, typ byte, body []byte) bool {
	i := q.idx
	q.idx++
	tag := ""
	if typ == msgCommandComplete {
		t, _, _ := cstring(body)
		tag = string(t)
	}
	ss.noteTag(q, tag)
	if q.actions == nil {
		if i < len(q.stmts) {
			ss.statementSucceeded(&q.stmts[i], nil)
		}
		return false
	}
	if i >= len(q.actions) {
		return false
	}
	act := q.actions[i]
	if act.swallow {
		switch {
		case act.entry == nil:
		case act.adds:
			ss.addSQLStmtDeferred(act.entry.name) // prepared again after the string deallocated it
		default:
			ss.sc.Prepared.Remove(act.entry.name) // the DEALLOCATE before a PREPARE of it ran
		}
		return true
	}
	if act.stmt >= 0 && act.stmt < len(q.stmts) {
		ss.statementSucceeded(&q.stmts[act.stmt], act.entry)
	}
	return false
}

// noteTag follows transaction boundaries by command tag.
func (ss *session) noteTag(q *queryState, tag string) {
	switch tag {
	case "BEGIN", "START TRANSACTION":
		if q != nil {
			q.explicit = true
		}
	case "COMMIT":
		ss.commitPending()
		if q != nil {
			q.explicit = false
		}
	case "ROLLBACK":
		ss.pending = ss.pending[:0]
		if q != nil {
			q.explicit = false
		}
	}
}

// characteristicsSucceeded records SET SESSION CHARACTERISTICS AS
// TRANSACTION … as the default_transaction_* parameters it sets, so a later
// SET or RESET of one of them overrides it as on the server, and a server
// connection gets them back in the order the client gave them.
func (ss *session) characteristicsSucceeded(st *sqlclass.Statement) {
	settings, ok := sqlclass.CharacteristicsSettings(st.Value)
	if !ok {
		// The server accepted it, so this is a grammar the classifier
		// does not know: keep the session on its server connection
		// rather than lose the setting.
		ss.srv.log.Warn("unrecognised SET SESSION CHARACTERISTICS: session pinned", "user", ss.user, "modes", st.Value)
		ss.pin("SET SESSION CHARACTERISTICS")
		return
	}
	for _, set := range settings {
		ss.pending = append(ss.pending, settingChange{kind: setOne, name: set.Name, apply: applyConfig(set.Name, set.Value)})
	}
}

// statementSucceeded records the effect of a statement the server executed.
func (ss *session) statementSucceeded(st *sqlclass.Statement, e *stmtEntry) {
	switch st.Kind {
	case sqlclass.Set:
		name := strings.ToLower(st.Name)
		if name == "session_characteristics" {
			ss.characteristicsSucceeded(st)
			return
		}
		ss.pending = append(ss.pending, settingChange{kind: setOne, name: name, apply: st.Text})
	case sqlclass.SetConfig:
		name := strings.ToLower(st.Name)
		ss.pending = append(ss.pending, settingChange{kind: setOne, name: name, apply: applyConfig(name, st.Value)})
	case sqlclass.Reset:
		ss.pending = append(ss.pending, settingChange{kind: resetOne, name: strings.ToLower(st.Name)})
	case sqlclass.ResetAll:
		ss.pending = append(ss.pending, settingChange{kind: resetAll})
	case sqlclass.Discard:
		switch st.Name {
		case "all":
			ss.pending = append(ss.pending, settingChange{kind: discardAll})
			ss.commitPending() // DISCARD ALL cannot run in a transaction block
		case "temp":
			ss.unpin("temporary table")
		}
	case sqlclass.Prepare:
		if e != nil {
			ss.sqlStmts[st.Name] = e
			ss.addSQLStmtDeferred(e.name)
		}
	case sqlclass.Deallocate:
		if e != nil {
			delete(ss.sqlStmts, st.Name)
			ss.sc.Prepared.Remove(e.name)
		}
	case sqlclass.DeallocateAll:
		clear(ss.sqlStmts)
		clear(ss.stmts)
		ss.sc.Prepared.Clear()
	case sqlclass.UnlistenAll:
		ss.unpin("listen")
	}
}

// addSQLStmtDeferred records a statement prepared by a multi-statement
// Query; evictions are closed before the client's next request.
func (ss *session) addSQLStmtDeferred(name string) {
	ss.evicted = append(ss.evicted, ss.sc.Prepared.Add(name)...)
}

// executeDone handles CommandComplete of an extended-protocol Execute.
func (ss *session) executeDone(st *stmtEntry, body []byte) {
	t, _, _ := cstring(body)
	switch string(t) {
	case "BEGIN", "COMMIT", "ROLLBACK", "START TRANSACTION":
		ss.noteTag(nil, string(t))
		if t[0] != 'B' && t[0] != 'S' {
			ss.blockEnded = true
		}
	case "SET", "RESET", "DISCARD ALL", "SELECT 1":
		if st != nil {
			for _, c := range st.classes() {
				if c.Kind == sqlclass.Set || c.Kind == sqlclass.Reset || c.Kind == sqlclass.ResetAll ||
					c.Kind == sqlclass.SetConfig || c.Kind == sqlclass.Discard {
					ss.statementSucceeded(&c, nil)
				}
			}
		}
	}
}

// notePinningParse pins the session for statements that need it, seen
// through the extended protocol.
func (ss *session) notePinningParse(e *stmtEntry, query []byte) {
	if !mayTrack(query) {
		return
	}
	for _, c := range e.classes() {
		switch c.Kind {
		case sqlclass.Listen:
			ss.pin("listen")
		case sqlclass.AdvisoryLock:
			ss.pin("advisory lock")
		case sqlclass.CreateTemp:
			ss.pin("temporary table")
		case sqlclass.DeclareHold:
			// Over several shards the proxy keeps the rows itself
			// (exec_holdcursor.go): routeBind pins only a cursor on one.
			if _, sharded := ss.snapshot(); !sharded {
				ss.pin("WITH HOLD cursor")
			}
		case sqlclass.SetConfigDynamic:
			ss.pin("set_config with computed arguments")
		}
	}
}

// commitPending applies the settings changes of a committed transaction
// to the client's wanted settings and to the record of the server
// connection, and of every held one when the transaction was a block the
// proxy followed (txBegin): a SET inside it ran on every shard of it
// (setInTx). Outside one, a SET ran on the active connection only.
func (ss *session) commitPending() {
	if len(ss.pending) == 0 {
		return
	}
	var conns []*pool.ServerConn
	if ss.sc != nil {
		conns = append(conns, ss.sc)
	}
	if ss.txBegin != "" {
		for _, h := range ss.held {
			conns = append(conns, h.sc)
		}
	}
	if len(ss.pending) > 0 {
		ss.settingsKey = ""
		for _, sc := range conns {
			sc.AppliedKey = ""
		}
	}
	for _, c := range ss.pending {
		switch c.kind {
		case setOne:
			ss.settings[c.name] = c.apply
			for _, sc := range conns {
				sc.Applied[c.name] = c.apply
			}
		case resetOne:
			if v, ok := ss.startupValues[c.name]; ok {
				ss.settings[c.name] = applyConfig(c.name, v)
			} else {
				delete(ss.settings, c.name)
			}
			for _, sc := range conns {
				delete(sc.Applied, c.name)
			}
		case resetAll, discardAll:
			clear(ss.settings)
			for k, v := range ss.startupValues {
				ss.settings[k] = applyConfig(k, v)
			}
			for _, sc := range conns {
				clear(sc.Applied)
			}
			if c.kind == discardAll {
				ss.closeHeldCursors(false)
				clear(ss.stmts)
				clear(ss.sqlStmts)
				if ss.sc != nil {
					ss.sc.Prepared.Clear()
				}
				ss.unpinAll()
			}
		}
	}
	ss.pending = ss.pending[:0]
}

// pin keeps the server connection for this session until reason is gone.
func (ss *session) pin(reason string) {
	if ss.sessionMode {
		return
	}
	if ss.pinReasons == nil {
		ss.pinReasons = make(map[string]bool)
	}
	if len(ss.pinReasons) == 0 {
		ss.srv.metrics.pinned.Inc()
		ss.srv.metrics.pinsTotal.Inc()
	}
	ss.pinReasons[reason] = true
}

func (ss *session) unpin(reason string) {
	if !ss.pinReasons[reason] {
		return
	}
	delete(ss.pinReasons, reason)
	if len(ss.pinReasons) == 0 {
		ss.srv.metrics.pinned.Dec()
	}
}

func (ss *session) unpinAll() {
	if len(ss.pinReasons) > 0 {
		ss.srv.metrics.pinned.Dec()
		clear(ss.pinReasons)
	}
}
