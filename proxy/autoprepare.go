package proxy

import (
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"unicode/utf8"
	"unsafe"

	"github.com/shardproxy/shardproxy/planner"
	"github.com/shardproxy/shardproxy/proxy/sqlclass"
)

// Auto-prepare (pool.auto_prepare): a simple Query holding one SELECT,
// INSERT, UPDATE or DELETE, sent outside a transaction block (inside one:
// only a statement without result rows), runs as
// Parse/Bind/Describe/Execute/Sync of a server-side prepared statement
// whose text is the query's with its numeric literals replaced by typed
// parameters (sqlclass.NormalizeNumbers, planner.CheckParameterized).
// PostgreSQL then skips parsing, analysing and (with a generic plan)
// planning, which is most of its work for short statements; pgbench -S
// in simple mode costs it about 40% less.
//
// The client sees what the original text would produce: the proxy drops
// ParseComplete, BindComplete and NoData, and passes RowDescription, the
// rows, CommandComplete and ReadyForQuery. An error before the statement
// ran (at Parse, Bind or Describe) is not shown: the proxy sends the
// original text as a simple Query on the same connection and relays its
// answer, so error messages and positions are PostgreSQL's own. Errors
// while it runs are the statement's own and pass through. Inside a
// transaction block the error has aborted the transaction, as the text's
// would: it passes through with its position mapped to the text.
// Statements with result rows are left alone there because only they can
// fail with "cached plan must not change result type" where the text
// would succeed.

// autoShapes remembers, per shape (the stmtIntern key of the normalized
// text: text, NUL, parameter OID block), whether queries of that shape run
// prepared. A shape is prepared from its second sighting on, so one-off
// statements never reach the statement intern; the table is bounded.
type autoShapes struct {
	mu       sync.Mutex
	shapes   map[string]*autoShape
	prepared atomic.Int64 // shapes with a statement and not refused (never evicted)
	runs     atomic.Int64 // simple queries run as prepared statements
	retries  atomic.Int64 // of those, sent again as written after an error before they ran
}

// autoShape is one shape's state.
type autoShape struct {
	seen int // sightings, under autoShapes.mu
	once sync.Once
	bad  atomic.Bool // refused (by the check or a server): send as written from now on
	// entry and returnsRows are set by once: the statement to run (nil:
	// send as written) and whether it is a SELECT or RETURNING. Only such a
	// statement can fail with "cached plan must not change result type",
	// which the proxy hides by sending the text again — impossible inside
	// a transaction block, so there it runs auto-prepared only without.
	entry       *stmtEntry
	returnsRows bool
}

func newAutoShapes() *autoShapes { return &autoShapes{shapes: make(map[string]*autoShape)} }

// lookup counts a sighting of key and returns its shape from the second
// sighting on; nil on the first, when the shape was refused, or when the
// table is full of prepared shapes.
func (as *autoShapes) lookup(key []byte, max int) *autoShape {
	as.mu.Lock()
	sh := as.shapes[string(key)]
	if sh == nil {
		if len(as.shapes) >= max && !as.evict(max) {
			as.mu.Unlock()
			return nil
		}
		sh = &autoShape{}
		as.shapes[string(key)] = sh
	}
	sh.seen++
	seen := sh.seen
	as.mu.Unlock()
	if seen < 2 || sh.bad.Load() {
		return nil
	}
	return sh
}

// evict drops up to 64 shapes seen once or refused to make room; it
// reports whether there is room now. Called with mu held.
func (as *autoShapes) evict(max int) bool {
	if as.prepared.Load() >= int64(max) {
		return false // everything held is in use
	}
	dropped := 0
	for k, sh := range as.shapes {
		if sh.seen < 2 || sh.bad.Load() {
			delete(as.shapes, k)
			if dropped++; dropped == 64 {
				break
			}
		}
	}
	return dropped > 0
}

// refuse marks the shape as sent as written from now on.
func (as *autoShapes) refuse(sh *autoShape) {
	// Called only for shapes that ran, so after their once set entry.
	if sh.bad.CompareAndSwap(false, true) && sh.entry != nil {
		as.prepared.Add(-1)
	}
}

// statement returns the prepared statement for the shape, deciding once
// whether the normalized text qualifies (a pg_query parse); nil means the
// query is sent as written.
func (sh *autoShape) statement(s *Server, key []byte, textLen, nparams int) *stmtEntry {
	sh.once.Do(func() {
		text := key[:textLen]
		rows, err := planner.CheckParameterized(string(text), nparams)
		if err != nil {
			s.log.Debug("auto-prepare: shape sent as written", "sql", string(text), "reason", err.Error())
			sh.bad.Store(true)
			return
		}
		sh.returnsRows = rows
		sh.entry = s.intern.protocol(text, key[textLen+1:])
		s.autoShapes.prepared.Add(1)
	})
	if sh.bad.Load() {
		return nil
	}
	return sh.entry
}

// sendAutoPrepared queues the simple Query body as a prepared-statement
// exchange when auto-prepare applies, and reports whether it did; false
// means the caller sends body as written. The session has a server
// connection and no extended-protocol batch open.
func (ss *session) sendAutoPrepared(body []byte) bool {
	cfg := ss.srv.config()
	if !cfg.Pool.AutoPrepareOn() || ss.txStatus == 'E' || ss.batch || ss.scBatch ||
		ss.sc.Params["standard_conforming_strings"] != "on" || !lexableEncoding(ss.sc.Params["client_encoding"]) {
		return false
	}
	sql := trimNUL(body)
	if len(sql) == 0 || len(sql) > maxAutoPrepareText {
		return false
	}
	// The string aliases the client's read buffer only during the call.
	key, lits, ok := sqlclass.NormalizeNumbers(unsafe.String(unsafe.SliceData(sql), len(sql)), ss.apKey[:0], ss.apLits[:0])
	ss.apKey, ss.apLits = key, lits
	if !ok {
		return false
	}
	textLen := len(key)
	key = append(key, 0, byte(len(lits)>>8), byte(len(lits)))
	for _, l := range lits {
		key = append(key, byte(l.OID>>24), byte(l.OID>>16), byte(l.OID>>8), byte(l.OID))
	}
	ss.apKey = key
	sh := ss.srv.autoShapes.lookup(key, cfg.Pool.AutoPrepareShapes)
	if sh == nil {
		return false
	}
	e := sh.statement(ss.srv, key, textLen, len(lits))
	if e == nil || (ss.txStatus != 'I' && sh.returnsRows) {
		return false
	}
	ss.apQuery = body
	ss.ensureServerStmt(e, sh) // auto-prepared statements are not shape-checked: always true
	// Bind: unnamed portal, all parameters and results in text.
	ss.sout = append(ss.sout, msgBind, 0, 0, 0, 0)
	start := len(ss.sout) - 4
	ss.sout = append(ss.sout, 0)
	ss.sout = append(ss.sout, e.name...)
	ss.sout = append(ss.sout, 0, 0, 0, byte(len(lits)>>8), byte(len(lits)))
	for _, l := range lits {
		n := l.End - l.Start
		ss.sout = append(ss.sout, byte(n>>24), byte(n>>16), byte(n>>8), byte(n))
		ss.sout = append(ss.sout, sql[l.Start:l.End]...)
	}
	ss.sout = append(ss.sout, 0, 0)
	putLen(ss.sout[start:], len(ss.sout)-start)
	ss.push(expect{kind: expBindSwallow, server: e.name, auto: sh})
	ss.sout = append(ss.sout, msgDescribe, 0, 0, 0, 6, 'P', 0)
	ss.push(expect{kind: expDescribeQuery, server: e.name, auto: sh})
	ss.sout = append(ss.sout, msgExecute, 0, 0, 0, 9, 0, 0, 0, 0, 0)
	ss.push(expect{kind: expExecute, auto: sh})
	ss.sout = appendEmpty(ss.sout, msgSync)
	ss.push(expect{kind: expSync})
	ss.srv.autoShapes.runs.Add(1)
	return true
}

// lexableEncoding reports whether SQL in the client encoding can be
// lexed byte by byte: every encoding PostgreSQL accepts from clients is
// ASCII-compatible except the multibyte ones whose trailing bytes may be
// ASCII ('\\' in particular), which PostgreSQL converts before lexing.
func lexableEncoding(enc string) bool {
	switch strings.ToUpper(enc) {
	case "", "SJIS", "SHIFT_JIS_2004", "BIG5", "GBK", "UHC", "GB18030", "JOHAB":
		return false
	}
	return true
}

// releaseAutoNotices passes the notices held during an auto-prepared
// exchange on to the client (its statement runs, or its error is shown).
func (ss *session) releaseAutoNotices() {
	ss.out = append(ss.out, ss.autoNotices...)
	ss.autoNotices = ss.autoNotices[:0]
}

// maxAutoPrepareText bounds the statements auto-prepare looks at; longer
// ones are rarely repeated by shape and cost more to normalize.
const maxAutoPrepareText = 8 << 10

// autoFailed handles an ErrorResponse (body) to the Parse, Bind or
// Describe of an auto-prepared exchange, before the statement ran. It
// reports whether the proxy takes the error over: then the client does
// not see it and the original text is sent once the server is ready.
// Errors about the connection, resources or a cancel are the client's to
// see, as they would be for the original text.
func (ss *session) autoFailed(e *expect, body []byte) bool {
	if e.kind == expExecute {
		return false // the statement's own error
	}
	code := errorCode(body)
	if len(code) >= 2 {
		switch code[:2] {
		case "08", "53", "57", "58", "XX":
			return false
		}
	}
	if ss.txStatus != 'I' {
		// Inside a transaction block the error has aborted it, as the
		// text's would have (a statement without result rows cannot meet
		// a stale plan's result type): the client sees it, with its
		// position mapped to the text (autoErrorPosition).
		if e.kind == expParseSwallow {
			ss.srv.autoShapes.refuse(e.auto)
		}
		return false
	}
	switch {
	case e.kind != expParseSwallow && (code == "0A000" || code == "26000"):
		// The server's copy is stale (a table changed shape under the
		// cached plan) or gone: close it; the next run prepares afresh.
		if ss.sc.Prepared.Has(e.server) {
			ss.sc.Prepared.Remove(e.server)
			ss.autoClose = e.server
		}
	default:
		ss.srv.autoShapes.refuse(e.auto)
	}
	return true
}

// retryAsWritten sends the original simple Query after an auto-prepared
// exchange failed before its statement ran (and closes the stale server
// statement first, if any).
func (ss *session) retryAsWritten() error {
	ss.srv.autoShapes.retries.Add(1)
	if ss.autoClose != "" {
		ss.sout = appendCloseStmt(ss.sout, ss.autoClose)
		ss.push(expect{kind: expCloseSwallow, server: ss.autoClose})
		ss.autoClose = ""
	}
	ss.sout = appendMsg(ss.sout, msgQuery, ss.apQuery)
	ss.push(expect{kind: expQuery})
	return ss.flushServer()
}

// autoErrorPosition rewrites the position field of an ErrorResponse to an
// auto-prepared exchange so that it points into the text the client sent
// (ss.apQuery) instead of the parameterized text ($1 where the client wrote
// 12345). A position inside a parameter maps to the start of its literal.
func (ss *session) autoErrorPosition(body []byte) []byte {
	var pos []byte
	rest := body
	for len(rest) > 1 {
		f := rest[0]
		v, r, ok := cstring(rest[1:])
		if !ok {
			return body
		}
		if f == 'P' {
			pos = v
		}
		rest = r
	}
	if pos == nil {
		return body
	}
	n, err := strconv.Atoi(string(pos))
	if err != nil || n < 1 {
		return body
	}
	mapped := strconv.Itoa(originalPosition(n, trimNUL(ss.apQuery), ss.apLits))
	out := make([]byte, 0, len(body)+len(mapped))
	rest = body
	for len(rest) > 1 {
		f := rest[0]
		v, r, _ := cstring(rest[1:])
		out = append(out, f)
		if f == 'P' {
			out = append(out, mapped...)
		} else {
			out = append(out, v...)
		}
		out = append(out, 0)
		rest = r
	}
	return append(out, 0)
}

// originalPosition maps pos, a 1-based character position in sql with
// each literal lits[i] replaced by "$i+1", to the same place in sql.
func originalPosition(pos int, sql []byte, lits []sqlclass.Literal) int {
	c := pos - 1 // characters of the normalized text before the position
	orig, prev := 0, 0
	for i, l := range lits {
		seg := utf8.RuneCount(sql[prev:l.Start])
		if c < seg {
			return orig + c + 1
		}
		c -= seg
		orig += seg
		ph := 1 + len(strconv.Itoa(i+1))
		if c < ph {
			return orig + 1
		}
		c -= ph
		orig += l.End - l.Start // literals are ASCII
		prev = l.End
	}
	return orig + c + 1
}
