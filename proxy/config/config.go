package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/shardproxy/shardproxy/topology"
)

// Config is the whole proxy configuration. Zero values are filled by
// Default; Validate reports the first problem with the YAML key path.
type Config struct {
	// Listen is the client-facing address, e.g. "127.0.0.1:6432".
	Listen string `yaml:"listen"`
	// UnixSocketDir, when set, makes the proxy also accept clients on the
	// Unix-domain socket DIR/.s.PGSQL.PORT (PORT: listen's port), the name
	// libpq looks for with host=DIR, as PostgreSQL and PgBouncer do.
	UnixSocketDir string `yaml:"unix_socket_dir"`
	// UnixSocketMode is the socket file's permission bits, octal ("0777").
	UnixSocketMode string `yaml:"unix_socket_mode"`
	// NodeID identifies this proxy (1..4095); it is encoded in the
	// BackendKeyData handed to clients so cancels can be forwarded.
	NodeID int `yaml:"node_id"`
	// AdminListen is the HTTP address for metrics and the admin API ("" = off).
	AdminListen string `yaml:"admin_listen"`
	// AdminToken is the bearer token the admin API (/v1/...) requires.
	// Empty: the admin API answers loopback clients only.
	AdminToken string `yaml:"admin_token"`
	// AdminAdvertise is the base URL other proxies use to reach this
	// node's admin API (joins, writes forwarded to the leader), e.g.
	// "http://10.0.0.5:9930". Empty: derived from admin_listen, or from
	// raft.advertise's host when admin_listen has an unspecified host.
	AdminAdvertise string `yaml:"admin_advertise"`
	// Raft replicates the topology between proxies; off when Raft.Dir is
	// empty (the topology is then the one built from this file).
	Raft Raft `yaml:"raft"`
	// ShutdownTimeout bounds how long SIGTERM waits for transactions to finish.
	ShutdownTimeout Duration `yaml:"shutdown_timeout"`
	// LogLevel is debug, info, warn or error.
	LogLevel string `yaml:"log_level"`
	// LogFormat is text or json.
	LogFormat string `yaml:"log_format"`

	TLS   TLS    `yaml:"tls"`
	Auth  Auth   `yaml:"auth"`
	Users []User `yaml:"users"`
	// AdminUsers may use the admin console (database "shardproxy").
	AdminUsers []string `yaml:"admin_users"`
	Pool       Pool     `yaml:"pool"`
	// Server holds the credentials the proxy uses towards the shards.
	Server ServerAuth `yaml:"server"`
	Shards []Shard    `yaml:"shards"`
	// Sharding says which tables are distributed (and how) or reference
	// tables; see topology.Spec. Empty: every statement goes to the default
	// shard (the first one), the proxy is a pooler.
	Sharding topology.Spec `yaml:"sharding"`
	// Merge bounds cross-shard reads the proxy merges itself.
	Merge Merge `yaml:"merge"`
	// Replicas configures read/write splitting, health checks and
	// failover (replicas.go).
	Replicas Replicas `yaml:"replicas"`
}

// Merge settings for cross-shard reads (ORDER BY, aggregates, DISTINCT
// over several shards).
type Merge struct {
	// MemoryLimit is how many bytes one statement's sort, aggregate or
	// DISTINCT state may buffer before it fails with SQLSTATE 53200
	// (0 = 64 MiB, -1 = no limit).
	MemoryLimit int64 `yaml:"memory_limit"`
}

// Raft settings: with Dir set the topology lives in a Raft log shared by
// every proxy of the cluster (topology/raftstore). The shards and sharding
// section of this file then only seed a brand-new cluster.
type Raft struct {
	// Dir holds the Raft log, snapshots and the node ID ("" = Raft off).
	Dir string `yaml:"dir"`
	// NodeID names this node in the Raft configuration. Empty: the ID
	// stored in Dir/node-id, generated on first start.
	NodeID string `yaml:"node_id"`
	// Bind is the host:port of the Raft transport.
	Bind string `yaml:"bind"`
	// Advertise is the host:port other nodes dial ("" = Bind).
	Advertise string `yaml:"advertise"`
	// Join lists admin API addresses (host:port or URL) of existing
	// nodes; empty means this node bootstraps a cluster of its own when Dir
	// has no Raft state yet.
	Join []string `yaml:"join"`
	// MaxVoters: joining nodes become voters while the cluster has fewer,
	// then non-voters.
	MaxVoters int `yaml:"max_voters"`
	// CatchUpTimeout bounds how long a restarted node (Dir holds Raft
	// state) waits before it accepts clients until it has applied the
	// topology version the leader committed; past it (no leader reachable)
	// it starts with its last topology and logs a warning. Negative: do
	// not wait.
	CatchUpTimeout Duration `yaml:"catchup_timeout"`
}

// Enabled reports whether Raft is configured.
func (r Raft) Enabled() bool { return r.Dir != "" }

// TLS for client connections. Both files set → SSLRequest answered 'S'.
type TLS struct {
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
}

// Enabled reports whether a certificate and key are configured.
func (t TLS) Enabled() bool { return t.CertFile != "" && t.KeyFile != "" }

// Auth says how clients authenticate.
type Auth struct {
	// Method is scram-sha-256 (default), md5 or trust.
	Method string `yaml:"method"`
	// TrustLoopback lets loopback clients in without a password (dev mode).
	TrustLoopback bool `yaml:"trust_loopback"`
	// UnixSocketMethod is how clients on unix_socket_dir's socket
	// authenticate: peer (the client process's OS user must be the user it
	// logs in as, as PostgreSQL's peer), trust, scram-sha-256 or md5.
	// Empty: as TCP clients (Method; TrustLoopback counts the socket as
	// loopback).
	UnixSocketMethod string `yaml:"unix_socket_method"`
	// Passthrough checks passwords of users not listed in Users against the
	// server itself (like PgBouncer's auth_query): the proxy connects to the
	// first shard with the client's user and password.
	Passthrough bool `yaml:"passthrough"`
}

// User is a client login. Password is a plain password or a stored SCRAM
// verifier ("SCRAM-SHA-256$<iter>:<salt>$<StoredKey>:<ServerKey>") or an md5
// hash ("md5" + md5(password+user)).
type User struct {
	Name     string `yaml:"name"`
	Password string `yaml:"password"`
	// PoolMode overrides Pool.Mode for this user ("" = inherit).
	PoolMode string `yaml:"pool_mode"`
	// PoolSize overrides Pool.Size for this user (0 = inherit).
	PoolSize int `yaml:"pool_size"`
}

// Pool settings, PgBouncer-style.
type Pool struct {
	// Mode is transaction (default) or session.
	Mode string `yaml:"mode"`
	// Size is the maximum number of server connections per (user, database, backend).
	Size int `yaml:"size"`
	// MinIdle server connections kept open per pool.
	MinIdle int `yaml:"min_idle"`
	// MaxClientConn is the maximum number of client connections to the proxy.
	MaxClientConn int `yaml:"max_client_conn"`
	// WaitTimeout is how long a client waits for a server connection.
	WaitTimeout Duration `yaml:"wait_timeout"`
	// ServerIdleTimeout closes server connections idle longer than this.
	ServerIdleTimeout Duration `yaml:"server_idle_timeout"`
	// ServerLifetime closes server connections older than this on release.
	ServerLifetime Duration `yaml:"server_lifetime"`
	// ConnectTimeout bounds one connection attempt to a server.
	ConnectTimeout Duration `yaml:"connect_timeout"`
	// ConnectRetries is how many more times a failed connect is tried.
	ConnectRetries int `yaml:"connect_retries"`
	// HealthCheckInterval: idle servers unused for longer are checked before use.
	HealthCheckInterval Duration `yaml:"health_check_interval"`
	// ResetQuery runs on release in session mode.
	ResetQuery string `yaml:"reset_query"`
	// MaxPreparedStatements per server connection before the least recently
	// used one is closed.
	MaxPreparedStatements int `yaml:"max_prepared_statements"`
	// AutoPrepare (on, the default, or off): a simple-protocol SELECT,
	// INSERT, UPDATE or DELETE whose shape (its text with the numeric
	// literals taken out) has been seen before runs as a server-side
	// prepared statement with those literals as parameters, so PostgreSQL
	// skips parsing and planning it — outside a transaction block, and
	// inside one for statements without result rows. Results and errors
	// are those of the original text; pg_stat_activity and the server log
	// show the parameterized text.
	AutoPrepare string `yaml:"auto_prepare"`
	// AutoPrepareShapes bounds how many distinct shapes the proxy
	// remembers for AutoPrepare (default 2000).
	AutoPrepareShapes int `yaml:"auto_prepare_shapes"`
}

// AutoPrepareOn reports whether pool.auto_prepare is on.
func (p *Pool) AutoPrepareOn() bool { return p.AutoPrepare == "on" || p.AutoPrepare == "true" }

// ServerAuth is what the proxy presents to the shards. Empty User means
// "the client's user"; empty Password means the client's configured plain
// password (or none, for trust).
type ServerAuth struct {
	User     string `yaml:"user"`
	Password string `yaml:"password"`
}

// Shard is one PostgreSQL primary with its streaming replicas.
type Shard struct {
	Name     string     `yaml:"name"`
	Region   string     `yaml:"region"`
	Primary  Endpoint   `yaml:"primary"`
	Replicas []Endpoint `yaml:"replicas"`
}

// Endpoint is a PostgreSQL server address.
type Endpoint struct {
	Host string `yaml:"host"`
	Port int    `yaml:"port"`
}

// Addr returns host:port.
func (e Endpoint) Addr() string { return net.JoinHostPort(e.Host, fmt.Sprint(e.Port)) }

// Duration is a time.Duration that reads "5s", "250ms" or a number of seconds in YAML.
type Duration time.Duration

// D returns the value as a time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

// UnmarshalYAML accepts Go duration strings and plain numbers of seconds.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	s := strings.TrimSpace(n.Value)
	if v, err := time.ParseDuration(s); err == nil {
		*d = Duration(v)
		return nil
	}
	var secs float64
	if _, err := fmt.Sscanf(s, "%g", &secs); err == nil {
		*d = Duration(time.Duration(secs * float64(time.Second)))
		return nil
	}
	return fmt.Errorf("line %d: %q is not a duration (use e.g. 5s, 250ms, 1m)", n.Line, s)
}

// MarshalYAML writes the Go duration string.
func (d Duration) MarshalYAML() (any, error) { return time.Duration(d).String(), nil }

// Default returns a configuration with every setting at its default and no
// users or shards.
func Default() Config {
	c := Config{}
	c.ApplyDefaults()
	return c
}

// ApplyDefaults fills every zero-valued setting with its default.
func (c *Config) ApplyDefaults() {
	def := func(s *string, v string) {
		if *s == "" {
			*s = v
		}
	}
	defI := func(i *int, v int) {
		if *i == 0 {
			*i = v
		}
	}
	defD := func(d *Duration, v time.Duration) {
		if *d == 0 {
			*d = Duration(v)
		}
	}
	def(&c.Listen, "127.0.0.1:6432")
	def(&c.UnixSocketMode, "0777")
	defI(&c.NodeID, 1)
	def(&c.Raft.Bind, "127.0.0.1:9931")
	defI(&c.Raft.MaxVoters, 5)
	defD(&c.Raft.CatchUpTimeout, 30*time.Second)
	defD(&c.ShutdownTimeout, 30*time.Second)
	def(&c.LogLevel, "info")
	def(&c.LogFormat, "text")
	def(&c.Auth.Method, "scram-sha-256")
	def(&c.Pool.Mode, "transaction")
	defI(&c.Pool.Size, 20)
	defI(&c.Pool.MaxClientConn, 10000)
	defD(&c.Pool.WaitTimeout, 10*time.Second)
	defD(&c.Pool.ServerIdleTimeout, 10*time.Minute)
	defD(&c.Pool.ServerLifetime, time.Hour)
	defD(&c.Pool.ConnectTimeout, 5*time.Second)
	defI(&c.Pool.ConnectRetries, 2)
	defD(&c.Pool.HealthCheckInterval, 30*time.Second)
	def(&c.Pool.ResetQuery, "DISCARD ALL")
	defI(&c.Pool.MaxPreparedStatements, 1000)
	def(&c.Pool.AutoPrepare, "on")
	defI(&c.Pool.AutoPrepareShapes, 2000)
	c.Replicas.applyDefaults()
	for i := range c.Shards {
		for j := range c.Shards[i].Replicas {
			def(&c.Shards[i].Replicas[j].Host, "127.0.0.1")
			defI(&c.Shards[i].Replicas[j].Port, 5432)
		}
		def(&c.Shards[i].Primary.Host, "127.0.0.1")
		defI(&c.Shards[i].Primary.Port, 5432)
	}
}

// FieldError names the YAML key that is wrong and why.
type FieldError struct {
	Key     string
	Problem string
}

func (e *FieldError) Error() string { return e.Key + ": " + e.Problem }

// Validate checks bounds and cross-field rules. The error names the key.
func (c *Config) Validate() error {
	bad := func(key, format string, args ...any) error {
		return &FieldError{Key: key, Problem: fmt.Sprintf(format, args...)}
	}
	if _, _, err := net.SplitHostPort(c.Listen); err != nil {
		return bad("listen", "%q is not host:port", c.Listen)
	}
	if err := c.validateUnixSocket(); err != nil {
		return err
	}
	if c.AdminListen != "" {
		if _, _, err := net.SplitHostPort(c.AdminListen); err != nil {
			return bad("admin_listen", "%q is not host:port", c.AdminListen)
		}
	}
	if err := c.validateAdmin(); err != nil {
		return err
	}
	if c.NodeID < 1 || c.NodeID > 4095 {
		return bad("node_id", "must be between 1 and 4095, got %d", c.NodeID)
	}
	switch c.LogLevel {
	case "debug", "info", "warn", "error":
	default:
		return bad("log_level", "must be debug, info, warn or error, got %q", c.LogLevel)
	}
	switch c.LogFormat {
	case "text", "json":
	default:
		return bad("log_format", "must be text or json, got %q", c.LogFormat)
	}
	if (c.TLS.CertFile == "") != (c.TLS.KeyFile == "") {
		return bad("tls", "cert_file and key_file must be set together")
	}
	for _, f := range []struct{ key, path string }{{"tls.cert_file", c.TLS.CertFile}, {"tls.key_file", c.TLS.KeyFile}} {
		if f.path != "" {
			if _, err := os.Stat(f.path); err != nil {
				return bad(f.key, "cannot read %s: %v", f.path, errors.Unwrap(err))
			}
		}
	}
	switch c.Auth.Method {
	case "scram-sha-256", "md5", "trust":
	default:
		return bad("auth.method", "must be scram-sha-256, md5 or trust, got %q", c.Auth.Method)
	}
	switch c.Auth.UnixSocketMethod {
	case "", "peer", "scram-sha-256", "md5", "trust":
	default:
		return bad("auth.unix_socket_method", "must be peer, scram-sha-256, md5 or trust, got %q", c.Auth.UnixSocketMethod)
	}
	if err := validatePoolMode("pool.mode", c.Pool.Mode); err != nil {
		return err
	}
	if c.Pool.Size < 1 || c.Pool.Size > 10000 {
		return bad("pool.size", "must be between 1 and 10000, got %d", c.Pool.Size)
	}
	if c.Pool.MinIdle < 0 || c.Pool.MinIdle > c.Pool.Size {
		return bad("pool.min_idle", "must be between 0 and pool.size (%d), got %d", c.Pool.Size, c.Pool.MinIdle)
	}
	if c.Pool.MaxClientConn < 1 {
		return bad("pool.max_client_conn", "must be at least 1, got %d", c.Pool.MaxClientConn)
	}
	if c.Pool.ConnectRetries < 0 {
		return bad("pool.connect_retries", "must not be negative, got %d", c.Pool.ConnectRetries)
	}
	switch c.Pool.AutoPrepare {
	case "on", "off", "true", "false":
	default:
		return bad("pool.auto_prepare", "must be on or off, got %q", c.Pool.AutoPrepare)
	}
	if c.Pool.AutoPrepareShapes < 1 {
		return bad("pool.auto_prepare_shapes", "must be at least 1, got %d", c.Pool.AutoPrepareShapes)
	}
	if c.Pool.MaxPreparedStatements < 1 {
		return bad("pool.max_prepared_statements", "must be at least 1, got %d", c.Pool.MaxPreparedStatements)
	}
	for _, d := range []struct {
		key string
		v   Duration
	}{{"pool.wait_timeout", c.Pool.WaitTimeout}, {"pool.connect_timeout", c.Pool.ConnectTimeout},
		{"pool.server_idle_timeout", c.Pool.ServerIdleTimeout}, {"pool.server_lifetime", c.Pool.ServerLifetime},
		{"pool.health_check_interval", c.Pool.HealthCheckInterval}, {"shutdown_timeout", c.ShutdownTimeout}} {
		if d.v <= 0 {
			return bad(d.key, "must be a positive duration, got %s", d.v.D())
		}
	}
	seenUser := map[string]bool{}
	for i, u := range c.Users {
		key := fmt.Sprintf("users[%d]", i)
		if u.Name == "" {
			return bad(key+".name", "must not be empty")
		}
		if seenUser[u.Name] {
			return bad(key+".name", "user %q is listed twice", u.Name)
		}
		seenUser[u.Name] = true
		if u.PoolMode != "" {
			if err := validatePoolMode(key+".pool_mode", u.PoolMode); err != nil {
				return err
			}
		}
		if u.PoolSize < 0 {
			return bad(key+".pool_size", "must not be negative, got %d", u.PoolSize)
		}
		if u.Password == "" && c.Auth.Method != "trust" && !c.Auth.TrustLoopback {
			return bad(key+".password", "must be set when auth.method is %s", c.Auth.Method)
		}
	}
	if c.Merge.MemoryLimit < -1 {
		return bad("merge.memory_limit", "must be a byte count, 0 (64 MiB) or -1 (no limit), got %d", c.Merge.MemoryLimit)
	}
	if err := c.Replicas.validate(); err != nil {
		return err
	}
	if len(c.Shards) == 0 {
		return bad("shards", "at least one shard is required")
	}
	seenShard := map[string]bool{}
	for i, s := range c.Shards {
		key := fmt.Sprintf("shards[%d]", i)
		if s.Name == "" {
			return bad(key+".name", "must not be empty")
		}
		if seenShard[s.Name] {
			return bad(key+".name", "shard %q is listed twice", s.Name)
		}
		seenShard[s.Name] = true
		if err := validateEndpoint(key+".primary", s.Primary); err != nil {
			return err
		}
		for j, r := range s.Replicas {
			if err := validateEndpoint(fmt.Sprintf("%s.replicas[%d]", key, j), r); err != nil {
				return err
			}
		}
	}
	if _, err := c.Topology(); err != nil {
		return bad("sharding", "%v", err)
	}
	return nil
}

func (c *Config) validateAdmin() error {
	bad := func(key, format string, args ...any) error {
		return &FieldError{Key: key, Problem: fmt.Sprintf(format, args...)}
	}
	if c.AdminAdvertise != "" {
		u, err := url.Parse(c.AdminAdvertise)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return bad("admin_advertise", "%q is not an http(s)://host:port URL", c.AdminAdvertise)
		}
	}
	if strings.ContainsAny(c.AdminToken, " \t\r\n") {
		return bad("admin_token", "must not contain whitespace")
	}
	r := c.Raft
	if !r.Enabled() {
		if len(r.Join) > 0 {
			return bad("raft.join", "needs raft.dir (joining a cluster means keeping a Raft log)")
		}
		return nil
	}
	if c.AdminListen == "" {
		return bad("admin_listen", "must be set when raft.dir is: proxies join and forward topology writes through the admin API")
	}
	if strings.ContainsAny(r.NodeID, " \t\r\n/") {
		return bad("raft.node_id", "%q must not contain whitespace or '/'", r.NodeID)
	}
	host, port, err := net.SplitHostPort(r.Bind)
	if err != nil || port == "" || port == "0" {
		return bad("raft.bind", "%q is not host:port with a fixed port", r.Bind)
	}
	if r.Advertise == "" && unspecifiedHost(host) {
		return bad("raft.advertise", "must be set when raft.bind (%s) listens on all interfaces: other nodes need an address they can dial", r.Bind)
	}
	if r.Advertise != "" {
		h, p, err := net.SplitHostPort(r.Advertise)
		if err != nil || p == "" || p == "0" || unspecifiedHost(h) {
			return bad("raft.advertise", "%q is not a host:port other nodes can dial", r.Advertise)
		}
	}
	for i, j := range r.Join {
		if _, err := AdminURL(j); err != nil {
			return bad(fmt.Sprintf("raft.join[%d]", i), "%v", err)
		}
	}
	if r.MaxVoters < 1 || r.MaxVoters > 9 {
		return bad("raft.max_voters", "must be between 1 and 9, got %d", r.MaxVoters)
	}
	return nil
}

func unspecifiedHost(h string) bool {
	if h == "" {
		return true
	}
	ip := net.ParseIP(h)
	return ip != nil && ip.IsUnspecified()
}

// AdminURL turns an admin address as written in raft.join or on the command
// line ("host:port", or an http(s) URL) into a base URL without a trailing
// slash.
func AdminURL(s string) (string, error) {
	s = strings.TrimSpace(s)
	if !strings.Contains(s, "://") {
		if _, _, err := net.SplitHostPort(s); err != nil {
			return "", fmt.Errorf("%q is not host:port or an http(s) URL", s)
		}
		return "http://" + s, nil
	}
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return "", fmt.Errorf("%q is not host:port or an http(s) URL", s)
	}
	return strings.TrimRight(u.Scheme+"://"+u.Host+u.Path, "/"), nil
}

// AdvertisedAdminURL returns the base URL other nodes use for this node's
// admin API: AdminAdvertise, else admin_listen (with raft.advertise's host,
// else raft.bind's, when admin_listen listens on all interfaces). adminAddr is
// the bound admin listener address (it resolves port 0); "" uses
// AdminListen.
func (c *Config) AdvertisedAdminURL(adminAddr string) string {
	if c.AdminAdvertise != "" {
		return strings.TrimRight(c.AdminAdvertise, "/")
	}
	if adminAddr == "" {
		adminAddr = c.AdminListen
	}
	host, port, err := net.SplitHostPort(adminAddr)
	if err != nil {
		return ""
	}
	if unspecifiedHost(host) {
		src := c.Raft.Advertise
		if src == "" {
			src = c.Raft.Bind
		}
		if h, _, err := net.SplitHostPort(src); err == nil && !unspecifiedHost(h) {
			host = h
		} else {
			host = "127.0.0.1"
		}
	}
	return "http://" + net.JoinHostPort(host, port)
}

// ShardSpecs converts the shard entries to topology form.
func (c *Config) ShardSpecs() []topology.ShardSpec {
	out := make([]topology.ShardSpec, 0, len(c.Shards))
	for _, s := range c.Shards {
		ss := topology.ShardSpec{Name: s.Name, Primary: s.Primary.Addr(), Region: s.Region}
		for _, r := range s.Replicas {
			ss.Replicas = append(ss.Replicas, r.Addr())
		}
		out = append(out, ss)
	}
	return out
}

// Topology builds the initial topology snapshot (version 1) from the shards
// and the sharding section. Errors name the offending entry.
func (c *Config) Topology() (*topology.Snapshot, error) {
	return topology.Build(c.ShardSpecs(), c.Sharding)
}

func validatePoolMode(key, mode string) error {
	if mode != "transaction" && mode != "session" {
		return &FieldError{Key: key, Problem: fmt.Sprintf("must be transaction or session, got %q", mode)}
	}
	return nil
}

func validateEndpoint(key string, e Endpoint) error {
	if e.Host == "" {
		return &FieldError{Key: key + ".host", Problem: "must not be empty"}
	}
	if e.Port < 1 || e.Port > 65535 {
		return &FieldError{Key: key + ".port", Problem: fmt.Sprintf("must be between 1 and 65535, got %d", e.Port)}
	}
	return nil
}

// Parse reads YAML, rejecting unknown keys, fills defaults and validates.
func Parse(data []byte) (Config, error) {
	var c Config
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&c); err != nil && !errors.Is(err, io.EOF) {
		return Config{}, fmt.Errorf("config: %w", err)
	}
	c.ApplyDefaults()
	if err := c.Validate(); err != nil {
		return Config{}, fmt.Errorf("config: %w", err)
	}
	return c, nil
}

// Load reads and parses the file at path.
func Load(path string) (Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return Config{}, fmt.Errorf("config: %w", err)
	}
	c, err := Parse(data)
	if err != nil {
		return Config{}, fmt.Errorf("%s: %w", path, err)
	}
	return c, nil
}

// PoolModeFor returns the pool mode for a user.
func (c *Config) PoolModeFor(user string) string {
	for _, u := range c.Users {
		if u.Name == user && u.PoolMode != "" {
			return u.PoolMode
		}
	}
	return c.Pool.Mode
}

// PoolSizeFor returns the pool size for a user.
func (c *Config) PoolSizeFor(user string) int {
	for _, u := range c.Users {
		if u.Name == user && u.PoolSize > 0 {
			return u.PoolSize
		}
	}
	return c.Pool.Size
}

// LookupUser returns the configured user by name.
func (c *Config) LookupUser(name string) (User, bool) {
	for _, u := range c.Users {
		if u.Name == name {
			return u, true
		}
	}
	return User{}, false
}

// maxUnixSocketPath is the longest socket path Linux accepts (sun_path
// holds 108 bytes with the terminating NUL).
const maxUnixSocketPath = 107

// UnixSocketFileMode returns unix_socket_mode as permission bits.
func (c *Config) UnixSocketFileMode() (os.FileMode, error) {
	m, err := strconv.ParseUint(c.UnixSocketMode, 8, 32)
	if err != nil || m > 0o777 {
		return 0, &FieldError{Key: "unix_socket_mode", Problem: fmt.Sprintf("%q is not an octal permission mode like 0777 or 0700", c.UnixSocketMode)}
	}
	return os.FileMode(m), nil
}

// UnixSocketPath is the socket file clients connect to for a proxy
// listening on port: unix_socket_dir/.s.PGSQL.PORT.
func (c *Config) UnixSocketPath(port int) string {
	return filepath.Join(c.UnixSocketDir, fmt.Sprintf(".s.PGSQL.%d", port))
}

func (c *Config) validateUnixSocket() error {
	if _, err := c.UnixSocketFileMode(); err != nil {
		return err
	}
	if c.UnixSocketDir == "" {
		return nil
	}
	if !filepath.IsAbs(c.UnixSocketDir) {
		return &FieldError{Key: "unix_socket_dir", Problem: fmt.Sprintf("%q is not an absolute path", c.UnixSocketDir)}
	}
	if p := c.UnixSocketPath(65535); len(p) > maxUnixSocketPath {
		return &FieldError{Key: "unix_socket_dir", Problem: fmt.Sprintf("%q is too long: the socket path %s would exceed %d bytes", c.UnixSocketDir, p, maxUnixSocketPath)}
	}
	return nil
}
