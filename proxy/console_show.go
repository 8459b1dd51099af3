package proxy

import (
	"encoding/json"
	"fmt"
	"net"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"
	"gopkg.in/yaml.v3"

	"github.com/shardproxy/shardproxy/proxy/config"
	"github.com/shardproxy/shardproxy/proxy/pool"
)

// consoleTable is one SHOW result: columns are text or int8, values are
// given in text form.
type consoleTable struct {
	cols []pgproto3.FieldDescription
	rows [][]string
}

const (
	oidText = 25
	oidInt8 = 20
)

// newConsoleTable declares columns: a name ending in "#" is int8 (the "#" is
// dropped), everything else text.
func newConsoleTable(names ...string) *consoleTable {
	t := &consoleTable{}
	for _, n := range names {
		oid, size := uint32(oidText), int16(-1)
		if strings.HasSuffix(n, "#") {
			n, oid, size = strings.TrimSuffix(n, "#"), oidInt8, 8
		}
		t.cols = append(t.cols, pgproto3.FieldDescription{Name: []byte(n), DataTypeOID: oid, DataTypeSize: size, TypeModifier: -1})
	}
	return t
}

// add appends a row; values are strings or integers.
func (t *consoleTable) add(vals ...any) {
	if len(vals) != len(t.cols) {
		panic(fmt.Sprintf("proxy: console row has %d values for %d columns", len(vals), len(t.cols)))
	}
	row := make([]string, len(vals))
	for i, v := range vals {
		switch x := v.(type) {
		case string:
			row[i] = x
		case int:
			row[i] = strconv.Itoa(x)
		case int64:
			row[i] = strconv.FormatInt(x, 10)
		case uint64:
			row[i] = strconv.FormatUint(x, 10)
		case uint32:
			row[i] = strconv.FormatUint(uint64(x), 10)
		case bool:
			row[i] = map[bool]string{true: "yes", false: "no"}[x]
		default:
			row[i] = fmt.Sprint(x)
		}
	}
	t.rows = append(t.rows, row)
}

func (ss *session) writeTable(t *consoleTable) {
	ss.out = appendEncoded(ss.out, &pgproto3.RowDescription{Fields: t.cols})
	for _, r := range t.rows {
		vals := make([][]byte, len(r))
		for i, v := range r {
			vals[i] = []byte(v)
		}
		ss.out = appendEncoded(ss.out, &pgproto3.DataRow{Values: vals})
	}
	ss.out = appendCommandComplete(ss.out, "SHOW")
}

func (ss *session) consoleShow(what string) error {
	srv := ss.srv
	var t *consoleTable
	switch what {
	case "HELP":
		ss.out = appendNotice(ss.out, consoleHelp)
		ss.out = appendCommandComplete(ss.out, "SHOW")
		return nil
	case "POOLS":
		t = srv.showPools()
	case "CLIENTS":
		t = srv.showClients()
	case "SERVERS":
		t = srv.showServers()
	case "STATS":
		t = srv.showStats()
	case "SHARDS":
		t = srv.showShards()
	case "CONFIG":
		t = showConfig(*srv.config())
	case "VERSION":
		t = newConsoleTable("version")
		t.add("shardproxy " + srv.console.version)
	case "STATE":
		t = srv.showState()
	default:
		return &sqlError{errorFields{Code: "42601", Message: fmt.Sprintf("unsupported SHOW %s in the admin console", what),
			Hint: "SHOW HELP lists what the console can show."}}
	}
	ss.writeTable(t)
	return nil
}

// poolEntry is one pool with its key, for stable ordering.
type poolEntry struct {
	key pool.Key
	p   *pool.Pool
}

func (s *Server) sortedPools() []poolEntry {
	var out []poolEntry
	s.pools.Each(func(k pool.Key, p *pool.Pool) { out = append(out, poolEntry{k, p}) })
	sort.Slice(out, func(i, j int) bool { return out[i].key.String() < out[j].key.String() })
	return out
}

// showPools: one row per pool (user, database, server address), PgBouncer's
// columns plus shard, role and addr.
func (s *Server) showPools() *consoleTable {
	cfg := s.config()
	eps := endpointsOf(s.topo.Current())
	t := newConsoleTable("database", "user", "shard", "role", "addr", "cl_active#", "cl_waiting#",
		"sv_active#", "sv_idle#", "sv_used#", "sv_tested#", "sv_login#", "maxwait#", "maxwait_us#",
		"pool_mode", "pool_size#", "total_wait_count#", "total_wait_time_us#", "total_wait_timeouts#")
	for _, e := range s.sortedPools() {
		st := e.p.Stats()
		ep := eps.get(e.key.Backend)
		t.add(e.key.Database, e.key.User, ep.shard, ep.role, e.key.Backend, st.Active, st.Waiting,
			st.Active, st.Idle, 0, 0, max(st.Total-st.Active-st.Idle, 0),
			int64(st.MaxWait/time.Second), int64(st.MaxWait%time.Second/time.Microsecond),
			cfg.PoolModeFor(e.key.User), e.p.Options().Size, st.Waits, st.WaitTime.Microseconds(), st.WaitTimeouts)
	}
	return t
}

// clientInfo is what SHOW CLIENTS may read of another session.
type clientInfo struct {
	id                   uint32
	user, database, app  string
	remote, local        net.Addr
	tls, idle            bool
	connected            time.Time
	holdSince            int64
	serverPID            uint32
	serverAddr           string
	consoleSessionOfSelf bool
}

func (s *Server) clientInfos() []clientInfo {
	s.mu.Lock()
	out := make([]clientInfo, 0, len(s.sessions))
	for pid, sess := range s.sessions {
		ci := clientInfo{id: pid, user: sess.user, database: sess.database, app: sess.startupValues["application_name"],
			remote: sess.rawConn.RemoteAddr(), local: sess.rawConn.LocalAddr(), tls: sess.tls,
			idle: sess.idle.Load(), connected: sess.connectedAt, holdSince: sess.holdSince.Load()}
		if sc := sess.current.Load(); sc != nil {
			ci.serverPID, ci.serverAddr = sc.PID, sc.Addr
		}
		out = append(out, ci)
	}
	s.mu.Unlock()
	sort.Slice(out, func(i, j int) bool { return out[i].id < out[j].id })
	return out
}

// splitAddr gives a client address as SHOW CLIENTS lists it. Both ends of
// a Unix-domain socket connection are "unix" with the proxy's port (from
// the socket's name), as in PgBouncer.
func splitAddr(a net.Addr) (string, int) {
	if a == nil {
		return "", 0
	}
	if ua, ok := a.(*net.UnixAddr); ok {
		_, port, _ := strings.Cut(filepath.Base(ua.Name), ".s.PGSQL.")
		n, _ := strconv.Atoi(port)
		return "unix", n
	}
	h, p, err := net.SplitHostPort(a.String())
	if err != nil {
		return a.String(), 0
	}
	n, _ := strconv.Atoi(p)
	return h, n
}

func consoleTime(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format("2006-01-02 15:04:05 UTC")
}

// showClients: one row per client connection. state is active (a request
// in progress or a transaction open), idle (between transactions) or
// waiting (held by PAUSE); link is the server backend PID the client is
// attached to right now and shard that server's shard.
func (s *Server) showClients() *consoleTable {
	eps := endpointsOf(s.topo.Current())
	t := newConsoleTable("type", "user", "database", "state", "addr", "port#", "local_addr", "local_port#",
		"connect_time", "wait#", "wait_us#", "link#", "tls", "application_name", "id#", "shard")
	now := time.Now()
	for _, c := range s.clientInfos() {
		state := "active"
		var wait time.Duration
		switch {
		case c.holdSince != 0:
			state, wait = "waiting", now.Sub(time.Unix(0, c.holdSince))
		case c.idle:
			state = "idle"
		}
		shard := ""
		if c.serverAddr != "" {
			shard = eps.get(c.serverAddr).shard
		}
		addr, port := splitAddr(c.remote)
		laddr, lport := splitAddr(c.local)
		if addr == "unix" {
			port = lport // the client's end of a Unix socket has no name
		}
		t.add("C", c.user, c.database, state, addr, port, laddr, lport, consoleTime(c.connected),
			int64(wait/time.Second), int64(wait%time.Second/time.Microsecond), c.serverPID, c.tls, c.app, c.id, shard)
	}
	return t
}

// showServers: one row per open server connection. state is active (held
// by a client) or idle; link is the id of the client it serves right now
// (0 when idle or held for a shard the client is not using at the moment).
func (s *Server) showServers() *consoleTable {
	eps := endpointsOf(s.topo.Current())
	linked := make(map[string]uint32)
	for _, c := range s.clientInfos() {
		if c.serverAddr != "" {
			linked[fmt.Sprintf("%s/%d", c.serverAddr, c.serverPID)] = c.id
		}
	}
	t := newConsoleTable("type", "user", "database", "state", "addr", "port#", "local_addr", "local_port#",
		"connect_time", "request_time", "link#", "remote_pid#", "prepared_statements#", "shard", "role")
	for _, e := range s.sortedPools() {
		ep := eps.get(e.key.Backend)
		for _, c := range e.p.Conns() {
			state := "active"
			if c.Idle {
				state = "idle"
			}
			host, port := splitHostPort(c.Addr)
			lhost, lport := splitHostPort(c.LocalAddr)
			t.add("S", e.key.User, e.key.Database, state, host, port, lhost, lport, consoleTime(c.Created),
				consoleTime(c.IdleSince), linked[fmt.Sprintf("%s/%d", c.Addr, c.PID)], c.PID, c.Prepared, ep.shard, ep.role)
		}
	}
	return t
}

func splitHostPort(hp string) (string, int) {
	h, p, err := net.SplitHostPort(hp)
	if err != nil {
		return hp, 0
	}
	n, _ := strconv.Atoi(p)
	return h, n
}

// showStats: requests answered since start, by database, route kind and
// shard (as in shardproxy_query_duration_seconds). Times in microseconds.
func (s *Server) showStats() *consoleTable {
	type row struct {
		k routeStatsKey
		n uint64
		u uint64
	}
	var rows []row
	s.console.stats.m.Range(func(k, v any) bool {
		tot := v.(*routeTotals)
		rows = append(rows, row{k.(routeStatsKey), tot.count.Load(), tot.micros.Load()})
		return true
	})
	sort.Slice(rows, func(i, j int) bool {
		a, b := rows[i].k, rows[j].k
		if a.database != b.database {
			return a.database < b.database
		}
		if a.kind != b.kind {
			return a.kind < b.kind
		}
		return a.shard < b.shard
	})
	t := newConsoleTable("database", "route", "shard", "total_query_count#", "total_query_time#", "avg_query_time#")
	for _, r := range rows {
		avg := uint64(0)
		if r.n > 0 {
			avg = r.u / r.n
		}
		t.add(r.k.database, r.k.kind, r.k.shard, r.n, r.u, avg)
	}
	return t
}

// showShards: one row per server of the topology (each shard's primary and
// replicas) with the pools' connections to it summed.
func (s *Server) showShards() *consoleTable {
	snap := s.topo.Current()
	type sums struct{ active, idle, waiting, pools int }
	by := make(map[string]*sums)
	for _, e := range s.sortedPools() {
		st := e.p.Stats()
		sm := by[e.key.Backend]
		if sm == nil {
			sm = &sums{}
			by[e.key.Backend] = sm
		}
		sm.active += st.Active
		sm.idle += st.Idle
		sm.waiting += st.Waiting
		sm.pools++
	}
	t := newConsoleTable("shard", "role", "addr", "state", "region", "default", "pools#", "sv_active#", "sv_idle#", "cl_waiting#", "topology_version#")
	row := func(shard, role, addr, state, region string) {
		sm := by[addr]
		if sm == nil {
			sm = &sums{}
		}
		t.add(shard, role, addr, state, region, shard == snap.DefaultShard(), sm.pools, sm.active, sm.idle, sm.waiting, snap.Version())
	}
	for _, sh := range snap.Shards() {
		row(sh.Name, "primary", sh.Primary, string(sh.State), sh.Region)
		for _, r := range sh.Replicas {
			row(sh.Name, "replica", r, string(sh.State), sh.Region)
		}
	}
	return t
}

// showState: whether PAUSE is in effect, and the topology version.
func (s *Server) showState() *consoleTable {
	t := newConsoleTable("key", "value")
	paused := "no"
	switch s.console.gate.state.Load() {
	case gatePausing:
		paused = "pausing"
	case gatePaused:
		paused = "yes"
	}
	t.add("paused", paused)
	t.add("topology_version", strconv.FormatUint(s.topo.Current().Version(), 10))
	t.add("clients", strconv.FormatInt(s.nclients.Load(), 10))
	return t
}

// showConfig lists the configuration in effect as key (YAML path), value,
// default and whether RELOAD applies a change (PgBouncer's columns).
// Passwords and the admin token are masked.
func showConfig(cfg config.Config) *consoleTable {
	masked := cfg
	masked.Users = append([]config.User(nil), cfg.Users...)
	for i := range masked.Users {
		masked.Users[i].Password = mask(masked.Users[i].Password)
	}
	masked.AdminToken = mask(cfg.AdminToken)
	masked.Server.Password = mask(cfg.Server.Password)
	cur, defs := flattenConfig(masked), flattenConfig(config.Default())
	keys := make([]string, 0, len(cur))
	for k := range cur {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	t := newConsoleTable("key", "value", "default", "changeable")
	for _, k := range keys {
		t.add(k, cur[k], defs[k], reloadable(k))
	}
	return t
}

func mask(secret string) string {
	if secret == "" {
		return ""
	}
	return "********"
}

// reloadable says whether Server.Reload applies a change of key.
func reloadable(key string) bool {
	top, _, _ := strings.Cut(key, ".")
	switch top {
	case "listen", "node_id", "shards", "sharding", "raft", "admin_listen", "admin_advertise", "admin_token":
		return false
	}
	return true
}

// flattenConfig turns a config into dotted YAML keys → values; lists and
// maps inside lists are shown as compact JSON.
func flattenConfig(cfg config.Config) map[string]string {
	out := make(map[string]string)
	b, err := yaml.Marshal(cfg)
	if err != nil {
		return out
	}
	var tree map[string]any
	if err := yaml.Unmarshal(b, &tree); err != nil {
		return out
	}
	var walk func(prefix string, v any)
	walk = func(prefix string, v any) {
		switch x := v.(type) {
		case map[string]any:
			for k, vv := range x {
				key := k
				if prefix != "" {
					key = prefix + "." + k
				}
				walk(key, vv)
			}
		case nil:
			out[prefix] = ""
		case []any:
			j, _ := json.Marshal(x)
			out[prefix] = string(j)
		default:
			out[prefix] = fmt.Sprint(x)
		}
	}
	walk("", tree)
	return out
}
