package pool

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/shardproxy/shardproxy/proxy/netio"
)

// ServerConn is one authenticated connection to a PostgreSQL server.
//
// Between Acquire and Release/Discard it belongs to exactly one holder, which
// may read and write Conn through Frontend and update Params, Prepared and
// Applied. While it sits in the pool, only the pool touches it. Cancel and
// MarkBroken may be called from any goroutine.
type ServerConn struct {
	// Conn is the raw connection after authentication.
	Conn net.Conn
	// Frontend reads and writes protocol messages on Conn. It buffers reads:
	// never read Conn directly while the conn is held.
	Frontend *pgproto3.Frontend
	// Params holds the server's ParameterStatus values; the holder updates
	// it when the server reports a change.
	Params map[string]string
	// PID and SecretKey identify the server backend for CancelRequest.
	PID, SecretKey uint32
	// Addr is the server's host:port.
	Addr string
	// Created is when the connection was established; LastUsed is when it
	// was last released (or created).
	Created, LastUsed time.Time
	// Prepared tracks the server-side prepared statement names on this
	// connection (LRU, bounded by Options.MaxPrepared).
	Prepared *StmtCache
	// Applied is the session state (parameter name -> SET value SQL text)
	// currently in effect on the server; nil or empty means server defaults.
	Applied map[string]string
	// AppliedKey names the settings Applied was last made equal to (the
	// holder's fingerprint of them); "" when unknown. Whoever changes
	// Applied otherwise clears it.
	AppliedKey string

	pool      *Pool
	broken    atomic.Bool
	inPool    bool         // guarded by pool.mu: sitting in pool.idle
	canceling atomic.Int32 // Cancel calls in flight (Release discards the connection then)
	secretRaw []byte

	// liveness check state, preallocated so the check does not allocate.
	raw      syscall.RawConn
	peekFn   func(fd uintptr) bool
	peekBuf  [1]byte
	peekN    int
	peekErr  error
	queryMsg pgproto3.Query
}

// MarkBroken makes Release close the connection instead of reusing it. Use
// it when the protocol state on the connection is no longer known.
func (sc *ServerConn) MarkBroken() { sc.broken.Store(true) }

// Broken reports whether MarkBroken was called.
func (sc *ServerConn) Broken() bool { return sc.broken.Load() }

// Pool returns the pool the connection belongs to.
func (sc *ServerConn) Pool() *Pool { return sc.pool }

// Cancel asks the server to cancel whatever the connection is running: it
// opens a new connection to Addr (see DialAddress), sends CancelRequest{PID, SecretKey} and
// waits until the server closes that connection (or ctx ends). As in
// PostgreSQL, success means the request was delivered, not that a query was
// cancelled. Safe to call from any goroutine. A connection released while a
// Cancel is in flight is closed, not reused: the signal could otherwise
// reach the backend after its next holder's query started there.
func (sc *ServerConn) Cancel(ctx context.Context) error {
	return sc.CancelWhile(ctx, nil)
}

// CancelWhile is Cancel for a caller that found the connection through a
// client that may be done with it: holds (when not nil) is asked after
// the cancel is registered and before anything is sent, and false means
// the connection may already serve someone else, so nothing is sent. A
// release that the check did not see happens after the registration and
// so closes the connection instead of reusing it: the cancel can never
// reach another client's query.
func (sc *ServerConn) CancelWhile(ctx context.Context, holds func() bool) error {
	sc.canceling.Add(1)
	defer sc.canceling.Add(-1)
	if holds != nil && !holds() {
		return nil
	}
	var d net.Dialer
	network, address := DialAddress(sc.Addr)
	c, err := d.DialContext(ctx, network, address)
	if err != nil {
		return fmt.Errorf("cancel request to %s: %w", sc.Addr, err)
	}
	defer c.Close()
	if dl, ok := ctx.Deadline(); ok {
		_ = c.SetDeadline(dl)
	} else {
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	}
	stop := context.AfterFunc(ctx, func() { _ = c.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	msg := &pgproto3.CancelRequest{ProcessID: sc.PID, SecretKey: sc.secretRaw}
	buf, err := msg.Encode(nil)
	if err != nil {
		return err
	}
	if _, err := c.Write(buf); err != nil {
		return fmt.Errorf("cancel request to %s: %w", sc.Addr, err)
	}
	// The server closes the connection once it has processed the request.
	var one [1]byte
	if _, err := c.Read(one[:]); err != nil && !errors.Is(err, io.EOF) {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return fmt.Errorf("cancel request to %s: %w", sc.Addr, err)
	}
	return nil
}

// DialAddress gives the network and address to dial for a server at addr
// (host:port): a host that is an absolute path is the directory of the
// server's Unix-domain socket, as in libpq ("unix", DIR/.s.PGSQL.PORT);
// anything else is TCP.
func DialAddress(addr string) (network, address string) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "tcp", addr
	}
	n, err := strconv.ParseUint(port, 10, 16)
	if err != nil {
		return "tcp", addr
	}
	return pgconn.NetworkAddress(host, uint16(n))
}

// close closes the network connection, telling the server politely.
func (sc *ServerConn) close() {
	if sc.pool != nil {
		sc.pool.live.Delete(sc)
	}
	_ = sc.Conn.SetWriteDeadline(time.Now().Add(100 * time.Millisecond))
	_, _ = sc.Conn.Write([]byte{'X', 0, 0, 0, 4})
	_ = sc.Conn.Close()
}

// alive reports whether an idle connection still looks usable: no bytes are
// waiting to be read and the peer has not closed it. On an idle connection
// any readable data (e.g. a 57P01 "terminating connection due to
// administrator command" ErrorResponse) means the server is going away.
// It does not block and does not allocate.
func (sc *ServerConn) alive() bool {
	if sc.raw == nil {
		return true
	}
	if err := sc.raw.Read(sc.peekFn); err != nil {
		return false
	}
	return peekAlive(sc.peekN, sc.peekErr)
}

// simpleQuery runs sql with the simple query protocol and reads up to
// ReadyForQuery, updating Params. It fails on an ErrorResponse, on a
// transaction status other than idle, and when timeout passes.
func (sc *ServerConn) simpleQuery(sql string, timeout time.Duration) error {
	_, err := sc.queryColumn(sql, timeout)
	return err
}

// queryColumn is simpleQuery returning the first column of the rows (text);
// a server's ErrorResponse is an *Error.
func (sc *ServerConn) queryColumn(sql string, timeout time.Duration) ([]string, error) {
	if err := sc.Conn.SetDeadline(time.Now().Add(timeout)); err != nil {
		return nil, err
	}
	sc.queryMsg.String = sql
	sc.Frontend.SendQuery(&sc.queryMsg)
	if err := sc.Frontend.Flush(); err != nil {
		return nil, err
	}
	var rows []string
	var qerr error
	for {
		msg, err := sc.Frontend.Receive()
		if err != nil {
			return nil, err
		}
		switch m := msg.(type) {
		case *pgproto3.ReadyForQuery:
			if err := sc.Conn.SetDeadline(time.Time{}); err != nil {
				return nil, err
			}
			if qerr == nil && m.TxStatus != 'I' {
				qerr = fmt.Errorf("server connection not idle after %q (status %c)", sql, m.TxStatus)
			}
			return rows, qerr
		case *pgproto3.DataRow:
			if len(m.Values) > 0 {
				rows = append(rows, string(m.Values[0]))
			}
		case *pgproto3.ErrorResponse:
			qerr = &Error{Severity: m.Severity, Code: m.Code, Message: m.Message, Detail: m.Detail, Hint: m.Hint}
		case *pgproto3.ParameterStatus:
			sc.Params[m.Name] = m.Value
		}
	}
}

// dial opens and authenticates one connection, retrying network failures
// ConnectRetries times with a short backoff. Errors are *Error.
func (p *Pool) dial(ctx context.Context, opts *Options) (*ServerConn, error) {
	var lastErr error
	for attempt := 0; ; attempt++ {
		p.dials.Add(1)
		sc, err := p.dialOnce(ctx, opts)
		if err == nil {
			p.live.Store(sc, struct{}{})
			return sc, nil
		}
		p.dialErrors.Add(1)
		lastErr = err
		if attempt >= opts.ConnectRetries || !retryable(err) || ctx.Err() != nil {
			break
		}
		backoff := time.Duration(50<<min(attempt, 4)) * time.Millisecond // 50ms..800ms
		t := time.NewTimer(backoff)
		select {
		case <-ctx.Done():
			t.Stop()
		case <-t.C:
		}
		if ctx.Err() != nil {
			break
		}
	}
	if ctx.Err() != nil {
		return nil, &Error{Code: CodeQueryCanceled,
			Message: "canceled while connecting to server " + opts.Addr, cause: ctx.Err()}
	}
	return nil, p.dialError(opts, lastErr)
}

func (p *Pool) dialOnce(ctx context.Context, opts *Options) (*ServerConn, error) {
	host, portStr, err := net.SplitHostPort(opts.Addr)
	if err != nil {
		return nil, fmt.Errorf("bad server address %q: %w", opts.Addr, err)
	}
	port, err := strconv.ParseUint(portStr, 10, 16)
	if err != nil {
		return nil, fmt.Errorf("bad server port in %q", opts.Addr)
	}
	cfg, err := pgconn.ParseConfig("sslmode=disable")
	if err != nil {
		return nil, err
	}
	cfg.Host = host
	cfg.Port = uint16(port)
	cfg.User = opts.User
	cfg.Database = opts.Database
	cfg.Password = opts.Password
	cfg.TLSConfig = nil
	cfg.Fallbacks = nil
	cfg.ValidateConnect = nil
	cfg.AfterConnect = nil
	cfg.ConnectTimeout = opts.ConnectTimeout
	cfg.MinProtocolVersion = "3.0"
	cfg.MaxProtocolVersion = "3.0"
	cfg.RuntimeParams = make(map[string]string, len(opts.RuntimeParams))
	for k, v := range opts.RuntimeParams {
		cfg.RuntimeParams[k] = v
	}

	pc, err := pgconn.ConnectConfig(ctx, cfg)
	if err != nil {
		return nil, err
	}
	if err := pc.SyncConn(ctx); err != nil {
		pc.Close(context.Background())
		return nil, err
	}
	hj, err := pc.Hijack()
	if err != nil {
		pc.Close(context.Background())
		return nil, err
	}
	now := time.Now()
	conn := netio.Wrap(hj.Conn) // raw-syscall reads and writes (see package netio)
	sc := &ServerConn{
		Conn:      conn,
		Frontend:  pgproto3.NewFrontend(conn, conn),
		Params:    hj.ParameterStatuses,
		PID:       hj.PID,
		Addr:      opts.Addr,
		Created:   now,
		LastUsed:  now,
		Prepared:  NewStmtCache(opts.maxPrepared()),
		pool:      p,
		secretRaw: hj.SecretKey,
	}
	if sc.Params == nil {
		sc.Params = map[string]string{}
	}
	if len(hj.SecretKey) == 4 {
		sc.SecretKey = binary.BigEndian.Uint32(hj.SecretKey)
	}
	if s, ok := hj.Conn.(syscall.Conn); ok && peekSupported {
		if raw, err := s.SyscallConn(); err == nil {
			sc.raw = raw
			sc.peekFn = func(fd uintptr) bool {
				sc.peekN, sc.peekErr = peek(fd, sc.peekBuf[:])
				return true
			}
		}
	}
	return sc, nil
}

// retryable reports whether a failed connect is worth another attempt:
// network-level failures and a server that is starting up or shutting down,
// never authentication or configuration errors.
func retryable(err error) bool {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		return pgErr.Code == codeCannotConnectNow
	}
	var netErr net.Error
	if errors.As(err, &netErr) {
		return true
	}
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ECONNRESET) ||
		errors.Is(err, context.DeadlineExceeded)
}

// dialError turns a connect failure into an *Error: server errors keep their
// SQLSTATE; everything else is 08001 naming the server.
func (p *Pool) dialError(opts *Options, err error) *Error {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		sev := pgErr.Severity
		if c := pgErr.Code; strings.HasPrefix(c, "57P") || strings.HasPrefix(c, "08") || strings.HasPrefix(c, "53") {
			// A server shutting down, starting up or full refused this
			// connection attempt; the client's session goes on.
			sev = "ERROR"
		}
		return &Error{Severity: sev, Code: pgErr.Code, Message: pgErr.Message,
			Detail: pgErr.Detail, Hint: pgErr.Hint, cause: err}
	}
	return &Error{
		Code:    CodeUnableToConnect,
		Message: fmt.Sprintf("cannot connect to server %s: %v", opts.Addr, unwrapConnectError(err)),
		Detail:  fmt.Sprintf("user=%s database=%s", opts.User, opts.Database),
		cause:   err,
	}
}

// unwrapConnectError drops pgconn's long "failed to connect to ..." prefix
// when there is a more specific cause.
func unwrapConnectError(err error) error {
	var ce *pgconn.ConnectError
	if errors.As(err, &ce) && ce.Unwrap() != nil {
		return ce.Unwrap()
	}
	return err
}
