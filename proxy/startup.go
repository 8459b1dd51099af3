package proxy

import (
	"bufio"
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"net"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/shardproxy/shardproxy/proxy/auth"
	"github.com/shardproxy/shardproxy/proxy/config"
	"github.com/shardproxy/shardproxy/proxy/pool"
)

const (
	startupTimeout    = 10 * time.Second
	maxStartupPacket  = 10000
	maxClientMessage  = 64 << 20 // larger client messages get 08P01
	codeSSLRequest    = 80877103
	codeGSSEncRequest = 80877104
	codeCancelRequest = 80877102
	protocolVersion30 = 3 << 16
	clientReadBufSize = 4096
	greetingSizeHint  = 512 // bytes of a typical greeting (PostgreSQL 15's reported parameters)
	serverReadBufSize = 16384
	// maxCheckedSignatures bounds the cache of startup-parameter sets the
	// server accepted.
	maxCheckedSignatures = 10000
)

// paramsToReport are the ParameterStatus names sent to a client at startup
// (PostgreSQL's GUC_REPORT set of version 15).
var paramsToReport = []string{
	"application_name", "client_encoding", "DateStyle", "default_transaction_read_only", "in_hot_standby",
	"integer_datetimes", "IntervalStyle", "is_superuser", "server_encoding", "server_version",
	"session_authorization", "standard_conforming_strings", "TimeZone",
}

// reportedParam is one entry of paramsToReport with what the greeting needs
// per client, computed once: the lower-case name client settings are
// stored under, and whether a client setting overrides the server's value
// (not for is_superuser and session_authorization).
type reportedParam struct {
	name, lower string
	clientMay   bool
}

var reportedParams = func() []reportedParam {
	out := make([]reportedParam, len(paramsToReport))
	for i, name := range paramsToReport {
		out[i] = reportedParam{name: name, lower: strings.ToLower(name),
			clientMay: name != "is_superuser" && name != "session_authorization"}
	}
	return out
}()

// Single-byte answers to SSLRequest and GSSENCRequest (not allocated per
// connection).
var (
	answerNo  = []byte{'N'}
	answerYes = []byte{'S'}
)

// oneByteReader hands the pgproto3.Backend used during authentication one
// byte per Read, so that its internal read-ahead never swallows bytes that
// belong to the message loop's reader.
type oneByteReader struct{ r *bufio.Reader }

func (o oneByteReader) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	b, err := o.r.ReadByte()
	if err != nil {
		return 0, err
	}
	p[0] = b
	return 1, nil
}

// startupPacket reads one length-prefixed startup-phase packet.
func (ss *session) startupPacket() (code uint32, body []byte, err error) {
	hdr, err := ss.cr.br.Peek(4)
	if err != nil {
		return 0, nil, err
	}
	n := int(int32(binary.BigEndian.Uint32(hdr)))
	if n < 8 || n > maxStartupPacket {
		return 0, nil, newSQLError(codeProtocolViolation, "invalid length of startup packet")
	}
	buf := make([]byte, n)
	if _, err := io.ReadFull(ss.cr.br, buf); err != nil {
		return 0, nil, err
	}
	return binary.BigEndian.Uint32(buf[4:]), buf[8:], nil
}

// fatal writes a FATAL ErrorResponse to the client and flushes it.
func (ss *session) fatal(f errorFields) {
	f.Severity = "FATAL"
	ss.srv.metrics.countError(f.Code)
	ss.out = appendError(ss.out, f)
	ss.flushClient()
}

// startup runs the startup phase: SSL/GSS negotiation, CancelRequest,
// protocol version check, authentication and the greeting. It returns
// false when the connection must be closed (the client has been told why).
func (ss *session) startup() bool {
	ss.conn.SetReadDeadline(time.Now().Add(startupTimeout))
	var params map[string]string
	for params == nil {
		code, body, err := ss.startupPacket()
		if err != nil {
			var se *sqlError
			if errors.As(err, &se) {
				ss.fatal(se.f)
			}
			return false
		}
		switch code {
		case codeSSLRequest:
			conf := ss.srv.tlsConf.Load()
			if conf == nil || isUnixSocket(ss.rawConn) { // as PostgreSQL: no TLS over a Unix socket
				ss.conn.Write(answerNo)
				continue
			}
			if ss.cr.br.Buffered() > 0 { // data after SSLRequest before the handshake: refuse (CVE-2021-23214)
				ss.fatal(errorFields{Code: codeProtocolViolation, Message: "received unencrypted data after SSL request"})
				return false
			}
			if _, err := ss.conn.Write(answerYes); err != nil {
				return false
			}
			tc := tls.Server(ss.conn, conf)
			if err := tc.Handshake(); err != nil {
				ss.srv.log.Debug("TLS handshake failed", "err", err)
				return false
			}
			ss.conn = tc
			ss.cr.br.Reset(tc)
			ss.tls = true
		case codeGSSEncRequest:
			ss.conn.Write(answerNo)
		case codeCancelRequest:
			if len(body) == 8 {
				ss.srv.cancel(binary.BigEndian.Uint32(body), binary.BigEndian.Uint32(body[4:]))
			}
			return false
		default:
			major, minor := code>>16, code&0xFFFF
			if major != 3 {
				ss.fatal(errorFields{Code: codeFeatureNotSupported,
					Message: fmt.Sprintf("unsupported frontend protocol %d.%d: server supports 3.0 to 3.0", major, minor)})
				return false
			}
			p, unknown, ok := parseStartupParams(body)
			if !ok {
				ss.fatal(errorFields{Code: codeProtocolViolation, Message: "invalid startup packet layout: expected terminator as last byte"})
				return false
			}
			if minor > 0 || len(unknown) > 0 {
				ss.out = appendEncoded(ss.out, &pgproto3.NegotiateProtocolVersion{NewestMinorProtocol: 0, UnrecognizedOptions: unknown})
			}
			params = p
		}
	}
	if !ss.handshake(params) {
		return false
	}
	ss.conn.SetReadDeadline(time.Time{})
	return true
}

// parseStartupParams decodes the name/value pairs of a StartupMessage.
// Protocol options ("_pq_.*") are returned separately as unrecognized.
func parseStartupParams(b []byte) (map[string]string, []string, bool) {
	params := make(map[string]string)
	var unknown []string
	for {
		if len(b) == 1 && b[0] == 0 {
			return params, unknown, true
		}
		k, rest, ok := cstring(b)
		if !ok || len(k) == 0 {
			return nil, nil, false
		}
		v, rest, ok := cstring(rest)
		if !ok {
			return nil, nil, false
		}
		if strings.HasPrefix(string(k), "_pq_.") {
			unknown = append(unknown, string(k))
		} else {
			params[string(k)] = string(v)
		}
		b = rest
	}
}

// parseOptions splits the "options" startup parameter ("-c a=b --c=d") into
// settings. Backslash escapes a space.
func parseOptions(opts string) (map[string]string, error) {
	var words []string
	var cur strings.Builder
	esc := false
	for _, r := range opts {
		switch {
		case esc:
			cur.WriteRune(r)
			esc = false
		case r == '\\':
			esc = true
		case r == ' ' || r == '\t' || r == '\n':
			if cur.Len() > 0 {
				words = append(words, cur.String())
				cur.Reset()
			}
		default:
			cur.WriteRune(r)
		}
	}
	if cur.Len() > 0 {
		words = append(words, cur.String())
	}
	out := make(map[string]string)
	for i := 0; i < len(words); i++ {
		w := words[i]
		var kv string
		switch {
		case w == "-c" && i+1 < len(words):
			i++
			kv = words[i]
		case strings.HasPrefix(w, "-c"):
			kv = w[2:]
		case strings.HasPrefix(w, "--"):
			kv = w[2:]
		default:
			return nil, fmt.Errorf("invalid command-line argument for server process: %s", w)
		}
		name, val, ok := strings.Cut(kv, "=")
		if !ok {
			return nil, fmt.Errorf("-c %s requires a value", kv)
		}
		out[strings.ReplaceAll(name, "-", "_")] = val
	}
	return out, nil
}

// handshake authenticates the client and sends the greeting.
func (ss *session) handshake(params map[string]string) bool {
	srv := ss.srv
	cfg := srv.config()
	user := params["user"]
	if user == "" {
		ss.fatal(errorFields{Code: codeInvalidAuthorization, Message: "no PostgreSQL user name specified in startup packet"})
		return false
	}
	if params["replication"] != "" && params["replication"] != "false" && params["replication"] != "0" {
		ss.fatal(errorFields{Code: codeFeatureNotSupported, Message: "replication connections are not supported by shardproxy"})
		return false
	}
	db := params["database"]
	if db == "" {
		db = user
	}
	if srv.closing.Load() {
		ss.fatal(errorFields{Code: "57P03", Message: "the database system is shutting down"})
		return false
	}
	if srv.nclients.Add(1) > int64(cfg.Pool.MaxClientConn) {
		srv.nclients.Add(-1)
		ss.fatal(errorFields{Code: codeTooManyConnections, Message: "sorry, too many clients already"})
		return false
	}
	ss.counted = true
	srv.metrics.clientsActive.Inc()

	settings := make(map[string]string)
	for k, v := range params {
		switch k {
		case "user", "database", "options", "replication":
		case "fallback_application_name":
			if _, ok := params["application_name"]; !ok {
				settings["application_name"] = v
			}
		default:
			settings[strings.ToLower(k)] = v
		}
	}
	if o := params["options"]; o != "" {
		opts, err := parseOptions(o)
		if err != nil {
			ss.fatal(errorFields{Code: codeProtocolViolation, Message: err.Error()})
			return false
		}
		for k, v := range opts {
			settings[strings.ToLower(k)] = v
		}
	}

	if err := ss.authenticate(cfg, user, db); err != nil {
		ss.fatal(toErrorFields(err))
		return false
	}
	if db == consoleDatabase {
		ss.runConsole(cfg, user, settings)
		return false
	}

	ss.user, ss.database = user, db
	ss.sessionMode = cfg.PoolModeFor(user) == "session"
	ss.key = pool.Key{User: user, Database: db, Backend: srv.backendFor(cfg)}
	ss.pool = srv.poolFor(ss.key)
	ss.shard = srv.topo.Current().DefaultShard()
	ss.startupValues = settings
	ss.settings = make(map[string]string, len(settings))
	for k, v := range settings {
		ss.settings[k] = applyConfig(k, v)
	}

	// Acquire a server connection when we must: session mode, unknown
	// server parameters for this pool (also proves the database exists), or
	// a startup setting combination not yet checked against the server.
	cached, haveParams := srv.params.Load(ss.key)
	check := settingsSignature(ss.key, settings)
	_, checked := srv.checked.Load(check)
	if ss.sessionMode || !haveParams || !checked {
		if err := ss.attach(); err != nil {
			ss.fatal(toErrorFields(err))
			return false
		}
		if !haveParams {
			p := make(map[string]string, len(ss.sc.Params))
			for k, v := range ss.sc.Params {
				p[k] = v
			}
			srv.params.Store(ss.key, p)
			cached = p
		}
		if srv.nchecked.Add(1) > maxCheckedSignatures { // bound memory for clients with unique parameters
			srv.checked.Clear()
			srv.nchecked.Store(0)
		}
		srv.checked.Store(check, true)
		if !ss.sessionMode {
			ss.detach()
		}
	}

	// AuthenticationOk, about 13 ParameterStatus, BackendKeyData and
	// ReadyForQuery: one allocation of about the right size instead of
	// growing through 8, 16, … bytes.
	ss.out = slices.Grow(ss.out, greetingSizeHint)
	ss.out = append(ss.out, 'R', 0, 0, 0, 8, 0, 0, 0, 0) // AuthenticationOk
	server := cached.(map[string]string)
	for _, p := range reportedParams {
		v, ok := server[p.name]
		if p.clientMay && len(settings) > 0 {
			if sv, set := settings[p.lower]; set {
				v, ok = sv, true
			}
		}
		if ok {
			ss.out = appendParameterStatus(ss.out, p.name, v)
		}
	}
	srv.register(ss)
	// The cancel key's secret only has to be unguessable by other clients:
	// math/rand/v2's generator is ChaCha8 seeded from the system's entropy,
	// per thread, and costs no system call.
	ss.secret = mrand.Uint32()
	ss.out = appendBackendKeyData(ss.out, ss.pid, ss.secret)
	ss.out = appendRFQ(ss.out, 'I')
	return ss.flushClient() == nil
}

// appendBackendKeyData appends BackendKeyData (protocol 3.0: a 4-byte
// process ID and a 4-byte secret key).
func appendBackendKeyData(dst []byte, pid, secret uint32) []byte {
	dst = append(dst, 'K', 0, 0, 0, 12)
	dst = binary.BigEndian.AppendUint32(dst, pid)
	return binary.BigEndian.AppendUint32(dst, secret)
}

// settingsSignature is the cache key for "this set of startup settings was
// accepted by the server for this pool".
func settingsSignature(key pool.Key, settings map[string]string) string {
	names := make([]string, 0, len(settings))
	for k := range settings {
		names = append(names, k)
	}
	sort.Strings(names)
	n := len(key.User) + len(key.Database) + len(key.Backend) + 2
	for k, v := range settings {
		n += len(k) + len(v) + 2
	}
	var b strings.Builder
	b.Grow(n)
	b.WriteString(key.User)
	b.WriteByte(0)
	b.WriteString(key.Database)
	b.WriteByte(0)
	b.WriteString(key.Backend)
	for _, k := range names {
		b.WriteByte(0)
		b.WriteString(k)
		b.WriteByte('=')
		b.WriteString(settings[k])
	}
	return b.String()
}

// applyConfig returns the statement that establishes a setting given in
// its "SHOW" text form (startup parameters, set_config).
func applyConfig(name, value string) string {
	return "SELECT pg_catalog.set_config(" + quoteLiteral(name) + ", " + quoteLiteral(value) + ", false)"
}

func quoteLiteral(s string) string {
	return "'" + strings.ReplaceAll(s, "'", "''") + "'"
}

func quoteIdent(s string) string {
	return `"` + strings.ReplaceAll(s, `"`, `""`) + `"`
}

// authenticate runs the configured authentication exchange for user.
func (ss *session) authenticate(cfg *config.Config, user, db string) error {
	method := cfg.Auth.Method
	if m := cfg.Auth.UnixSocketMethod; m != "" && isUnixSocket(ss.rawConn) {
		method = m // the socket's own method; trust_loopback does not apply
	} else if cfg.Auth.TrustLoopback && isLoopback(ss.conn.RemoteAddr()) {
		return nil
	}
	switch method {
	case "trust":
		return nil
	case "peer":
		return peerAuthenticate(ss.rawConn, user)
	}
	be := pgproto3.NewBackend(oneByteReader{ss.cr.br}, ss.conn)
	if u, ok := cfg.LookupUser(user); ok {
		cred, err := auth.ParseCredential(u.Name, u.Password)
		if err != nil {
			return err
		}
		return auth.Authenticate(be, method, user, cred)
	}
	if cfg.Auth.Passthrough {
		pw, err := auth.RequestCleartextPassword(be)
		if err != nil {
			return err
		}
		return ss.srv.verifyPassthrough(user, db, pw)
	}
	// Unknown user: run the exchange against a random password so the
	// client cannot tell unknown users from wrong passwords.
	var junk [16]byte
	rand.Read(junk[:])
	cred, err := auth.ParseCredential(user, fmt.Sprintf("%x", junk))
	if err != nil {
		return err
	}
	if err := auth.Authenticate(be, method, user, cred); err != nil {
		return err
	}
	return &auth.AuthError{Code: codeInvalidPassword, Message: fmt.Sprintf("password authentication failed for user %q", user)}
}

func isLoopback(a net.Addr) bool {
	switch t := a.(type) {
	case *net.TCPAddr:
		return t.IP.IsLoopback()
	case *net.UnixAddr:
		return true
	}
	return false
}

// verifyPassthrough checks a password by logging in to the first shard
// with it; verified passwords are cached per user so pools can use them.
func (s *Server) verifyPassthrough(user, db, password string) error {
	s.pwMu.Lock()
	known := s.passwords[user]
	s.pwMu.Unlock()
	if known != "" && known == password {
		return nil
	}
	cfg := s.config()
	key := pool.Key{User: user, Database: db, Backend: s.backendFor(cfg)}
	opts := s.poolOptions(cfg, key)
	opts.Password = password
	opts.Size, opts.MinIdle, opts.ConnectRetries = 1, 0, 0
	p := pool.New(key, opts)
	defer p.Close()
	ctx, cancel := context.WithTimeout(context.Background(), cfg.Pool.ConnectTimeout.D())
	defer cancel()
	sc, err := p.Acquire(ctx)
	if err != nil {
		var pe *pool.Error
		if errors.As(err, &pe) && (pe.Code == codeInvalidPassword || pe.Code == codeInvalidAuthorization) {
			return &auth.AuthError{Code: codeInvalidPassword, Message: fmt.Sprintf("password authentication failed for user %q", user)}
		}
		return err
	}
	p.Discard(sc)
	s.pwMu.Lock()
	s.passwords[user] = password
	s.pwMu.Unlock()
	return nil
}
