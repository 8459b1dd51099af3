package proxy

import (
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/shardproxy/shardproxy/proxy/config"
)

// The admin console: a client that connects to the database "shardproxy"
// as one of the config's admin_users talks to the proxy itself, like
// PgBouncer's "pgbouncer" database. It understands the simple query
// protocol only; each statement of a query string is one console command
// (see consoleHelp). Other users are refused at startup with 28000.
//
// Commands run on the console session's goroutine; they read other
// sessions only through fields that are immutable after register (user,
// database, startup values, connectedAt) or atomic (idle, current,
// holdSince).

// consoleDatabase is the database name that opens the admin console.
const consoleDatabase = "shardproxy"

const consoleHelp = `Console usage
	SHOW HELP|POOLS|CLIENTS|SERVERS|STATS|SHARDS|CONFIG|VERSION|STATE
	PAUSE
	RESUME
	RELOAD`

// consoleState is the Server's part of the console.
type consoleState struct {
	gate    pauseGate
	stats   routeStats
	reload  func() (config.Config, error)
	version string
}

func (c *consoleState) init(deps Deps) {
	c.reload = deps.ReloadConfig
	c.version = deps.Version
	if c.version == "" {
		c.version = "devel"
	}
	c.gate.release = make(chan struct{})
}

// pauseGate holds new requests while the console's PAUSE is in effect.
// States: running → pausing (PAUSE waits for transactions to end; new
// requests are already held) → paused → running (RESUME).
type pauseGate struct {
	state   atomic.Int32 // gateRunning, gatePausing, gatePaused
	mu      sync.Mutex
	release chan struct{} // closed (and replaced) by resume
}

const (
	gateRunning int32 = iota
	gatePausing
	gatePaused
)

// engaged reports whether new requests are held (pausing or paused). It is
// the only cost the gate adds to a request: one atomic load.
func (g *pauseGate) engaged() bool { return g.state.Load() != gateRunning }

// pause engages the gate; false when it already was.
func (g *pauseGate) pause() bool { return g.state.CompareAndSwap(gateRunning, gatePausing) }

// resume releases held requests; false when the gate was not engaged.
func (g *pauseGate) resume() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.state.Swap(gateRunning) == gateRunning {
		return false
	}
	close(g.release)
	g.release = make(chan struct{})
	return true
}

func (g *pauseGate) releaseChan() chan struct{} {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.release
}

// startsRequest reports whether a client message begins new work while the
// session has no transaction, batch or response in flight: the point where
// PAUSE holds a client.
func (ss *session) startsRequest(typ byte) bool {
	switch typ {
	case msgSync, msgTerminate, msgFlush, msgCopyData, msgCopyDone, msgCopyFail:
		return false
	}
	return ss.txStatus == 'I' && !ss.batch && ss.pendingCount() == 0
}

// holdWhilePaused blocks the session until RESUME (or shutdown, which ends
// the session with 57P01).
func (ss *session) holdWhilePaused() error {
	g := &ss.srv.console.gate
	ch := g.releaseChan()
	if !g.engaged() { // RESUME ran between the check and taking the channel
		return nil
	}
	ss.holdSince.Store(time.Now().UnixNano())
	defer ss.holdSince.Store(0)
	select {
	case <-ch:
		return nil
	case <-ss.srv.done:
		return ss.shutdownGoodbye()
	}
}

// quiet reports whether no client session has a request or transaction in
// progress: every one is idle between transactions or held by the gate.
func (s *Server) quiet() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, sess := range s.sessions {
		if sess.database == consoleDatabase {
			continue
		}
		if !sess.idle.Load() && sess.holdSince.Load() == 0 {
			return false
		}
	}
	return true
}

// routeStats are the totals behind SHOW STATS, by database, route kind and
// shard (a few dozen keys at most).
type routeStats struct{ m sync.Map } // routeStatsKey → *routeTotals

type routeStatsKey struct{ database, kind, shard string }

type routeTotals struct{ count, micros atomic.Uint64 }

func (r *routeStats) add(database, kind, shard string, d time.Duration) {
	r.totals(database, kind, shard).add(d)
}

// totals returns the totals of one key, created on first use; entries are
// never removed, so callers may keep the pointer.
func (r *routeStats) totals(database, kind, shard string) *routeTotals {
	k := routeStatsKey{database, kind, shard}
	v, ok := r.m.Load(k)
	if !ok {
		v, _ = r.m.LoadOrStore(k, &routeTotals{})
	}
	return v.(*routeTotals)
}

func (t *routeTotals) add(d time.Duration) {
	t.count.Add(1)
	t.micros.Add(uint64(d.Microseconds()))
}

// runConsole serves an admin console client after authentication. It
// returns when the client leaves; the caller closes the connection.
func (ss *session) runConsole(cfg *config.Config, user string, settings map[string]string) {
	if !slices.Contains(cfg.AdminUsers, user) {
		ss.fatal(errorFields{Code: codeInvalidAuthorization,
			Message: fmt.Sprintf("user %q is not allowed to use the admin console (database %q)", user, consoleDatabase),
			Hint:    "Add the user to admin_users in the shardproxy configuration, or connect to another database."})
		return
	}
	ss.conn.SetReadDeadline(time.Time{})
	ss.user, ss.database, ss.startupValues = user, consoleDatabase, settings
	ss.out = append(ss.out, 'R', 0, 0, 0, 8, 0, 0, 0, 0) // AuthenticationOk
	for _, p := range [][2]string{
		{"server_version", "15.0 (shardproxy " + ss.srv.console.version + ")"},
		{"server_encoding", "UTF8"}, {"client_encoding", "UTF8"}, {"DateStyle", "ISO, MDY"},
		{"integer_datetimes", "on"}, {"standard_conforming_strings", "on"}, {"TimeZone", "UTC"},
		{"application_name", settings["application_name"]}, {"is_superuser", "off"},
		{"session_authorization", user},
	} {
		ss.out = appendParameterStatus(ss.out, p[0], p[1])
	}
	ss.srv.register(ss)
	var sk [4]byte
	rand.Read(sk[:])
	ss.secret = binary.BigEndian.Uint32(sk[:])
	ss.out = appendEncoded(ss.out, &pgproto3.BackendKeyData{ProcessID: ss.pid, SecretKey: sk[:]})
	ss.out = appendRFQ(ss.out, 'I')
	skip := false
	for {
		if err := ss.flushClient(); err != nil {
			return
		}
		if ss.srv.closing.Load() {
			ss.fatal(errorFields{Code: codeAdminShutdown, Message: "terminating connection due to administrator command"})
			return
		}
		ss.idle.Store(true)
		typ, body, err := ss.cr.next()
		ss.idle.Store(false)
		if err != nil {
			if ss.srv.closing.Load() && isTimeout(err) {
				ss.fatal(errorFields{Code: codeAdminShutdown, Message: "terminating connection due to administrator command"})
			} else if !errors.Is(err, io.EOF) && !isNetErr(err) {
				ss.fatal(errorFields{Code: codeProtocolViolation, Message: err.Error()})
			}
			return
		}
		switch typ {
		case msgQuery:
			ss.consoleQuery(string(trimNUL(body)))
			ss.out = appendRFQ(ss.out, 'I')
		case msgTerminate:
			return
		case msgSync:
			skip = false
			ss.out = appendRFQ(ss.out, 'I')
		case msgFlush:
		case msgParse, msgBind, msgDescribe, msgExecute, msgClose, msgFuncCall:
			if !skip {
				ss.sendError(errorFields{Code: codeFeatureNotSupported,
					Message: "the admin console understands only the simple query protocol",
					Hint:    "Send console commands as plain queries (psql -c, or pgx with QueryExecModeSimpleProtocol)."})
				skip = true
			}
		case msgCopyData, msgCopyDone, msgCopyFail:
		default:
			ss.fatal(errorFields{Code: codeProtocolViolation, Message: fmt.Sprintf("invalid frontend message type %d", typ)})
			return
		}
	}
}

// consoleQuery runs each command of a query string; the first error ends it.
func (ss *session) consoleQuery(sql string) {
	ran := false
	for _, stmt := range strings.Split(sql, ";") {
		words := strings.Fields(strings.ToUpper(stmt))
		if len(words) == 0 {
			continue
		}
		ran = true
		if err := ss.consoleCommand(words); err != nil {
			ss.sendError(toErrorFields(err))
			return
		}
	}
	if !ran {
		ss.out = appendEmpty(ss.out, msgEmptyQuery)
	}
}

func (ss *session) consoleCommand(words []string) error {
	srv := ss.srv
	switch {
	case words[0] == "SHOW" && len(words) == 2:
		return ss.consoleShow(words[1])
	case words[0] == "PAUSE" && len(words) == 1:
		if err := srv.consolePause(); err != nil {
			return err
		}
		ss.out = appendCommandComplete(ss.out, "PAUSE")
		return nil
	case words[0] == "RESUME" && len(words) == 1:
		if !srv.console.gate.resume() {
			return &sqlError{errorFields{Code: "55000", Message: "shardproxy is not paused", Hint: "RESUME releases what PAUSE holds."}}
		}
		srv.log.Info("admin console: resumed", "user", ss.user)
		ss.out = appendCommandComplete(ss.out, "RESUME")
		return nil
	case words[0] == "RELOAD" && len(words) == 1:
		if err := srv.consoleReload(); err != nil {
			return err
		}
		srv.log.Info("admin console: configuration reloaded", "user", ss.user)
		ss.out = appendCommandComplete(ss.out, "RELOAD")
		return nil
	}
	return &sqlError{errorFields{Code: "42601",
		Message: fmt.Sprintf("unsupported admin console command %q", strings.Join(words, " ")),
		Hint:    "The console runs SHOW, PAUSE, RESUME and RELOAD; SHOW HELP lists them. For SQL, connect to an application database."}}
}

// consolePause engages the gate and waits until every client is between
// transactions. New requests are held from the start; RESUME (from another
// console) or shutdown ends the wait with an error.
func (s *Server) consolePause() error {
	g := &s.console.gate
	if !g.pause() {
		return &sqlError{errorFields{Code: "55000", Message: "shardproxy is already paused", Hint: "RESUME first."}}
	}
	s.log.Info("admin console: pausing; waiting for transactions to end")
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		if g.state.Load() != gatePausing {
			return &sqlError{errorFields{Code: codeQueryCanceled, Message: "PAUSE was ended by RESUME before every transaction finished"}}
		}
		if s.quiet() {
			if g.state.CompareAndSwap(gatePausing, gatePaused) {
				s.log.Info("admin console: paused")
				return nil
			}
			continue
		}
		select {
		case <-tick.C:
		case <-s.done:
			g.resume()
			return &sqlError{errorFields{Code: codeAdminShutdown, Message: "shardproxy is shutting down"}}
		}
	}
}

// consoleReload re-reads the configuration file and applies it like SIGHUP.
func (s *Server) consoleReload() error {
	if s.console.reload == nil {
		return &sqlError{errorFields{Code: "55000", Message: "RELOAD needs a configuration file; this proxy was started without one"}}
	}
	cfg, err := s.console.reload()
	if err != nil {
		return &sqlError{errorFields{Code: "F0000", Message: "reload failed; the running configuration is kept: " + err.Error()}}
	}
	if err := s.Reload(cfg); err != nil {
		return &sqlError{errorFields{Code: "F0000", Message: "reload rejected; the running configuration is kept: " + err.Error()}}
	}
	return nil
}
