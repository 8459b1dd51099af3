package proxy

import (
	"context"
	"errors"
	"io"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/shardproxy/shardproxy/planner"
	"github.com/shardproxy/shardproxy/planner/plan"
	"github.com/shardproxy/shardproxy/proxy/pool"
	"github.com/shardproxy/shardproxy/topology"
)

// Scatter reads run on every shard at once. startScatter sends the part to
// each shard's connection and gives each a feed: a goroutine that reads the
// shard's answer and hands its messages over in batches (copied, so the
// connection's buffer can move on), at most feedDepth batches ahead of the
// consumer, so memory stays bounded while every shard keeps working.
//
// The session goroutine stays the only one touching the session: feeds
// only read their connection and fill batches. The first shard error
// closes scatterRun.failed; the consumer then calls stop, which sends a
// CancelRequest to every shard still running, waits for all of them to
// reach ReadyForQuery (rows dropped) and applies their transaction status.
// A scatterRun is finished only by stop (also on success), after which the
// session may use the connections again.
//
// Outside a transaction block, on a connection with nothing else of the
// client's in its implicit transaction, a part with Bind values runs as a
// named prepared statement cached per server connection (the names and
// LRU of client statements, prepared.go and pool.StmtCache): each server
// connection parses and plans the part once, later runs only Bind it.
// When such a cached statement's result type went stale (DDL changed the
// table: PostgreSQL fails the Bind with 0A000 "cached plan must not change
// result type"), the feed closes it and runs the part once more unnamed,
// transparently: nothing else was in that shard's transaction.

// feedBatchSize is the size at which a feed hands a batch over.
const feedBatchSize = 32 << 10

// feedDepth is how many batches a feed may have waiting per shard.
const feedDepth = 4

// cancelRetry is how long stop waits for a cancelled shard to answer
// before sending its CancelRequest again.
const cancelRetry = 200 * time.Millisecond

// feedBatch is a run of backend messages from one shard (type byte, length,
// body each); end marks the shard's ReadyForQuery.
type feedBatch struct {
	feed *shardFeed
	buf  []byte
	end  bool
}

// scatterRun is one scatter part running on several shards.
type scatterRun struct {
	ss    *session
	feeds []*shardFeed

	failOnce sync.Once
	failed   chan struct{} // closed at the first shard error
	firstErr error         // set before failed is closed
	dropRows atomic.Bool   // feeds drop rows (the run is being stopped)
	stopped  bool
}

// shardFeed is one shard's side of a scatterRun. The fields after ch are
// the consumer's (session goroutine) except status, tag and err, which the
// feed goroutine sets before sending its end batch.
type shardFeed struct {
	run      *scatterRun
	shard    string
	sc       *pool.ServerConn
	r        *msgReader
	held     *heldConn // nil for the session's active connection
	ch       chan feedBatch
	done     atomic.Bool   // ReadyForQuery (or a broken connection) seen
	finished chan struct{} // closed with done

	status byte
	tag    string
	err    error // the shard's first ErrorResponse (*sqlError) or *errServerGone

	// The part as sent: stmt is the cached statement it runs ("" =
	// unnamed); parseSent that this run prepared it. The feed goroutine
	// sets parseDone, bound and stale (the cached statement was closed and
	// the part rerun unnamed); stop updates the connection's cache.
	sql       string
	args      *partArgs
	stmt      string
	parseSent bool
	parseDone bool
	bound     bool
	stale     bool

	ended bool   // end batch consumed
	cur   []byte // batch being consumed
	pos   int
	desc  []byte // RowDescription body (copied)
	noRow bool   // NoData seen
	vals  [][]byte
}

// startScatter sends sc's statement (SQLFor each shard, with args) to every
// shard of sc and starts a feed per shard. shared puts every feed on one
// channel (concatenation); otherwise each feed has its own (merge).
func (ss *session) startScatter(snap *topology.Snapshot, sc *plan.Scatter, args *partArgs, shared bool) (*scatterRun, error) {
	shards := sc.Shards
	parts := make([]shardFeed, len(shards))
	var entry *stmtEntry
	for i, s := range shards {
		sql := sc.SQLFor(s)
		if err := ss.useShardAs(snap, s, ss.replicaRead(snap, s, sql)); err != nil {
			return nil, err
		}
		p := &parts[i]
		p.sql, p.args = sql, args
		if args != nil && ss.txStatus == 'I' && ss.txBegin == "" && !ss.scBatch {
			if entry == nil || !entry.isQuery(sql) { // shards usually share the text
				entry = ss.srv.intern.protocol([]byte(sql), oidBlock(args.oids))
			}
			p.stmt = entry.name
			if !ss.sc.Prepared.Has(entry.name) {
				for _, ev := range ss.sc.Prepared.Add(entry.name) {
					ss.sout = appendCloseStmt(ss.sout, ev)
				}
				ss.sout = appendMsg(ss.sout, msgParse, entry.parseBody)
				p.parseSent = true
			}
			ss.sout = appendBoundPart(ss.sout, entry.name, args)
		} else {
			ss.sout = appendPart(ss.sout, sql, args)
		}
		if err := ss.flushServer(); err != nil {
			return nil, err
		}
	}
	run := &scatterRun{ss: ss, failed: make(chan struct{})}
	var common chan feedBatch
	if shared {
		common = make(chan feedBatch, feedDepth*len(shards))
	}
	for i, s := range shards {
		p := &parts[i]
		f := &shardFeed{run: run, shard: s, ch: common, finished: make(chan struct{}),
			sql: p.sql, args: p.args, stmt: p.stmt, parseSent: p.parseSent}
		if f.ch == nil {
			f.ch = make(chan feedBatch, feedDepth)
		}
		if ss.sc != nil && ss.shard == s {
			f.sc, f.r = ss.sc, &ss.sr
		} else {
			for i := range ss.held {
				if h := &ss.held[i]; h.shard == s {
					f.sc, f.r, f.held = h.sc, &msgReader{br: h.br, maxLen: 1 << 30}, h
				}
			}
		}
		if f.sc == nil {
			// Cannot happen: useShard kept every connection (execing).
			run.feeds = append(run.feeds, f)
			f.done.Store(true)
			close(f.finished)
			f.err = &errServerGone{errors.New("no connection to shard " + s + " for a scatter read")}
			run.fail(f.err)
			go func() { f.ch <- feedBatch{feed: f, end: true} }()
			continue
		}
		run.feeds = append(run.feeds, f)
	}
	// Published before any shard gets its part: a client's cancel that
	// sees a shard running the statement finds the run (a goroutine
	// switch between the pumps' start and the publication lost it).
	ss.scatter.Store(run)
	for _, f := range run.feeds {
		if f.sc != nil {
			go f.pump()
		}
	}
	return run, nil
}

// cancelScatter sends a CancelRequest to every shard of the session's
// running scatter read that has not answered yet, except the active
// connection (the caller cancels that one). A client's CancelRequest
// calls it from another goroutine: it reads only what startScatter set
// before publishing the run.
func (ss *session) cancelScatter(ctx context.Context) {
	run := ss.scatter.Load()
	if run == nil {
		return
	}
	active := ss.current.Load()
	var wg sync.WaitGroup
	for _, f := range run.feeds {
		if f.sc == nil || f.sc == active || f.done.Load() {
			continue
		}
		wg.Add(1)
		go func(f *shardFeed) {
			defer wg.Done()
			_ = f.sc.CancelWhile(ctx, func() bool { return !f.done.Load() })
		}(f)
	}
	wg.Wait()
}

// fail records the run's first error and wakes the consumer.
func (run *scatterRun) fail(err error) {
	run.failOnce.Do(func() {
		run.firstErr = err
		close(run.failed)
	})
}

// batchBuffers holds batch buffers between runs (and sessions): a
// scatter of a few rows would otherwise allocate and clear a feedBatchSize
// buffer per shard per statement.
var batchBuffers = sync.Pool{New: func() any {
	b := make([]byte, 0, feedBatchSize+feedBatchSize/4)
	return &b
}}

// buffer returns an empty batch buffer.
func (run *scatterRun) buffer() []byte {
	return (*batchBuffers.Get().(*[]byte))[:0]
}

// recycle gives a batch buffer back once nothing reads it any more (rows
// alias a batch only until the feed's next message); one a huge row grew
// is left to the collector.
func (run *scatterRun) recycle(b []byte) {
	if cap(b) > 4*feedBatchSize {
		return
	}
	batchBuffers.Put(&b)
}

// pump is the feed goroutine: it reads the shard's answer up to
// ReadyForQuery and sends it in batches.
func (f *shardFeed) pump() {
	run := f.run
	buf := run.buffer()
	send := func() {
		if len(buf) > 0 {
			f.ch <- feedBatch{feed: f, buf: buf}
			buf = run.buffer()
		}
	}
	rerun := false // the stale cached statement failed: rerun at ReadyForQuery
	for {
		typ, body, err := f.r.next()
		if err != nil {
			f.err = &errServerGone{err}
			run.fail(f.err)
			break
		}
		switch typ {
		case msgParseComplete:
			f.parseDone = true
		case msgBindComplete:
			f.bound = true
		case msgDataRow, msgCopyData:
			if !run.dropRows.Load() {
				buf = appendMsg(buf, typ, body)
			}
		case msgRowDescription, msgNoData, msgCopyOutResponse:
			buf = appendMsg(buf, typ, body)
			send() // the consumer may be waiting for the row shape
		case msgNoticeResponse, msgNotification, msgParamStatus:
			buf = appendMsg(buf, typ, body)
		case msgCommandComplete:
			t, _, _ := cstring(body)
			f.tag = string(t)
		case msgErrorResponse:
			fe := decodeError(body)
			if f.stmt != "" && !f.parseSent && !f.bound && !f.stale && fe.Code == codeFeatureNotSupported && !isFatal(body) && !run.dropRows.Load() {
				rerun = true // the cached plan's result type went stale
				continue
			}
			if isFatal(body) {
				f.err = &errServerGone{&sqlError{fe}}
			} else if f.err == nil {
				fe.Detail = strings.TrimSpace(fe.Detail + "\n(on shard " + f.shard + ")")
				f.err = &sqlError{fe}
			}
			run.fail(f.err)
		case msgReadyForQuery:
			if len(body) == 1 {
				f.status = body[0]
			}
			if rerun {
				rerun, f.stale = false, true
				msgs := appendPart(appendCloseStmt(nil, f.stmt), f.sql, f.args)
				if _, err := f.sc.Conn.Write(msgs); err != nil {
					f.err = &errServerGone{err}
					run.fail(f.err)
					break
				}
				continue
			}
		}
		if typ == msgReadyForQuery || isServerGone(f.err) {
			break
		}
		if len(buf) >= feedBatchSize || (len(buf) > 0 && f.r.br.Buffered() == 0) {
			send()
		}
	}
	send()
	run.recycle(buf) // the empty buffer send left
	f.done.Store(true)
	close(f.finished)
	f.ch <- feedBatch{feed: f, end: true}
}

// take handles a message the consumer does not pass on as a row: notices
// go to the client, ParameterStatus to the connection's parameters, the
// row shape is remembered. It reports whether the message was handled.
func (f *shardFeed) take(typ byte, body []byte) bool {
	ss := f.run.ss
	switch typ {
	case msgNoticeResponse, msgNotification:
		ss.out = appendMsg(ss.out, typ, body)
	case msgParamStatus:
		name, rest, ok := cstring(body)
		if val, _, ok2 := cstring(rest); ok && ok2 && f.sc.Params != nil {
			f.sc.Params[string(name)] = string(val)
		}
	case msgRowDescription:
		f.desc = append([]byte(nil), body...)
	case msgNoData:
		f.noRow = true
	default:
		return false
	}
	return true
}

// nextMsg returns the feed's next message (aliasing its batch until the
// next call), or io.EOF after its end, or the run's first error.
func (f *shardFeed) nextMsg() (byte, []byte, error) {
	for {
		if f.pos+5 <= len(f.cur) {
			typ := f.cur[f.pos]
			n := int(uint32(f.cur[f.pos+1])<<24 | uint32(f.cur[f.pos+2])<<16 | uint32(f.cur[f.pos+3])<<8 | uint32(f.cur[f.pos+4]))
			body := f.cur[f.pos+5 : f.pos+1+n]
			f.pos += 1 + n
			return typ, body, nil
		}
		if f.cur != nil {
			f.run.recycle(f.cur)
			f.cur, f.pos = nil, 0
		}
		if f.ended {
			if f.err != nil {
				return 0, nil, f.err
			}
			return 0, nil, io.EOF
		}
		select {
		case b := <-f.ch:
			if b.end {
				f.ended = true
				continue
			}
			f.cur, f.pos = b.buf, 0
		case <-f.run.failed:
			return 0, nil, f.run.firstErr
		}
	}
}

// readDesc consumes messages up to the shard's RowDescription or NoData.
func (f *shardFeed) readDesc() error {
	for f.desc == nil && !f.noRow {
		typ, body, err := f.nextMsg()
		if err != nil {
			return err
		}
		f.take(typ, body)
	}
	return nil
}

// Next implements merge.Stream over a feed with its own channel.
func (f *shardFeed) Next() ([][]byte, error) {
	for {
		typ, body, err := f.nextMsg()
		if err != nil {
			return nil, err
		}
		if f.take(typ, body) || typ != msgDataRow {
			continue
		}
		vals, ok := splitDataRow(body, f.vals[:0])
		if !ok {
			err := &errServerGone{errors.New("malformed DataRow from shard " + f.shard)}
			f.run.fail(err)
			return nil, err
		}
		f.vals = vals
		return vals, nil
	}
}

// stop ends the run: on failure (or when cancel is set) the shards still
// running get a CancelRequest; every feed is read to its end, rows
// dropped; the connections' transaction status is applied. It returns a
// lost connection's error, else the run's first error (nil on success).
func (run *scatterRun) stop(cancel bool) error {
	if run.stopped {
		return run.firstErr
	}
	run.stopped = true
	ss := run.ss
	ss.scatter.CompareAndSwap(run, nil)
	failed := false
	select {
	case <-run.failed:
		failed = true
	default:
	}
	var cancels sync.WaitGroup
	if failed || cancel {
		run.dropRows.Store(true)
		for _, f := range run.feeds {
			if f.done.Load() || f.sc == nil {
				continue
			}
			cancels.Add(1)
			go func(f *shardFeed) {
				defer cancels.Done()
				// A cancel that reaches the backend before it starts the
				// statement is ignored, so repeat it until the shard answers.
				for attempt := 0; attempt < 40; attempt++ {
					ctx, done := context.WithTimeout(context.Background(), 5*time.Second)
					_ = f.sc.Cancel(ctx)
					done()
					select {
					case <-f.finished:
						return
					case <-time.After(cancelRetry):
					}
				}
			}(f)
		}
	}
	// Read every feed to its end batch. Feeds of a shared channel end in
	// any order.
	remaining := 0
	for _, f := range run.feeds {
		if !f.ended {
			remaining++
		}
	}
	for _, f := range run.feeds {
		for f.pos+5 <= len(f.cur) {
			typ, body, _ := f.nextMsg()
			f.take(typ, body)
		}
		if f.cur != nil {
			run.recycle(f.cur)
			f.cur, f.pos = nil, 0
		}
	}
	for remaining > 0 {
		var b feedBatch
		if ch := run.sharedChannel(); ch != nil {
			b = <-ch
		} else {
			for _, f := range run.feeds {
				if !f.ended {
					b = <-f.ch
					break
				}
			}
		}
		if b.end {
			b.feed.ended = true
			remaining--
			continue
		}
		run.takeAll(b)
	}
	cancels.Wait()
	var gone error
	for _, f := range run.feeds {
		if isServerGone(f.err) {
			if gone == nil {
				gone = f.err
			}
			continue
		}
		if f.stmt != "" && (f.stale || (f.parseSent && !f.parseDone)) {
			f.sc.Prepared.Remove(f.stmt) // closed, or its Parse failed
		}
		if f.held != nil {
			f.held.inTx = f.status != 'I'
		} else if f.sc != nil {
			ss.noteServerStatus(f.status)
		}
	}
	if gone != nil {
		return gone
	}
	return run.firstErr
}

// sharedChannel returns the feeds' common channel, or nil when each has its
// own.
func (run *scatterRun) sharedChannel() chan feedBatch {
	if len(run.feeds) > 1 && run.feeds[0].ch == run.feeds[1].ch {
		return run.feeds[0].ch
	}
	if len(run.feeds) == 1 {
		return run.feeds[0].ch
	}
	return nil
}

// takeAll passes on what a batch holds besides rows (notices) and
// recycles it.
func (run *scatterRun) takeAll(b feedBatch) {
	for p := 0; p+5 <= len(b.buf); {
		n := int(uint32(b.buf[p+1])<<24 | uint32(b.buf[p+2])<<16 | uint32(b.buf[p+3])<<8 | uint32(b.buf[p+4]))
		b.feed.take(b.buf[p], b.buf[p+5:p+1+n])
		p += 1 + n
	}
	run.recycle(b.buf)
}

// execScatterRead runs a read Scatter without merge operators: the part
// runs on every shard at once and the rows go to the client in the order
// they arrive (no order is promised without ORDER BY). The command tags
// are summed.
func (ss *session) execScatterRead(snap *topology.Snapshot, sc *plan.Scatter, params planner.Params, rf []int16, out *execOut) (string, error) {
	src, err := ss.openScatterRead(snap, sc, params, rf, out)
	if err != nil {
		return "", err
	}
	return ss.pumpRows(src, 0)
}

// openScatterRead starts a read Scatter on every shard and returns its
// row source (rows concatenated as they arrive).
func (ss *session) openScatterRead(snap *topology.Snapshot, sc *plan.Scatter, params planner.Params, rf []int16, out *execOut) (*rowSource, error) {
	run, err := ss.startScatter(snap, sc, argsFor(params, nil, rf, out.simple), true)
	if err != nil {
		return nil, err
	}
	ch := run.sharedChannel()
	src := &rowSource{run: run}
	if out.describe {
		src.describeFailed = func() {
			for _, f := range run.feeds {
				if !out.descSent && f.desc != nil {
					ss.out = appendMsg(ss.out, msgRowDescription, f.desc)
					out.descSent = true
				}
			}
		}
	}
	var cur []byte
	var curFeed *shardFeed
	pos := 0
	remaining := len(run.feeds)
	src.next = func() error {
		for {
			for pos+5 <= len(cur) {
				typ := cur[pos]
				n := int(uint32(cur[pos+1])<<24 | uint32(cur[pos+2])<<16 | uint32(cur[pos+3])<<8 | uint32(cur[pos+4]))
				msg := cur[pos : pos+1+n]
				pos += 1 + n
				switch typ {
				case msgDataRow:
					ss.out = append(ss.out, msg...)
					return nil
				case msgRowDescription:
					if (out.simple || out.describe) && !out.descSent {
						ss.out = append(ss.out, msg...)
						out.descSent = true
					}
				case msgNoData:
					if out.describe && !out.descSent { // a deferred Describe of a part without rows
						ss.out = append(ss.out, msg...)
						out.descSent = true
					}
				default:
					curFeed.take(typ, msg[5:])
				}
			}
			if cur != nil {
				run.recycle(cur)
				cur, pos = nil, 0
			}
			if remaining == 0 {
				return io.EOF
			}
			select {
			case b := <-ch:
				if b.end {
					b.feed.ended = true
					remaining--
					continue
				}
				cur, curFeed, pos = b.buf, b.feed, 0
			case <-run.failed:
				return run.firstErr
			}
		}
	}
	src.tag = func() string {
		tags := make([]string, len(run.feeds))
		for i, f := range run.feeds {
			tags[i] = f.tag
		}
		return sumTags(tags)
	}
	return src, nil
}

// rowSource is a running cross-shard read: next appends the next DataRow
// to ss.out (io.EOF after the last); tag is the command tag once done.
// The run must be stopped (pumpRows does) before the session uses the
// shards' connections again.
type rowSource struct {
	run  *scatterRun
	next func() error
	tag  func() string
	rows int
	// describeFailed, when set, sends a deferred Describe's RowDescription
	// that did not go out before the read failed (called after stop).
	describeFailed func()
}

// pumpRows sends up to limit rows (0: all) of src to the client. It
// returns the command tag when src is done ("" when suspended at the
// limit), and on an error stops the run (cancelling the shards still
// running).
func (ss *session) pumpRows(src *rowSource, limit int) (string, error) {
	for limit <= 0 || src.rows < limit {
		err := src.next()
		if err == io.EOF {
			if err := src.run.stop(false); err != nil {
				return "", err
			}
			return src.tag(), nil
		}
		if err != nil {
			if serr := src.run.stop(true); serr != nil && isServerGone(serr) {
				return "", serr
			}
			if src.describeFailed != nil {
				src.describeFailed()
			}
			return "", err
		}
		src.rows++
		if len(ss.out) > 64<<10 {
			if err := ss.flushClient(); err != nil {
				src.run.stop(true)
				return "", err
			}
		}
	}
	return "", nil
}

// isCopySQL reports whether a Scatter's SQL is a COPY (COPY … TO STDOUT
// runs shard after shard through runPart).
func isCopySQL(sql string) bool {
	s := strings.TrimLeft(sql, " \t\r\n(")
	return len(s) >= 4 && strings.EqualFold(s[:4], "copy")
}
