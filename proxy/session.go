package proxy

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/shardproxy/shardproxy/proxy/netio"
	"github.com/shardproxy/shardproxy/proxy/pool"
	"github.com/shardproxy/shardproxy/proxy/sqlclass"
	"github.com/shardproxy/shardproxy/topology"
)

// expKind says what the session expects next from the server (or has to
// synthesize) for one message it forwarded or answered itself. The
// session keeps these in a FIFO in client order, so responses reach the
// client in exactly the order PostgreSQL would produce them.
type expKind uint8

const (
	expParse         expKind = iota // ParseComplete, forwarded
	expParseSwallow                 // ParseComplete of an injected Parse, dropped
	expCloseSwallow                 // CloseComplete of an LRU eviction, dropped
	expBind                         // BindComplete
	expDescribe                     // [ParameterDescription] RowDescription | NoData
	expExecute                      // rows … CommandComplete | EmptyQuery | PortalSuspended
	expClose                        // CloseComplete of a forwarded Close
	expSync                         // … ReadyForQuery
	expQuery                        // simple Query / FunctionCall: … ReadyForQuery
	expSynthParse                   // emit ParseComplete without the server
	expSynthClose                   // emit CloseComplete without the server
	expSynthError                   // emit err, then skip to the Sync like PostgreSQL
	expBindSwallow                  // BindComplete of an auto-prepared Query, dropped
	expDescribeQuery                // RowDescription (forwarded) | NoData (dropped) of an auto-prepared Query
	expSynthBind                    // emit BindComplete without the server
	expSynthNoData                  // emit NoData without the server
	expSynthDone                    // emit CommandComplete with tag name; restore undoes the statement
	expShapeCheck                   // [ParameterDescription] RowDescription | NoData of an injected Describe, compared with stmt's shape (shape.go)
	expErrorAs                      // the ErrorResponse an injected message must raise, reported to the client as err
	expSynthMessages                // emit name: whole backend messages the proxy built
)

// synthMessage is the body-less message the proxy answers in place of the
// server for each expSynth kind that has one.
var synthMessage = [...]byte{
	expSynthParse:  msgParseComplete,
	expSynthClose:  msgCloseComplete,
	expSynthBind:   msgBindComplete,
	expSynthNoData: msgNoData,
}

type expect struct {
	kind    expKind
	name    string     // client statement name (Parse / Close hooks); Bind: the named portal noted over shards
	prev    *stmtEntry // client mapping of name before this message, for rollback
	server  string     // server statement added to sc.Prepared by this message
	err     errorFields
	q       *queryState // simple Query: per-statement tracking
	stmt    *stmtEntry  // Bind, Execute: the statement of the portal (for SET tracking)
	auto    *autoShape  // Parse/Bind/Describe/Execute of an auto-prepared Query (autoprepare.go)
	retry   bool        // Sync of an auto-prepared Query that failed before it ran: send ss.apQuery instead
	unnamed bool        // Bind of the unnamed portal (portalStmt); prev: what it was bound to before
	kept    bool        // the Bind failed before PostgreSQL replaces a portal: the portal is as it was

	restore func() // expSynthDone, expSynthError, expSynthClose, expClose: undoes the proxy's bookkeeping when PostgreSQL would have skipped the message
}

var readerPool = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, serverReadBufSize) }}

// clientReaderPool holds the client connections' read buffers between
// sessions, so a client that connects for every transaction does not cost
// a fresh buffer each time.
var clientReaderPool = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, clientReadBufSize) }}

// errClientGone means the client connection failed; the session ends.
var errClientGone = errors.New("client connection lost")

// errServerGone wraps a server connection failure.
type errServerGone struct{ err error }

func (e *errServerGone) Error() string { return "server connection lost: " + e.err.Error() }
func (e *errServerGone) Unwrap() error { return e.err }

// outFilter rewrites or takes the complete messages in ss.out before they
// are written to the client (session.filter).
type outFilter interface{ take(ss *session) }

// session is one client connection. Everything in it is owned by the
// session goroutine, except the atomics (read by Cancel and Shutdown).
type session struct {
	srv  *Server
	conn net.Conn
	cr   msgReader // client messages
	out  []byte    // bytes waiting to be written to the client
	tls  bool
	// filter, while set, sees what flushClient would send first: it takes
	// the rows of a subquery the proxy runs first (pulledRows,
	// exec_pullout.go) or turns rows into COPY data (copyOutRows,
	// exec_copyout.go).
	filter outFilter

	user, database string
	key            pool.Key
	pool           *pool.Pool
	sessionMode    bool
	counted        bool
	pid, secret    uint32

	txStatus      byte                  // last ReadyForQuery status sent to the client
	startupValues map[string]string     // startup parameters (the RESET values)
	settings      map[string]string     // wanted session settings: name → statement establishing it
	settingsKey   string                // settingsFingerprint's memo; "" after every change of settings
	pending       []settingChange       // settings changed inside the open transaction
	stmts         map[string]*stmtEntry // protocol-level statements by client name
	sqlStmts      map[string]*stmtEntry // SQL PREPAREd statements by client name
	portalStmt    *stmtEntry            // statement bound to the unnamed portal
	pinReasons    map[string]bool       // why the session is pinned (empty: not pinned)
	evicted       []string              // server statements to close before the next request
	apKey         []byte                // auto-prepare: normalized text + OID block (reused buffer)
	apLits        []sqlclass.Literal    // auto-prepare: the literals taken out (reused buffer)
	autoClose     string                // auto-prepare: stale server statement to close before the retry
	autoNotices   []byte                // auto-prepare: notices raised before the statement ran (held)
	apQuery       []byte                // auto-prepare: the Query body of the exchange in flight
	shapeChanged  bool                  // set by drain: a shape check found other result columns (shape.go)
	txEndInBatch  bool                  // an Execute in a failed block in this batch may have ended it (handleParse's 25P02 check stops)
	batchTxEnd    bool                  // an Execute in this batch may have ended a transaction (the work before it is committed)

	deallocs map[string]*sqlclass.Statement // portals bound to a DEALLOCATE the proxy runs (deallocate.go)

	sc    *pool.ServerConn
	sr    msgReader // server messages, valid while sc != nil
	sout  []byte    // bytes waiting to be written to the server
	fifo  []expect
	head  int
	batch bool // extended-protocol messages sent since the last Sync
	skip  bool // discard client messages until Sync (after an error the proxy raised)
	start time.Time

	current atomic.Pointer[pool.ServerConn] // for CancelRequest
	scatter atomic.Pointer[scatterRun]      // running cross-shard read, for CancelRequest (exec_scatter.go)
	idle    atomic.Bool                     // blocked waiting for a new client request, no transaction open
	forced  atomic.Bool                     // Shutdown's deadline passed

	rawConn   net.Conn     // the accepted connection (for the watchdog's peek)
	busySince atomic.Int64 // UnixNano when the session started waiting for the server; 0 when not
	cancelled atomic.Bool  // the watchdog already cancelled the current query

	// Routing over several shards (route.go, exec.go).
	shard          string                  // shard of sc / pool
	scTx           bool                    // sc is inside the client's transaction block
	scBatch        bool                    // extended messages went to sc since its last Sync
	scStatus       byte                    // sc's last ReadyForQuery status
	held           []heldConn              // other shards' connections of this transaction or batch
	portals        map[string]string       // portal → shard it was bound on, until its transaction ends (endPortals)
	multi          map[string]*multiPortal // portal → plan the proxy runs itself, until its transaction ends
	portalStmts    map[string]*stmtEntry   // named portals bound in the open transaction since its last ROLLBACK TO → their statements
	bindKept       bool                    // routeBind failed the Bind before PostgreSQL would replace its portal
	portalsStale   bool                    // portalStmts may name portals that are gone (an Execute that may have ended the transaction came since); endPortals resets it
	portalsPartial bool                    // portalStmts may lack portals that exist (bound before a ROLLBACK TO); endPortals resets it
	cursors        map[string]string       // cursor → shard it was declared on
	multiCursor    map[string]*cursorRead  // cross-shard cursors the proxy runs (exec_cursor.go)
	forcedShard    string                  // SET shardproxy.shard
	showRoutes     bool                    // SET shardproxy.show_routes = on
	txBegin        string                  // BEGIN statement of the open transaction
	txReplay       []string                // savepoint statements to replay on shards joining it
	txWriter       string                  // the first shard written in this transaction or batch
	txWriters      []string                // every shard written in this transaction, in order
	txAborted      bool                    // the proxy raised an error inside the transaction
	implicitTx     bool                    // the proxy opened the transaction around a pipelined batch (implicit_tx.go)
	batchFailed    bool                    // an error reached the client since implicitTx was set
	batchExecuted  bool                    // an Execute of this batch ran or was sent (batch_txcontrol.go)
	mayEndBlock    bool                    // an Execute that may end a transaction was sent in this batch; beforeExtended settles it
	blockEnded     bool                    // a COMMIT or ROLLBACK of this batch completed
	execing        bool                    // the proxy runs a plan itself: keep every connection it touches
	suspended      *rowSource              // cross-shard read of a portal suspended by an Execute row limit (exec_portal.go)
	lastSnap       *topology.Snapshot      // snapshot() cache
	lastSharded    bool                    // the path the session is on (snapshot, switchPath)
	wantSharded    bool                    // the path lastSnap wants
	rep            replicaState            // read/write splitting (replica.go)
	// pullingForWrite: the subqueries of an UPDATE or DELETE are running
	// (exec_pullout.go); they read from primaries.
	pullingForWrite bool

	// Admin console and metrics (console.go, metrics.go).
	connectedAt time.Time
	holdSince   atomic.Int64 // UnixNano since the session is held by PAUSE; 0 when not
	reqRoute    routeNote    // where the current request went (query duration by route kind)
	// observers caches where requests are recorded, by route kind and
	// shard (metrics.go); nextObserver is the slot the next miss replaces.
	observers    [4]routeObserver
	nextObserver uint8
	poolWaitObs  poolWaitCache // observePoolWait's cache
}

func newSession(s *Server, c net.Conn) *session {
	conn := netio.Wrap(c) // raw-syscall reads and writes (see package netio)
	br := clientReaderPool.Get().(*bufio.Reader)
	br.Reset(conn)
	return &session{
		srv:         s,
		conn:        conn,
		rawConn:     c,
		cr:          msgReader{br: br, maxLen: maxClientMessage},
		txStatus:    'I',
		connectedAt: time.Now(),
		stmts:       make(map[string]*stmtEntry),
		sqlStmts:    make(map[string]*stmtEntry),
	}
}

// run serves the client until it leaves or the server shuts down.
func (ss *session) run() {
	defer ss.cleanup()
	if !ss.startup() {
		return
	}
	err := ss.loop()
	switch {
	case err == nil, errors.Is(err, errClientGone):
	default:
		var bl *errBadLength
		var sg *errServerGone
		switch {
		case errors.As(err, &bl):
			ss.fatal(errorFields{Code: codeProtocolViolation, Message: "invalid message length"})
		case errors.As(err, &sg):
			ss.fatal(errorFields{Code: codeConnectionFailure, Message: "server connection lost"})
		case ss.srv.closing.Load():
			ss.fatal(errorFields{Code: codeAdminShutdown, Message: "terminating connection due to administrator command"})
		default:
			var se *sqlError
			if errors.As(err, &se) {
				ss.fatal(se.f)
			} else if !isNetErr(err) {
				ss.fatal(errorFields{Code: codeProtocolViolation, Message: err.Error()})
			}
		}
		if !isNetErr(err) && !ss.srv.closing.Load() {
			ss.srv.log.Warn("client session ended with error", "user", ss.user, "err", err)
		}
	}
}

func isNetErr(err error) bool {
	var ne net.Error
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, net.ErrClosed) || errors.As(err, &ne)
}

func (ss *session) cleanup() {
	if ss.sc != nil {
		ss.releaseOnExit()
	}
	for _, h := range ss.held {
		h.br.Reset(nil)
		if h.inTx || h.needSync {
			h.sc.MarkBroken()
			h.pool.Discard(h.sc)
		} else {
			h.pool.Release(h.sc, ss.sessionMode || len(ss.pinReasons) > 0)
		}
	}
	ss.held = nil
	if len(ss.multiCursor) > 0 {
		ss.closeHeldCursors(false) // their temporary files
	}
	if len(ss.pinReasons) > 0 {
		ss.srv.metrics.pinned.Dec()
	}
	if ss.pid != 0 {
		ss.srv.unregister(ss)
	}
	if ss.counted {
		ss.srv.nclients.Add(-1)
		ss.srv.metrics.clientsActive.Dec()
	}
	ss.conn.Close()
	if br := ss.cr.br; br != nil && br.Size() == clientReadBufSize {
		br.Reset(nil)
		clientReaderPool.Put(br)
		ss.cr.br = nil
	}
}

// releaseOnExit gives the server connection back when the client is gone:
// work still in flight is cancelled and the connection discarded.
func (ss *session) releaseOnExit() {
	ss.endSuspended()
	sc := ss.sc
	busy := ss.pendingCount() > 0 || ss.txStatus != 'I' || ss.batch || len(ss.sout) > 0 || ss.sr.buffered() > 0
	ss.dropServerReader()
	ss.sc = nil
	ss.current.Store(nil)
	if busy {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		sc.Cancel(ctx)
		cancel()
		ss.pool.Discard(sc)
		return
	}
	ss.pool.Release(sc, ss.sessionMode || len(ss.pinReasons) > 0)
}

func (ss *session) dropServerReader() {
	if ss.sr.br != nil {
		ss.sr.br.Reset(nil)
		readerPool.Put(ss.sr.br)
		ss.sr.br = nil
	}
	ss.sout = ss.sout[:0]
	ss.evicted = ss.evicted[:0]
	ss.fifo = ss.fifo[:0]
	ss.head = 0
	ss.batch = false
}

// kick is called by Shutdown: an idle session (or any, when forced) is
// woken from its blocking read so it can say goodbye.
func (ss *session) kick(force bool) {
	if force {
		ss.forced.Store(true)
		if sc := ss.current.Load(); sc != nil {
			sc.Conn.SetReadDeadline(time.Now())
		}
	}
	if force || ss.idle.Load() {
		ss.conn.SetReadDeadline(time.Now())
	}
}

func (ss *session) flushClient() error {
	if len(ss.out) == 0 {
		return nil
	}
	if ss.filter != nil {
		ss.filter.take(ss)
		if len(ss.out) == 0 {
			return nil // taken
		}
	}
	_, err := ss.conn.Write(ss.out)
	if cap(ss.out) > 32<<10 { // don't let idle sessions keep big buffers
		ss.out = nil
	} else {
		ss.out = ss.out[:0]
	}
	if err != nil {
		return errClientGone
	}
	return nil
}

func (ss *session) flushServer() error {
	if len(ss.sout) == 0 {
		return nil
	}
	_, err := ss.sc.Conn.Write(ss.sout)
	if cap(ss.sout) > 1<<20 {
		ss.sout = nil
	} else {
		ss.sout = ss.sout[:0]
	}
	if err != nil {
		return &errServerGone{err}
	}
	return nil
}

func (ss *session) pendingCount() int { return len(ss.fifo) - ss.head }

func (ss *session) push(e expect) { ss.fifo = append(ss.fifo, e) }

func (ss *session) pop() {
	ss.fifo[ss.head] = expect{}
	ss.head++
	if ss.head == len(ss.fifo) {
		ss.fifo = ss.fifo[:0]
		ss.head = 0
	}
}

// attach acquires a server connection and brings its session settings in
// line with the client's.
func (ss *session) attach() error {
	ss.srv.metrics.clientsWaiting.Inc()
	waitStart := time.Now()
	sc, err := ss.pool.Acquire(ss.srv.forceCtx)
	ss.srv.metrics.clientsWaiting.Dec()
	ss.srv.metrics.observePoolWait(ss.srv, &ss.poolWaitObs, ss.pool.Key().Backend, time.Since(waitStart))
	if err != nil {
		return err
	}
	ss.sc = sc
	ss.current.Store(sc)
	br := readerPool.Get().(*bufio.Reader)
	br.Reset(sc.Conn)
	ss.sr = msgReader{br: br, maxLen: 1 << 30}
	if sc.Frontend != nil {
		for sc.Frontend.ReadBufferLen() > 0 { // stray async messages read ahead by the pool
			if _, err := sc.Frontend.Receive(); err != nil {
				ss.abandonServer(err)
				return &errServerGone{err}
			}
		}
	}
	if sc.Applied == nil {
		sc.Applied = make(map[string]string)
	}
	if err := ss.syncSettings(); err != nil {
		var sg *errServerGone
		if errors.As(err, &sg) {
			ss.abandonServer(err)
		} else {
			ss.detach()
		}
		return err
	}
	ss.scStatus, ss.scTx, ss.scBatch = 'I', false, false
	// A shard joins the client's open transaction (or the one a BEGIN
	// earlier in this pipelined batch opened).
	return ss.joinTx()
}

// abandonServer discards a server connection that failed.
func (ss *session) abandonServer(err error) {
	if ss.sc == nil {
		return
	}
	sc := ss.sc
	sc.MarkBroken()
	ss.dropServerReader()
	ss.sc = nil
	ss.current.Store(nil)
	ss.pool.Discard(sc)
	ss.srv.log.Warn("server connection lost", "user", ss.user, "err", err)
}

// detach gives an idle server connection back to the pool.
func (ss *session) detach() {
	sc := ss.sc
	// Relay asynchronous messages the server sent after its last
	// ReadyForQuery (they belong to this client's session).
	for ss.sr.buffered() > 0 {
		typ, body, err := ss.sr.next()
		if err != nil {
			ss.abandonServer(err)
			return
		}
		if typ == msgNoticeResponse || typ == msgNotification {
			ss.out = appendMsg(ss.out, typ, body)
		}
	}
	ss.dropServerReader()
	ss.sc = nil
	ss.current.Store(nil)
	ss.pool.Release(sc, false)
}

// syncSettings applies the client's settings that differ from what the
// server connection has, and resets the ones the client does not want.
func (ss *session) syncSettings() error {
	sc := ss.sc
	if len(ss.settings) == 0 && len(sc.Applied) == 0 {
		return nil // the common case: nothing set on either side
	}
	key := ss.settingsFingerprint()
	if sc.AppliedKey == key {
		return nil // the connection's last holder had the same settings
	}
	// Resets first, then every wanted setting again if anything was
	// reset (a reset of session characteristics also resets
	// default_transaction_read_only and friends).
	var b strings.Builder
	for name := range sc.Applied {
		if _, ok := ss.settings[name]; !ok {
			b.WriteString(resetStatement(name))
		}
	}
	reset := b.Len() > 0
	for name, stmt := range ss.settings {
		if reset || sc.Applied[name] != stmt {
			b.WriteString(stmt)
			b.WriteString("; ")
		}
	}
	if b.Len() == 0 {
		sc.AppliedKey = key
		return nil
	}
	if err := ss.runInternal(b.String()); err != nil {
		// The server rolled the whole string back: nothing changed.
		return err
	}
	clear(sc.Applied)
	for k, v := range ss.settings {
		sc.Applied[k] = v
	}
	sc.AppliedKey = key
	return nil
}

// settingsFingerprint returns a string that names ss.settings exactly (equal
// strings, equal settings), computed once per change: the proxy's sessions
// mostly share their settings (one application's startup parameters), so
// a server connection whose last holder had the same settings needs no
// comparison.
func (ss *session) settingsFingerprint() string {
	if ss.settingsKey == "" {
		names := make([]string, 0, len(ss.settings))
		for name := range ss.settings {
			names = append(names, name)
		}
		slices.Sort(names)
		var b strings.Builder
		b.WriteByte('#') // never "", which means not computed
		for _, name := range names {
			b.WriteString(name)
			b.WriteByte(0)
			b.WriteString(ss.settings[name])
			b.WriteByte(0)
		}
		ss.settingsKey = b.String()
	}
	return ss.settingsKey
}

// resetStatement undoes setting name on a server connection.
func resetStatement(name string) string {
	return "RESET " + quoteIdent(name) + "; "
}

// runInternal runs sql on the server connection and consumes every
// response up to ReadyForQuery. The first server error is returned as a
// *sqlError; asynchronous notifications are relayed to the client.
func (ss *session) runInternal(sql string) error {
	ss.sout = appendQuery(ss.sout, sql)
	if err := ss.flushServer(); err != nil {
		return err
	}
	var first error
	for {
		typ, body, err := ss.sr.next()
		if err != nil {
			return &errServerGone{err}
		}
		switch typ {
		case msgErrorResponse:
			if first == nil {
				var er pgproto3.ErrorResponse
				er.Decode(body)
				first = &sqlError{errorFields{Severity: er.Severity, Code: er.Code, Message: er.Message, Detail: er.Detail, Hint: er.Hint}}
			}
		case msgParamStatus:
			ss.noteParamStatus(body)
		case msgNotification:
			ss.out = appendMsg(ss.out, typ, body)
		case msgReadyForQuery:
			if len(body) == 1 {
				ss.scStatus = body[0]
			}
			return first
		}
	}
}

// noteParamStatus records a ParameterStatus on the server connection.
func (ss *session) noteParamStatus(body []byte) {
	name, rest, ok := cstring(body)
	if !ok {
		return
	}
	val, _, ok := cstring(rest)
	if !ok || ss.sc.Params == nil {
		return
	}
	ss.sc.Params[string(name)] = string(val)
}

// loop is the message loop after startup.
func (ss *session) loop() error {
	for {
		if err := ss.idlePoint(); err != nil {
			return err
		}
		typ, body, err := ss.cr.next()
		ss.idle.Store(false)
		if err != nil {
			if ss.srv.closing.Load() && isTimeout(err) {
				return ss.shutdownGoodbye()
			}
			if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || isNetErr(err) {
				return errClientGone
			}
			return err
		}
		if debugTrace {
			ss.srv.log.Debug("wire trace: client", "pid", ss.pid, "type", string(rune(typ)), "body", fmt.Sprintf("%q", body), "skip", ss.skip, "attached", ss.sc != nil, "tx", string(rune(ss.txStatus)))
		}
		if ss.skip && typ != msgSync && typ != msgFlush {
			// A Flush still goes through: the error that started the
			// skip must reach a client that waits for it before sending
			// Sync (asyncpg sends Parse, Describe, Flush), as PostgreSQL
			// sends its errors at once.
			if typ == msgTerminate {
				return nil
			}
			continue
		}
		if ss.srv.console.gate.engaged() && ss.startsRequest(typ) {
			if err := ss.holdWhilePaused(); err != nil {
				return err
			}
		}
		if ss.lastSharded {
			var skip bool
			if skip, err = ss.beforeExtended(typ); skip {
				continue // an error before it reached the client: skipped up to Sync
			}
		}
		switch {
		case err != nil:
		case typ == msgQuery:
			err = ss.handleQuery(body)
		case typ == msgParse:
			err = ss.handleParse(body)
		case typ == msgBind:
			err = ss.handleBind(body)
		case typ == msgDescribe:
			err = ss.handleDescribe(body)
		case typ == msgExecute:
			err = ss.handleExecute(body)
		case typ == msgClose:
			err = ss.handleClose(body)
		case typ == msgFlush:
			err = ss.handleFlush()
		case typ == msgSync:
			err = ss.handleSync()
		case typ == msgFuncCall:
			err = ss.handleFuncCall(body)
		case typ == msgCopyData || typ == msgCopyDone || typ == msgCopyFail:
			// Outside COPY: ignored, as PostgreSQL does.
		case typ == msgTerminate:
			return nil
		default:
			return newSQLError(codeProtocolViolation, fmt.Sprintf("invalid frontend message type %d", typ))
		}
		if err != nil {
			var sg *errServerGone
			if errors.As(err, &sg) && ss.sc != nil {
				err = ss.lostServer(sg.err, errorFields{Code: codeConnectionFailure, Message: "server connection lost"})
			}
			if err != nil {
				return err
			}
		}
	}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

func (ss *session) shutdownGoodbye() error {
	return newSQLError(codeAdminShutdown, "terminating connection due to administrator command")
}

// idlePoint runs before each blocking read of a client message: it
// releases the server connection when transaction pooling allows it,
// flushes output and, for sessions holding a server connection while idle
// (pinned, session mode), relays notifications as they arrive.
func (ss *session) idlePoint() error {
	if ss.cr.buffered() > 0 {
		// More client input is already here; keep going without flushing.
		if len(ss.out) > 32<<10 {
			return ss.flushClient()
		}
		return nil
	}
	if ss.releasable() {
		if ss.sc != nil {
			ss.detach()
		}
		if len(ss.held) > 0 {
			ss.releaseHeld()
		}
	}
	if err := ss.flushClient(); err != nil {
		return err
	}
	idle := ss.txStatus == 'I' && !ss.batch && ss.pendingCount() == 0
	if idle && ss.srv.closing.Load() {
		return ss.shutdownGoodbye()
	}
	ss.idle.Store(idle)
	if ss.sc != nil && idle {
		return ss.waitPinned()
	}
	return nil
}

// releasable reports whether the server connection can go back to the pool.
func (ss *session) releasable() bool {
	return !ss.sessionMode && len(ss.pinReasons) == 0 && ss.txStatus == 'I' && !ss.batch &&
		ss.pendingCount() == 0 && len(ss.sout) == 0
}

// waitPinned waits until the client sends something while relaying
// whatever the idle server connection sends (LISTEN notifications).
func (ss *session) waitPinned() error {
	clientCh := make(chan error, 1)
	go func() {
		_, err := ss.cr.br.Peek(1)
		clientCh <- err
	}()
	for {
		srvCh := make(chan error, 1)
		go func() {
			_, err := ss.sr.br.Peek(1)
			srvCh <- err
		}()
		select {
		case err := <-clientCh:
			ss.sc.Conn.SetReadDeadline(time.Now())
			serr := <-srvCh
			ss.sc.Conn.SetReadDeadline(time.Time{})
			if serr != nil && !isTimeout(serr) {
				ss.abandonServer(serr)
				if err == nil {
					return &errServerGone{serr}
				}
			}
			return err
		case serr := <-srvCh:
			if serr != nil {
				ss.conn.SetReadDeadline(time.Now())
				<-clientCh
				ss.conn.SetReadDeadline(time.Time{})
				ss.abandonServer(serr)
				return &errServerGone{serr}
			}
			for ss.sr.buffered() > 0 {
				typ, body, err := ss.sr.next()
				if err != nil {
					ss.conn.SetReadDeadline(time.Now())
					<-clientCh
					ss.conn.SetReadDeadline(time.Time{})
					ss.abandonServer(err)
					return &errServerGone{err}
				}
				switch typ {
				case msgNotification, msgNoticeResponse:
					ss.out = appendMsg(ss.out, typ, body)
				case msgParamStatus:
					ss.noteParamStatus(body)
					ss.out = appendMsg(ss.out, typ, body)
				case msgErrorResponse: // e.g. FATAL on termination: the client hears it
					ss.out = appendMsg(ss.out, typ, body)
				}
			}
			if err := ss.flushClient(); err != nil {
				ss.sc.Conn.SetReadDeadline(time.Now())
				<-clientCh
				return err
			}
		}
	}
}

// ensureServer makes sure a server connection is attached.
//
// A connection that turns out dead while its settings are applied (e.g.
// the server restarted while it sat in the pool) is discarded and another
// one tried: nothing of the client's ran yet.
func (ss *session) ensureServer() error {
	if ss.sc != nil {
		return nil
	}
	ss.pickServer()
	var err error
	for attempt := 0; attempt < 3; attempt++ {
		err = ss.attach()
		var sg *errServerGone
		if !errors.As(err, &sg) {
			return err
		}
	}
	return newSQLError(codeConnectionFailure, "server connection lost: "+err.Error())
}

// sendServer appends an outgoing message and flushes if the batch is big.
func (ss *session) sendServer(typ byte, body []byte) error {
	ss.sout = appendMsg(ss.sout, typ, body)
	return ss.maybeFlushBatch()
}

// maybeFlushBatch keeps pipelined batches bounded: past 256 KiB the
// session asks the server for the responses so far (Flush) and relays them.
func (ss *session) maybeFlushBatch() error {
	if len(ss.sout) < 256<<10 {
		return nil
	}
	ss.sout = appendEmpty(ss.sout, msgFlush)
	if err := ss.flushServer(); err != nil {
		return err
	}
	return ss.drain()
}

// failRequest reports err for a request that could not get a server
// connection. For extended-protocol messages the rest of the batch is
// skipped up to Sync, like PostgreSQL does after an error.
func (ss *session) failExtended(err error) error {
	return ss.failExtendedUndoing(err, nil)
}

// failExtendedUndoing is failExtended for a message whose bookkeeping the
// proxy has already changed: undo (when not nil) reverts it if PostgreSQL
// would not have reached the message — an earlier message of the batch
// fails on the server first — or if no error is queued for it.
func (ss *session) failExtendedUndoing(err error, undo func()) error {
	var sg *errServerGone
	if errors.As(err, &sg) || err == errBatchFailed {
		if undo != nil {
			undo()
		}
		if err == errBatchFailed {
			return nil // skipping to the Sync already
		}
		return err
	}
	if debugTrace {
		ss.srv.log.Debug("wire trace: request failed", "pid", ss.pid, "err", err)
	}
	ss.push(expect{kind: expSynthError, err: toErrorFields(err), restore: undo})
	ss.skip = true
	return nil
}

// relayQuery forwards a simple Query to the active (or the pool's)
// server connection and relays its results.
func (ss *session) relayQuery(body []byte) error {
	ss.start = time.Now()
	if err := ss.ensureServer(); err != nil {
		var sg *errServerGone
		if errors.As(err, &sg) {
			return err
		}
		ss.sendError(toErrorFields(err))
		ss.out = appendRFQ(ss.out, ss.txStatus)
		return nil
	}
	q, rewritten, err := ss.prepareQuery(body)
	if err != nil {
		return err
	}
	if q != nil && q.synthetic != "" {
		if q.synthetic != "-" { // "-": already answered
			ss.out = appendCommandComplete(ss.out, q.synthetic)
			ss.out = appendRFQ(ss.out, ss.txStatus)
		}
		ss.observeRequest()
		ss.start = time.Time{}
		return nil
	}
	ss.closeEvicted()
	if rewritten != nil {
		ss.sout = appendQuery(ss.sout, *rewritten)
		ss.push(expect{kind: expQuery, q: q})
	} else if !(q == nil || q.plain()) || !ss.sendAutoPrepared(body) {
		ss.sout = appendMsg(ss.sout, msgQuery, body)
		ss.push(expect{kind: expQuery, q: q})
	}
	if err := ss.flushServer(); err != nil {
		return err
	}
	return ss.drain()
}

func (ss *session) handleFuncCall(body []byte) error {
	if err := ss.ensureServer(); err != nil {
		var sg *errServerGone
		if errors.As(err, &sg) {
			return err
		}
		ss.sendError(toErrorFields(err))
		ss.out = appendRFQ(ss.out, ss.txStatus)
		return nil
	}
	ss.sout = appendMsg(ss.sout, msgFuncCall, body)
	ss.push(expect{kind: expQuery})
	if err := ss.flushServer(); err != nil {
		return err
	}
	return ss.drain()
}

// sendError queues an ErrorResponse for the client.
func (ss *session) sendError(f errorFields) {
	ss.batchFailed = true
	ss.srv.metrics.countError(f.Code)
	ss.out = appendError(ss.out, f)
}

// handleParse maps the client's statement to its server-side name.
func (ss *session) handleParse(body []byte) error {
	pm, ok := decodeParse(body)
	if !ok {
		return newSQLError(codeProtocolViolation, "invalid Parse message format")
	}
	if ss.batch == false && ss.start.IsZero() {
		ss.start = time.Now()
	}
	name := string(pm.name)
	prev := ss.stmts[name]
	if name != "" && prev != nil {
		return ss.parseDuplicate(name, pm.query, pm.oids)
	}
	var e *stmtEntry
	if prev != nil && len(prev.key) == len(pm.query)+1+len(pm.oids) &&
		prev.key[:len(pm.query)] == string(pm.query) && prev.key[len(pm.query)+1:] == string(pm.oids) {
		e = prev // unnamed statement re-parsed with the same text: no lookup
	} else {
		e = ss.srv.intern.protocol(pm.query, pm.oids)
	}
	ss.notePinningParse(e, pm.query)
	snap, sharded := ss.snapshot()
	if ss.txStatus == 'E' {
		if !sharded && ss.sc != nil {
			// The server answers as PostgreSQL does (a syntax error,
			// 25P02, or ParseComplete for COMMIT/ROLLBACK); the proxy's
			// copy of e may already be prepared there.
			ss.stmts[name] = e
			ss.probeParse(pm.query, pm.oids, expect{kind: expParse, name: name, prev: prev})
			return ss.maybeFlushBatch()
		} else if sharded && !ss.txEndInBatch && ss.route(e).err == nil && !endsTx(e) {
			// Parsed fine (a syntax error is reported as such by
			// routeParse, as PostgreSQL reports it first).
			return ss.failParse(name, prev, &sqlError{abortedError})
		}
	}
	if sharded {
		synth, err := ss.routeParse(snap, e)
		if err != nil {
			return ss.failParse(name, prev, err)
		}
		if ss.skip {
			return nil
		}
		if synth {
			ss.stmts[name] = e
			ss.push(expect{kind: expSynthParse, name: name, prev: prev})
			return nil
		}
	}
	if ss.sc == nil && e.validated.Load() {
		// A server accepted this statement before: answer without taking a
		// server connection; it is prepared lazily at Bind/Describe. (A
		// client that prepares synchronously while its other connections
		// hold the pool's servers in transactions would otherwise wait on
		// itself.) Errors from schema changes surface at Bind instead.
		ss.stmts[name] = e
		ss.push(expect{kind: expSynthParse, name: name, prev: prev})
		return nil
	}
	if err := ss.splitStatement(e); err != nil || ss.skip {
		return ss.failSplit(err)
	}
	if err := ss.ensureServer(); err != nil {
		return ss.failExtended(err)
	}
	ss.batch, ss.scBatch = true, true
	ss.closeEvicted()
	ss.stmts[name] = e
	if ss.sc.Prepared.Has(e.name) {
		ss.push(expect{kind: expSynthParse, name: name, prev: prev})
		return nil
	}
	ok, err := ss.prepareChecked(e, expect{kind: expParse, name: name, prev: prev})
	if err != nil {
		return err
	}
	if !ok {
		// The text now answers with other columns than e's clients were
		// shown: this client's statement is a new one, prepared where it
		// runs (e stays with the clients that prepared it before).
		ss.stmts[name] = ss.srv.intern.protocol(pm.query, pm.oids)
	}
	return ss.maybeFlushBatch()
}

// addServerStmt records that name is being prepared on the server
// connection; statements the LRU evicts are closed there.
func (ss *session) addServerStmt(name string) {
	for _, ev := range ss.sc.Prepared.Add(name) {
		ss.sout = appendCloseStmt(ss.sout, ev)
		ss.push(expect{kind: expCloseSwallow, server: ev})
	}
}

// ensureServerStmt injects a Parse for e when the server connection lacks
// it; auto is the shape when the Parse belongs to an auto-prepared Query.
// It reports false when e's result columns changed since its clients were
// shown them (the caller fails with errStaleShape); a failed Parse leaves
// ss.skip set (the caller stops).
func (ss *session) ensureServerStmt(e *stmtEntry, auto *autoShape) (bool, error) {
	if ss.sc.Prepared.Has(e.name) {
		return true, nil
	}
	return ss.prepareChecked(e, expect{kind: expParseSwallow, auto: auto})
}

// handleBind rewrites the statement name of a Bind.
func (ss *session) handleBind(body []byte) error {
	portal, rest, ok := cstring(body)
	if !ok {
		return newSQLError(codeProtocolViolation, "invalid Bind message format")
	}
	stmt, rest, ok := cstring(rest)
	if !ok {
		return newSQLError(codeProtocolViolation, "invalid Bind message format")
	}
	e := ss.stmts[string(stmt)]
	if len(ss.deallocs) > 0 {
		delete(ss.deallocs, string(portal))
	}
	if e != nil {
		if d, ok := e.deallocation(); ok {
			return ss.bindDeallocate(string(portal), e, d)
		}
		if e.runsSQLNamed() {
			return ss.raiseOnServer(errSQLNamedExtended)
		}
	}
	snap, sharded := ss.snapshot()
	prevPortalStmt := ss.portalStmt
	if sharded {
		ss.batch = true
		ss.bindKept = false
		handled, err := ss.routeBind(snap, string(portal), string(stmt), e, rest)
		if handled || err != nil || ss.skip {
			if len(portal) == 0 && e != nil { // an unknown statement (26000) leaves the unnamed portal as it was
				switch {
				case !ss.skip:
					ss.portalStmt = e
				case !ss.bindKept:
					ss.portalStmt = nil // failed after PostgreSQL replaced the portal: with what is not known
				}
			}
			ss.batch = true
			return err
		}
	}
	if err := ss.splitStatement(e); err != nil || ss.skip {
		return ss.failSplit(err)
	}
	if err := ss.ensureServer(); err != nil {
		return ss.failExtended(err)
	}
	ss.batch, ss.scBatch = true, true
	ss.closeEvicted()
	if len(portal) == 0 && e != nil {
		ss.portalStmt = e
	}
	if e == nil {
		if f, ok := missingStmtError(string(stmt)); ok {
			return ss.raiseOnServer(f)
		}
		// Unknown name: let the server say so, with the client's name.
		ss.sout = appendMsg(ss.sout, msgBind, body)
		ss.push(expect{kind: expBind})
		return ss.maybeFlushBatch()
	}
	if ok, err := ss.ensureServerStmt(e, nil); err != nil || ss.skip {
		return err
	} else if !ok {
		return ss.raiseOnServer(toErrorFields(errStaleShape)) // the server's transaction fails with it
	}
	l := len(portal) + 1 + len(e.name) + 1 + len(rest) + 4
	ss.sout = append(ss.sout, msgBind, byte(l>>24), byte(l>>16), byte(l>>8), byte(l))
	ss.sout = append(ss.sout, portal...)
	ss.sout = append(ss.sout, 0)
	ss.sout = append(ss.sout, e.name...)
	ss.sout = append(ss.sout, 0)
	ss.sout = append(ss.sout, rest...)
	track, before := "", prevPortalStmt // a named portal over shards (portalExists); undone if the Bind fails or is skipped
	if len(portal) > 0 && sharded && e != nil {
		track = string(portal)
		before = ss.portalStmts[track]
		ss.notePortal(track, e)
	}
	ss.push(expect{kind: expBind, stmt: e, name: track, unnamed: len(portal) == 0, prev: before})
	return ss.maybeFlushBatch()
}

// handleDescribe rewrites Describe('S') and passes Describe('P') through.
func (ss *session) handleDescribe(body []byte) error {
	if len(body) < 2 {
		return newSQLError(codeProtocolViolation, "invalid Describe message format")
	}
	if _, d := ss.deallocPortal(body[1:]); body[0] == 'P' && d != nil {
		ss.batch = true
		ss.push(expect{kind: expSynthNoData})
		return nil
	}
	if snap, sharded := ss.snapshot(); sharded {
		name, _, ok := cstring(body[1:])
		if !ok {
			return newSQLError(codeProtocolViolation, "invalid Describe message format")
		}
		ss.batch = true
		if body[0] == 'P' {
			if cr := ss.multiCursor[string(name)]; cr != nil && ss.multi[string(name)] == nil {
				return ss.describeProxyCursor(cr)
			}
			mp, shard := ss.portalShard(snap, string(name))
			if mp != nil {
				if ss.failedBlockBefore() && rowsPlan(mp.op) {
					return ss.failExtendedTx(&sqlError{abortedError}) // PostgreSQL describes a portal with rows only outside failed blocks
				}
				return ss.describeMulti(snap, mp)
			}
			if ss.failedPortal(ss.boundStmt(string(name)), shard, ss.failedBlockBefore(), true) {
				return ss.failExtendedTx(&sqlError{abortedError})
			}
			if err := ss.usePortalShard(snap, shard); err != nil {
				return ss.failExtendedTx(err)
			}
		} else if e := ss.stmts[string(name)]; e != nil && ss.route(e).err == nil {
			ri := ss.route(e)
			if ss.failedBlockBefore() {
				if msgs, ok := describeWithoutRows(e, ri); ok {
					// PostgreSQL describes a statement without result
					// rows in a failed block (drivers Describe their
					// ROLLBACK); statements with rows get 25P02.
					ss.push(expect{kind: expSynthMessages, name: string(msgs)})
					return nil
				}
				if sh := e.shape.Load(); sh == nil || *sh != "" {
					// Possibly with rows (the statement's shard may be
					// outside the failed transaction and answer it).
					return ss.failExtendedTx(&sqlError{abortedError})
				}
			}
			if done, err := ss.describeCursorStmt(snap, ri.analysis); done {
				return err
			}
			if err := ss.useShardForStatement(snap, ss.parseShard(snap, ri.analysis)); err != nil {
				return ss.failExtendedTx(err)
			}
		}
		if ss.skip {
			return nil
		}
	} else if body[0] == 'S' {
		if name, _, ok := cstring(body[1:]); ok {
			if err := ss.splitStatement(ss.stmts[string(name)]); err != nil || ss.skip {
				return ss.failSplit(err)
			}
		}
	}
	if err := ss.ensureServer(); err != nil {
		return ss.failExtended(err)
	}
	ss.batch, ss.scBatch = true, true
	ss.closeEvicted()
	if body[0] == 'S' {
		name, _, ok := cstring(body[1:])
		if !ok {
			return newSQLError(codeProtocolViolation, "invalid Describe message format")
		}
		if e := ss.stmts[string(name)]; e != nil {
			if ok, err := ss.ensureServerStmt(e, nil); err != nil || ss.skip {
				return err
			} else if !ok {
				return ss.raiseOnServer(toErrorFields(errStaleShape)) // the server's transaction fails with it
			}
			ss.sout = appendDescribeStmt(ss.sout, e.name)
			ss.push(expect{kind: expDescribe, stmt: e})
			return ss.maybeFlushBatch()
		}
		if f, ok := missingStmtError(string(name)); ok {
			return ss.raiseOnServer(f)
		}
	}
	ss.sout = appendMsg(ss.sout, msgDescribe, body)
	ss.push(expect{kind: expDescribe})
	return ss.maybeFlushBatch()
}

func putLen(b []byte, n int) {
	b[0], b[1], b[2], b[3] = byte(n>>24), byte(n>>16), byte(n>>8), byte(n)
}

func (ss *session) handleExecute(body []byte) error {
	failedBlock := ss.failedBlockBefore()
	snap, sharded := ss.snapshot()
	portalsAtStake := ss.txStatus == 'E' || len(ss.portalStmts) > 0
	mayEndTx := (sharded || portalsAtStake) && ss.executeMayEndTx(body, sharded)
	if sharded {
		ss.batchExecuted = true
		if mayEndTx {
			ss.batchTxEnd, ss.mayEndBlock = true, true
		}
	}
	if portalsAtStake && mayEndTx {
		if ss.txStatus == 'E' {
			// Only a COMMIT or ROLLBACK runs in a failed block: if this
			// one runs, the block ends within the batch.
			ss.txEndInBatch = true
		}
		ss.portalsStale = true // the transaction's portals may end here
	}
	if _, d := ss.deallocPortal(body); d != nil {
		return ss.executeDeallocate(d)
	}
	if sharded {
		name, _, ok := cstring(body)
		if !ok {
			return newSQLError(codeProtocolViolation, "invalid Execute message format")
		}
		ss.batch = true
		mp, shard := ss.portalShard(snap, string(name))
		if mp != nil {
			if _, ok := mp.op.(*twoPhaseCommitOp); ok && failedBlock {
				mp.op = &failedCommitOp{} // bound before the transaction failed: it rolls back
			}
			if _, ends := mp.op.(*failedCommitOp); failedBlock && !ends {
				// A portal the proxy runs over shards is never a
				// transaction's end: 25P02, as PostgreSQL answers.
				return ss.failExtendedTx(&sqlError{abortedError})
			}
			if mp.snap != nil {
				snap = mp.snap // a shard the plan names may have left the topology since the Bind
			}
			return ss.executeMulti(snap, mp, body)
		}
		e := ss.boundStmt(string(name))
		if ss.failedPortal(e, shard, failedBlock, false) {
			return ss.failExtendedTx(&sqlError{abortedError})
		}
		if failedBlock && e != nil && isCommit(e) && ss.blockedByAbort(shard) {
			// A COMMIT bound before the transaction failed elsewhere:
			// it rolls back everywhere (its shard would commit its part).
			if err := ss.settle(); err != nil || ss.skip {
				return err
			}
			tag, err := ss.rollbackFailed(snap)
			if err != nil {
				return ss.failExtendedTx(err)
			}
			ss.out = appendCommandComplete(ss.out, tag)
			return nil
		}
		if err := ss.usePortalShard(snap, shard); err != nil {
			return ss.failExtendedTx(err)
		}
		if ss.skip {
			return nil
		}
	}
	if err := ss.ensureServer(); err != nil {
		return ss.failExtended(err)
	}
	ss.batch, ss.scBatch = true, true
	ss.closeEvicted()
	var st *stmtEntry
	if len(body) > 0 && body[0] == 0 {
		st = ss.portalStmt
	}
	ss.sout = appendMsg(ss.sout, msgExecute, body)
	ss.push(expect{kind: expExecute, stmt: st})
	return ss.maybeFlushBatch()
}

// executeMayEndTx reports that the Execute (body) may end a failed
// transaction block: its portal's statement is a COMMIT, ROLLBACK or the
// like, or not known. Over shards (sharded) a named portal the session
// does not know of does not exist, unless portalsPartial.
func (ss *session) executeMayEndTx(body []byte, sharded bool) bool {
	name, _, _ := cstring(body)
	if e := ss.boundStmt(string(name)); e != nil {
		return endsTxStatement(e)
	}
	return len(name) == 0 || !sharded || ss.portalsPartial
}

// handleClose answers Close('S') itself (the server copy is left to the
// LRU, other clients may share it) and forwards Close('P').
func (ss *session) handleClose(body []byte) error {
	if len(body) < 2 {
		return newSQLError(codeProtocolViolation, "invalid Close message format")
	}
	if body[0] == 'S' {
		name, _, ok := cstring(body[1:])
		if !ok {
			return newSQLError(codeProtocolViolation, "invalid Close message format")
		}
		n := string(name)
		prev := ss.stmts[n]
		delete(ss.stmts, n)
		ss.push(expect{kind: expSynthClose, name: n, prev: prev})
		return nil
	}
	if name, d := ss.deallocPortal(body[1:]); d != nil {
		delete(ss.deallocs, name)
		ss.push(expect{kind: expSynthClose})
		return nil
	}
	var restore func()
	if snap, sharded := ss.snapshot(); sharded {
		name, _, _ := cstring(body[1:])
		restore = ss.forgetPortal(string(name))
		if _, ok := ss.multi[string(name)]; ok {
			delete(ss.multi, string(name))
			ss.push(expect{kind: expSynthClose, restore: restore})
			return nil
		}
		if shard, ok := ss.portals[string(name)]; ok {
			delete(ss.portals, string(name))
			if err := ss.useShard(snap, shard); err != nil {
				restore()
				return ss.failExtendedTx(err)
			}
			if ss.skip {
				restore() // an error before it: skipped
				return nil
			}
		}
	}
	if err := ss.ensureServer(); err != nil {
		return ss.failExtended(err)
	}
	ss.batch, ss.scBatch = true, true
	ss.closeEvicted()
	ss.sout = appendMsg(ss.sout, msgClose, body)
	ss.push(expect{kind: expClose, restore: restore})
	return ss.maybeFlushBatch()
}

func (ss *session) handleFlush() error {
	if ss.sc == nil {
		return ss.drain() // only synthetic responses are pending
	}
	ss.sout = appendEmpty(ss.sout, msgFlush)
	if err := ss.flushServer(); err != nil {
		return err
	}
	return ss.drain()
}

func (ss *session) handleSync() error {
	ss.txEndInBatch = false
	ss.batchExecuted, ss.mayEndBlock, ss.blockEnded = false, false, false
	txEnd := ss.batchTxEnd
	ss.batchTxEnd = false
	if err := ss.endSuspended(); err != nil {
		return err
	}
	if ss.implicitTx {
		snap, _ := ss.snapshot()
		return ss.syncImplicitTx(snap)
	}
	failed := ss.skip // the proxy raised an error in this batch
	ss.skip = false
	if ss.start.IsZero() {
		ss.start = time.Now()
	}
	// Outside a transaction block a batch is one implicit transaction: an
	// error anywhere in it rolls back the work of every statement before,
	// on every shard it reached (a server only knows its own errors).
	oneTx := ss.txStatus == 'I' && ss.txBegin == "" && !txEnd
	if len(ss.held) > 0 || (failed && oneTx && ss.sc != nil && ss.scBatch) {
		if err := ss.settle(); err != nil {
			return err
		}
		if (failed || ss.skip) && oneTx {
			if err := ss.abortBatchWork(); err != nil {
				return err
			}
		}
		if err := ss.syncHeld(); err != nil {
			return err
		}
		ss.skip = false
	}
	if ss.txStatus == 'I' && ss.txBegin != "" && !ss.implicitTx && len(ss.txShards()) > 0 {
		// A BEGIN earlier in this batch opened the transaction, and the
		// proxy's own exchanges (a cross-shard cursor's fetches) consumed
		// the ReadyForQuery that said so: the client's transaction is open.
		ss.txStatus = 'T'
	}
	ss.multiAtSync()
	if ss.sc == nil || !ss.scBatch {
		if ss.sc != nil && ss.pendingCount() > 0 {
			// Only synthetic answers can be pending here.
			if err := ss.drain(); err != nil {
				return err
			}
		}
		if ss.txStatus == 'I' {
			ss.resetTx()
		}
	}
	if ss.sc == nil || (!ss.scBatch && ss.pendingCount() == 0) {
		// Nothing reached a server: answer from here.
		if err := ss.drain(); err != nil {
			return err
		}
		ss.skip = false
		ss.batch = false
		if ss.txStatus == 'I' && (ss.txWriter != "" || ss.txBegin != "") {
			ss.resetTx()
		}
		ss.out = appendRFQ(ss.out, ss.txStatus)
		ss.observeRequest()
		ss.start = time.Time{}
		return nil
	}
	ss.sout = appendEmpty(ss.sout, msgSync)
	ss.push(expect{kind: expSync})
	if err := ss.flushServer(); err != nil {
		return err
	}
	err := ss.drain()
	ss.skip = false
	return err
}

// drain relays server responses and synthesizes the proxy's own until
// every pending expectation is met.
func (ss *session) drain() error {
	if ss.sc != nil {
		ss.cancelled.Store(false)
		ss.busySince.Store(time.Now().UnixNano())
		defer ss.busySince.Store(0)
	}
	for ss.pendingCount() > 0 {
		e := &ss.fifo[ss.head]
		switch e.kind {
		case expSynthParse, expSynthClose, expSynthBind, expSynthNoData:
			ss.out = appendEmpty(ss.out, synthMessage[e.kind])
			ss.pop()
			continue
		case expSynthDone:
			ss.out = appendCommandComplete(ss.out, e.name)
			ss.pop()
			continue
		case expSynthMessages:
			ss.out = append(ss.out, e.name...)
			ss.pop()
			continue
		case expSynthError:
			ss.sendError(e.err)
			ss.pop()
			ss.skipToSync()
			continue
		}
		if ss.sc == nil {
			return fmt.Errorf("proxy: internal error: expecting a server response without a server connection")
		}
		if ss.sr.buffered() == 0 && len(ss.out) > 0 {
			if err := ss.flushClient(); err != nil {
				return err
			}
		}
		typ, body, err := ss.sr.next()
		if err != nil {
			return ss.serverFailed(err)
		}
		if len(ss.out) > 64<<10 {
			if err := ss.flushClient(); err != nil {
				return err
			}
		}
		e = &ss.fifo[ss.head]
		if debugTrace {
			ss.srv.log.Debug("wire trace: server", "pid", ss.pid, "type", string(rune(typ)), "body", fmt.Sprintf("%q", body), "expecting", e.kind)
		}
		switch typ {
		case msgDataRow, msgNoticeResponse, msgNotification, msgCopyData, msgCopyDone, msgFuncCallResp:
			if e.auto != nil && e.kind != expExecute && typ == msgNoticeResponse {
				// Held until the statement runs: a retry as written
				// raises it again.
				ss.autoNotices = appendMsg(ss.autoNotices, typ, body)
				continue
			}
			ss.out = appendMsg(ss.out, typ, body)
		case msgParamStatus:
			ss.noteParamStatus(body)
			ss.out = appendMsg(ss.out, typ, body)
		case msgParseComplete:
			if e.stmt != nil && !e.stmt.validated.Load() {
				e.stmt.validated.Store(true)
			}
			if e.kind == expParseSwallow {
				ss.pop()
				continue
			}
			if e.kind != expParse {
				return ss.desync(typ, e.kind)
			}
			ss.out = appendMsg(ss.out, typ, body)
			ss.pop()
		case msgBindComplete:
			if e.kind == expBindSwallow {
				ss.pop()
				continue
			}
			if e.kind != expBind {
				return ss.desync(typ, e.kind)
			}
			ss.out = appendMsg(ss.out, typ, body)
			ss.pop()
		case msgCloseComplete:
			switch e.kind {
			case expCloseSwallow:
				ss.pop()
			case expClose:
				ss.out = appendMsg(ss.out, typ, body)
				ss.pop()
			default:
				return ss.desync(typ, e.kind)
			}
		case msgParamDesc:
			if e.kind != expShapeCheck {
				ss.out = appendMsg(ss.out, typ, body)
			}
		case msgRowDescription, msgNoData:
			if e.kind == expShapeCheck {
				if !e.stmt.noteShape(typ, body) {
					ss.shapeChanged = true
				}
				ss.pop()
				continue
			}
			if e.kind == expDescribe && e.stmt != nil && e.stmt.shape.Load() == nil {
				e.stmt.noteShape(typ, body)
			}
			if e.kind == expDescribeQuery {
				ss.releaseAutoNotices()
				if typ == msgRowDescription {
					ss.out = appendMsg(ss.out, typ, body)
				}
				ss.pop()
				continue
			}
			ss.out = appendMsg(ss.out, typ, body)
			if e.kind == expDescribe {
				ss.pop()
			}
		case msgCommandComplete, msgEmptyQuery, msgPortalSuspended:
			if typ == msgCommandComplete && len(body) > 0 && (body[0] == 'A' || body[0] == 'D' || body[0] == 'C') {
				if t, _, ok := cstring(body); ok {
					ss.noteSchemaChange(string(t))
				}
			}
			switch e.kind {
			case expExecute:
				ss.out = appendMsg(ss.out, typ, body)
				if typ == msgCommandComplete {
					ss.executeDone(e.stmt, body)
				}
				ss.pop()
			case expQuery:
				if e.q == nil {
					if len(ss.pending) > 0 && typ == msgCommandComplete {
						t, _, _ := cstring(body)
						ss.noteTag(nil, string(t))
					}
					ss.out = appendMsg(ss.out, typ, body)
				} else if !ss.statementDone(e.q, typ, body) {
					ss.out = appendMsg(ss.out, typ, body)
				}
			default:
				return ss.desync(typ, e.kind)
			}
		case msgCopyInResponse:
			ss.out = appendMsg(ss.out, typ, body)
			if err := ss.copyIn(); err != nil {
				return err
			}
		case msgCopyOutResponse, msgCopyBothResp:
			ss.out = appendMsg(ss.out, typ, body)
		case msgErrorResponse:
			if isFatal(body) {
				var er pgproto3.ErrorResponse
				er.Decode(body)
				return ss.lostServer(fmt.Errorf("server sent FATAL %s: %s", er.Code, er.Message),
					errorFields{Code: er.Code, Message: er.Message, Detail: er.Detail, Hint: er.Hint})
			}
			if e.kind == expErrorAs {
				ss.sendError(e.err)
				ss.batchFailed = true
				ss.serverError(e)
				continue
			}
			if e.auto != nil && ss.autoFailed(e, body) {
				ss.autoNotices = ss.autoNotices[:0]
				ss.serverError(e)
				if ss.pendingCount() > 0 && ss.fifo[ss.head].kind == expSync {
					ss.fifo[ss.head].retry = true
				}
				continue
			}
			if e.auto != nil {
				ss.releaseAutoNotices()
				body = ss.autoErrorPosition(body)
			}
			if e.kind == expBind {
				e.kept = bindFailsBeforePortal(errorCode(body))
			}
			if e.kind == expBind && e.stmt != nil && isStalePlanError(body) {
				ss.srv.intern.retire(e.stmt) // the client's next Parse of this text prepares afresh
			}
			ss.srv.metrics.countError(errorCode(body))
			if f := e.q.failAs(); f != nil && errorCode(body) == codeUndefinedPrepared {
				ss.sendError(*f)
			} else {
				ss.out = appendMsg(ss.out, typ, body)
			}
			ss.batchFailed = true
			ss.serverError(e)
		case msgReadyForQuery:
			if len(body) != 1 || (e.kind != expSync && e.kind != expQuery) {
				return ss.desync(typ, e.kind)
			}
			ss.noteServerStatus(body[0])
			ss.scBatch = false
			if e.retry {
				ss.pop()
				if err := ss.retryAsWritten(); err != nil {
					return err
				}
				continue
			}
			status := body[0]
			if ss.txAborted && status == 'T' {
				status = 'E' // the proxy failed the transaction; the server does not know
			}
			ss.out = appendRFQ(ss.out, status)
			ss.readyForQuery(status)
			ss.pop()
			if !ss.start.IsZero() {
				ss.observeRequest()
				ss.start = time.Time{}
			}
		default:
			ss.out = appendMsg(ss.out, typ, body)
		}
	}
	return nil
}

// desync handles a server message that fits no expectation: the server
// connection cannot be trusted any more.
func (ss *session) desync(typ byte, kind expKind) error {
	err := fmt.Errorf("unexpected server message %q while expecting kind %d", typ, kind)
	ss.abandonServer(err)
	return &errServerGone{err}
}

// serverFailed handles a read error from the server connection.
func (ss *session) serverFailed(err error) error {
	return ss.lostServer(err, errorFields{Code: codeConnectionFailure, Message: "server connection lost"})
}

// lostServer handles a server connection that died (EOF, reset, or a FATAL
// from the server, e.g. on restart). Inside a transaction the client is
// told with f as FATAL and closed, since its transaction is gone. Between
// transactions only the request in flight fails (f as ERROR) and the
// client keeps its session; the next request gets another server.
func (ss *session) lostServer(err error, f errorFields) error {
	if ss.forced.Load() {
		ss.abandonServer(err)
		return newSQLError(codeAdminShutdown, "terminating connection due to administrator command")
	}
	inTx := ss.txStatus != 'I'
	synced := false
	for i := len(ss.fifo) - 1; i >= ss.head; i-- {
		e := &ss.fifo[i]
		if e.kind == expSync || e.kind == expQuery {
			synced = true
		}
		ss.undo(e, false)
	}
	ss.pending = ss.pending[:0]
	ss.abandonServer(err)
	if inTx {
		f.Severity = "FATAL"
		return &sqlError{f}
	}
	f.Severity = "ERROR"
	ss.sendError(f)
	if synced {
		ss.out = appendRFQ(ss.out, 'I')
		ss.skip = false
	} else {
		ss.skip = true // the client's Sync gets the ReadyForQuery
	}
	return nil
}

// serverError handles an ErrorResponse for the head expectation e.
func (ss *session) serverError(e *expect) {
	switch e.kind {
	case expQuery:
		if e.q != nil {
			e.q.failed = true
		}
		if ss.txStatus == 'I' || e.q == nil || !e.q.explicit {
			ss.pending = ss.pending[:0]
		}
		return // ReadyForQuery follows
	case expSync:
		ss.pending = ss.pending[:0]
		return
	}
	failed := *e
	ss.pop()
	ss.skipToSync(failed)
}

// skipToSync drops the expectations of messages PostgreSQL skips after an
// error (up to the next Sync) and undoes their optimistic bookkeeping, in
// reverse order. failed is the message that raised the error, if any.
func (ss *session) skipToSync(failed ...expect) {
	end := ss.head
	for end < len(ss.fifo) && ss.fifo[end].kind != expSync {
		end++
	}
	for i := end - 1; i >= ss.head; i-- {
		ss.undo(&ss.fifo[i], false)
	}
	for _, f := range failed {
		ss.undo(&f, true)
	}
	if end == len(ss.fifo) {
		ss.fifo = ss.fifo[:0]
		ss.head = 0
	} else {
		copy(ss.fifo[ss.head:], ss.fifo[end:])
		ss.fifo = ss.fifo[:len(ss.fifo)-(end-ss.head)]
	}
	if ss.pendingCount() == 0 {
		ss.skip = true // the client's Sync has not arrived yet
	}
	if !ss.inExplicitTx() {
		ss.pending = ss.pending[:0]
	}
}

func (ss *session) inExplicitTx() bool { return ss.txStatus != 'I' }

// undo reverts the bookkeeping of a message that did not take effect.
func (ss *session) undo(e *expect, failed bool) {
	switch e.kind {
	case expParse, expParseSwallow:
		if ss.sc != nil && e.server != "" {
			ss.sc.Prepared.Remove(e.server)
		}
		if e.kind == expParse {
			ss.restoreStmt(e, failed)
		}
	case expSynthParse:
		ss.restoreStmt(e, failed)
	case expSynthClose:
		if e.prev != nil {
			ss.stmts[e.name] = e.prev
		}
		if e.restore != nil {
			e.restore()
		}
	case expClose:
		if e.restore != nil {
			e.restore()
		}
	case expSynthDone, expSynthError:
		if e.restore != nil {
			e.restore()
		}
	case expBind:
		// Skipped, or failed before replacing the portal: it is as it
		// was. Failed later: PostgreSQL replaced it with an empty one,
		// which the proxy does not track.
		restore := !failed || e.kept
		if e.name != "" {
			if restore && e.prev != nil {
				ss.portalStmts[e.name] = e.prev
			} else {
				delete(ss.portalStmts, e.name)
			}
		}
		if e.unnamed {
			ss.portalStmt = nil
			if restore {
				ss.portalStmt = e.prev
			}
		}
	case expCloseSwallow:
		// The evicted statement is still on the server but no longer in
		// the cache: the connection's statement list is now unreliable.
		if ss.sc != nil {
			ss.sc.MarkBroken()
		}
	}
}

func (ss *session) restoreStmt(e *expect, failed bool) {
	if failed || e.prev == nil {
		delete(ss.stmts, e.name)
	} else {
		ss.stmts[e.name] = e.prev
	}
}

// readyForQuery updates transaction state at the end of a request.
func (ss *session) readyForQuery(status byte) {
	ss.txStatus = status
	if status == 'I' {
		ss.commitPending()
		ss.batch = false
		ss.endPortals() // the transaction's portals ended with it, as PostgreSQL's do
		if ss.txBegin != "" || ss.txWriter != "" || ss.txAborted {
			ss.resetTx()
		}
	} else if ss.txBegin == "" {
		ss.txBegin = "BEGIN"
	}
}

// copyIn relays the client's COPY data to the server until CopyDone or
// CopyFail.
func (ss *session) copyIn() error {
	if err := ss.flushClient(); err != nil {
		return err
	}
	for {
		typ, body, err := ss.cr.next()
		if err != nil {
			if errors.Is(err, io.EOF) || isNetErr(err) {
				return errClientGone
			}
			return err
		}
		ss.sout = appendMsg(ss.sout, typ, body)
		switch typ {
		case msgCopyDone, msgCopyFail:
			return ss.flushServer()
		case msgCopyData, msgFlush, msgSync:
		default:
			// PostgreSQL fails the COPY on other messages; forward so it does.
			return ss.flushServer()
		}
		if len(ss.sout) >= 64<<10 {
			if err := ss.flushServer(); err != nil {
				return err
			}
		}
	}
}

// closeEvicted closes server statements evicted by SQL-level PREPAREs of
// an earlier multi-statement Query, ahead of the next request.
func (ss *session) closeEvicted() {
	for _, name := range ss.evicted {
		ss.sout = appendCloseStmt(ss.sout, name)
		ss.push(expect{kind: expCloseSwallow, server: name})
	}
	ss.evicted = ss.evicted[:0]
}

// debugTrace (environment SHARDPROXY_WIRE_TRACE=1) logs every message at
// debug level: a development aid, far too slow for production.
var debugTrace = os.Getenv("SHARDPROXY_WIRE_TRACE") != ""
