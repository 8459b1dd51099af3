package pgcluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
)

// Options describes a cluster. The zero value is one primary, no replicas,
// in a temporary directory, on free ports from 61000 up.
type Options struct {
	Shards   int    // number of primaries (default 1)
	Replicas int    // streaming replicas per primary (default 0)
	DataDir  string // "" = a fresh temp dir removed on Stop; else persistent: reuse existing data dirs (restart keeps data)
	Host     string // listen address and the host in DSNs; default "127.0.0.1"
	// BasePort 0 picks free ports from 61000 up (each checked with
	// net.Listen and locked against other processes using this package);
	// else instances get BasePort, BasePort+1, ... in Instances() order.
	BasePort int
	// CPUQuota caps each instance at this many cores (e.g. 0.25) with a cgroup
	// v1 group /sys/fs/cgroup/cpu/shardproxy-<id>/<instance>; 0 = no cap.
	CPUQuota float64
	// CPUs confines every instance to these CPUs (a kernel CPU list such as
	// "1") with one cgroup v1 cpuset group /sys/fs/cgroup/cpuset/
	// shardproxy-<id>; "" = anywhere. With the clients kept off them (e.g.
	// taskset), the servers' caches and wake-ups are their own, as on
	// machines of their own.
	CPUs string
	// Settings are extra postgresql.conf settings, applied after (and
	// overriding) ours; the ones pgcluster manages per instance (port,
	// listen_addresses, unix_socket_directories, primary_conninfo,
	// primary_slot_name) are refused.
	Settings map[string]string
	Logger   *slog.Logger // nil = discard
	// Password, if set, is the superuser "postgres"'s password and host
	// connections use scram-sha-256; else they are trusted. A persistent
	// DataDir keeps the password it was created with.
	Password string
	// Locale for initdb (default "C").
	Locale string
}

// Shard is one primary and its replicas.
type Shard struct {
	Name     string // "shard0", "shard1", ...
	Primary  *Instance
	Replicas []*Instance
}

// Cluster is a set of running PostgreSQL servers. Stop it when done (StartT
// does that for tests). Methods are safe for concurrent use.
type Cluster struct {
	Shards []*Shard

	opts      Options
	bin       string
	user      osUser
	root      string // data root (resolved)
	temp      bool   // root is ours: fast unsafe settings, removed on Stop
	cgroupDir string // "" when no CPU quota
	cpusetDir string // "" when no CPUs
	log       *slog.Logger

	mu       sync.Mutex
	rootLock *os.File // flock on a persistent DataDir: one cluster per directory
	ports    map[*Instance]*portLock
	stopped  bool
	stopErr  error
	stopDone chan struct{}
}

// layout is DataDir/cluster.json: the ports last used, so a persistent
// cluster comes back on the same addresses.
type layout struct {
	Ports map[string]int `json:"ports"` // instance key ("shard0/primary") -> port
}

// Start creates (or, with a persistent DataDir, reuses) and starts every
// server: shards in parallel, each shard's replicas in parallel after its
// primary is up. It returns when every server accepts connections. On error
// it stops whatever it started.
func Start(ctx context.Context, opts Options) (*Cluster, error) {
	if opts.Shards == 0 {
		opts.Shards = 1
	}
	if opts.Host == "" {
		opts.Host = "127.0.0.1"
	}
	if opts.Locale == "" {
		opts.Locale = "C"
	}
	if opts.Shards < 0 || opts.Replicas < 0 || opts.CPUQuota < 0 || opts.BasePort < 0 {
		return nil, fmt.Errorf("pgcluster: invalid options: shards=%d replicas=%d cpu=%v baseport=%d",
			opts.Shards, opts.Replicas, opts.CPUQuota, opts.BasePort)
	}
	for _, k := range []string{"port", "listen_addresses", "unix_socket_directories", "primary_conninfo", "primary_slot_name"} {
		if _, ok := opts.Settings[k]; ok {
			return nil, fmt.Errorf("pgcluster: Settings may not set %s: pgcluster manages it (use Host/BasePort)", k)
		}
	}
	if opts.Replicas > 8 {
		return nil, fmt.Errorf("pgcluster: at most 8 replicas per shard (max_wal_senders), got %d", opts.Replicas)
	}
	c := &Cluster{opts: opts, ports: map[*Instance]*portLock{}, stopDone: make(chan struct{}), log: opts.Logger}
	if c.log == nil {
		c.log = slog.New(slog.DiscardHandler)
	}
	var err error
	if c.bin, err = BinDir(); err != nil {
		return nil, err
	}
	major, err := serverMajor(c.bin)
	if err != nil {
		return nil, err
	}
	if major < 15 {
		return nil, fmt.Errorf("pgcluster: PostgreSQL %d in %s is too old: need >= 15", major, c.bin)
	}
	if c.user, err = lookupOSUser(); err != nil {
		return nil, err
	}
	ok := false
	defer func() {
		if !ok {
			_ = c.Stop()
		}
	}()
	if err := c.makeRoot(); err != nil {
		return nil, err
	}
	if opts.CPUQuota > 0 {
		if c.cgroupDir, err = newClusterCgroup(); err != nil {
			return nil, err
		}
	}
	if opts.CPUs != "" {
		if c.cpusetDir, err = newClusterCpuset(opts.CPUs); err != nil {
			return nil, err
		}
	}
	c.build()
	if err := c.assignPorts(); err != nil {
		return nil, err
	}
	if err := c.run(ctx); err != nil {
		return nil, err
	}
	if !c.temp {
		if err := c.saveLayout(); err != nil {
			return nil, err
		}
	}
	ok = true
	return c, nil
}

// StartT starts a cluster for a test, stops it in t.Cleanup, and fails the
// test if it cannot start. When the test has failed, cleanup logs the tail
// of every server log.
func StartT(t testing.TB, opts Options) *Cluster {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	c, err := Start(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			for _, in := range c.Instances() {
				t.Logf("pgcluster: tail of %s:\n%s", in.LogPath(), in.logTail(0))
			}
		}
		if err := c.Stop(); err != nil {
			t.Errorf("pgcluster: stop: %v", err)
		}
	})
	return c
}

// DataDir returns the directory holding every instance's data directory
// (Options.DataDir made absolute, or the temporary directory).
func (c *Cluster) DataDir() string { return c.root }

// RunTool runs one of the installed PostgreSQL programs (pg_rewind,
// pg_basebackup, pg_controldata …) as the servers' OS user, with the
// cluster's password in PGPASSWORD, and returns its combined output. For
// tests that repair instances by hand, as an operator would (e.g. rewind a
// failed-over primary with pg_rewind, then Start it as a standby).
func (c *Cluster) RunTool(ctx context.Context, program string, args ...string) ([]byte, error) {
	var env []string
	if c.opts.Password != "" {
		env = append(env, "PGPASSWORD="+c.opts.Password)
	}
	return c.user.runTool(ctx, c.user.env(env...), filepath.Join(c.bin, program), args...)
}

func (c *Cluster) isStopped() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.stopped
}

// Instances returns every instance: per shard, the primary then its replicas.
func (c *Cluster) Instances() []*Instance {
	var out []*Instance
	for _, s := range c.Shards {
		out = append(out, s.Primary)
		out = append(out, s.Replicas...)
	}
	return out
}

// Stop stops every server (replicas first, then primaries; in parallel
// within each group), removes the cgroups, releases the ports and removes a
// temporary data directory. It is idempotent; later calls return the first
// call's result.
func (c *Cluster) Stop() error {
	c.mu.Lock()
	if c.stopped {
		c.mu.Unlock()
		<-c.stopDone
		return c.stopErr
	}
	c.stopped = true
	c.mu.Unlock()

	var errs []error
	var emu sync.Mutex
	stopAll := func(ins []*Instance) {
		var wg sync.WaitGroup
		for _, in := range ins {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if err := in.Stop(); err != nil {
					emu.Lock()
					errs = append(errs, err)
					emu.Unlock()
				}
			}()
		}
		wg.Wait()
	}
	var primaries, replicas []*Instance
	for _, s := range c.Shards {
		primaries = append(primaries, s.Primary)
		replicas = append(replicas, s.Replicas...)
	}
	stopAll(replicas)
	stopAll(primaries)
	for _, in := range c.Instances() {
		in.mu.Lock()
		if in.sockDir != "" {
			_ = os.RemoveAll(in.sockDir)
			in.sockDir = ""
		}
		in.mu.Unlock()
	}
	for _, dir := range []string{c.cgroupDir, c.cpusetDir} {
		if dir == "" {
			continue
		}
		if err := removeCgroup(dir, 5*time.Second); err != nil {
			errs = append(errs, err)
		}
	}
	c.mu.Lock()
	for in, pl := range c.ports {
		pl.release()
		delete(c.ports, in)
	}
	if c.rootLock != nil {
		c.rootLock.Close()
		c.rootLock = nil
	}
	c.mu.Unlock()
	if c.temp && c.root != "" {
		if err := os.RemoveAll(c.root); err != nil {
			errs = append(errs, fmt.Errorf("pgcluster: remove %s: %w", c.root, err))
		}
	}
	c.stopErr = errors.Join(errs...)
	close(c.stopDone)
	return c.stopErr
}

// WaitReplicasCaughtUp waits until every replica has replayed all WAL its
// primary had inserted when the call began (so every transaction committed
// before the call, synchronous_commit=off included, is visible on every
// replica), or ctx ends. Every instance must be running. It writes a small
// WAL record (a logical message) on each primary.
func (c *Cluster) WaitReplicasCaughtUp(ctx context.Context) error {
	var wg sync.WaitGroup
	errs := make([]error, len(c.Shards))
	for n, s := range c.Shards {
		if len(s.Replicas) == 0 {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[n] = s.waitCaughtUp(ctx)
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

func (s *Shard) waitCaughtUp(ctx context.Context) error {
	conn, err := pgconn.Connect(ctx, s.Primary.DSN("postgres"))
	if err != nil {
		return fmt.Errorf("pgcluster: %s: %w", s.Primary.Name, err)
	}
	// The target is the WAL insert position (which covers asynchronous
	// commits not yet written out), read after a WAL record of our own
	// (a transactional logical message) and before that transaction's
	// commit record. The commit, synchronous because the transaction wrote
	// WAL, flushes everything up to and past the target, and a replica that
	// replayed the commit record is past the target (even when the target
	// falls at a page boundary, where no record ends).
	res, err := conn.Exec(ctx, "BEGIN; SET LOCAL synchronous_commit = on; "+
		"SELECT pg_logical_emit_message(true, 'pgcluster', 'caught-up'); "+
		"SELECT pg_current_wal_insert_lsn()::text; COMMIT").ReadAll()
	conn.Close(context.Background())
	if err != nil {
		return fmt.Errorf("pgcluster: %s: current WAL position: %w", s.Primary.Name, err)
	}
	last := res[len(res)-2]
	if len(last.Rows) != 1 {
		return fmt.Errorf("pgcluster: %s: no WAL position returned", s.Primary.Name)
	}
	target := string(last.Rows[0][0])
	for _, r := range s.Replicas {
		if err := r.waitReplayed(ctx, target); err != nil {
			return err
		}
	}
	return nil
}

func (i *Instance) waitReplayed(ctx context.Context, target string) error {
	if !i.Running() {
		return fmt.Errorf("pgcluster: %s is not running", i.Name)
	}
	conn, err := pgconn.Connect(ctx, i.DSN("postgres"))
	if err != nil {
		return fmt.Errorf("pgcluster: %s: %w", i.Name, err)
	}
	defer conn.Close(context.Background())
	q := fmt.Sprintf("SELECT pg_last_wal_replay_lsn() >= '%s'::pg_lsn, pg_last_wal_replay_lsn()::text", target)
	delay := 5 * time.Millisecond
	for {
		res, err := conn.Exec(ctx, q).ReadAll()
		if err != nil {
			return fmt.Errorf("pgcluster: %s: replay position: %w", i.Name, err)
		}
		row := res[0].Rows[0]
		if string(row[0]) == "t" {
			return nil
		}
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("pgcluster: %s replayed up to %s, waiting for %s: %w", i.Name, row[1], target, ctx.Err())
		case <-t.C:
		}
		if delay < 50*time.Millisecond {
			delay *= 2
		}
	}
}

// makeRoot creates the data root and makes it reachable by the server user.
func (c *Cluster) makeRoot() error {
	if c.opts.DataDir == "" {
		removeStaleTempRoots()
		d, err := os.MkdirTemp("", "pgcluster-")
		if err != nil {
			return fmt.Errorf("pgcluster: %w", err)
		}
		c.temp = true
		if d, err = filepath.EvalSymlinks(d); err != nil {
			return fmt.Errorf("pgcluster: %w", err)
		}
		c.root = d
		if err := os.WriteFile(filepath.Join(d, ownerFile), []byte(selfOwner()), 0o644); err != nil {
			return fmt.Errorf("pgcluster: %w", err)
		}
		return os.Chmod(d, 0o755)
	}
	d, err := filepath.Abs(c.opts.DataDir)
	if err != nil {
		return fmt.Errorf("pgcluster: %w", err)
	}
	if err := os.MkdirAll(d, 0o755); err != nil {
		return fmt.Errorf("pgcluster: %w", err)
	}
	if d, err = filepath.EvalSymlinks(d); err != nil {
		return fmt.Errorf("pgcluster: %w", err)
	}
	c.root = d
	f, err := os.OpenFile(filepath.Join(d, ".pgcluster.lock"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return fmt.Errorf("pgcluster: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		return fmt.Errorf("pgcluster: %s is in use by another cluster (is `shardproxy dev` already running?): %w", d, err)
	}
	c.mu.Lock()
	c.rootLock = f
	c.mu.Unlock()
	return c.makeReachable(d)
}

// makeReachable checks that the server user can traverse every directory
// from / to dir. Directories under the system temp dir (e.g. t.TempDir())
// get o+x added; elsewhere an unreachable directory is an error naming it.
func (c *Cluster) makeReachable(dir string) error {
	if c.user.cred == nil {
		return nil // servers run as ourselves
	}
	tmp, _ := filepath.EvalSymlinks(os.TempDir())
	for d := dir; ; d = filepath.Dir(d) {
		st, err := os.Stat(d)
		if err != nil {
			return fmt.Errorf("pgcluster: %w", err)
		}
		if st.Mode().Perm()&0o001 == 0 {
			if tmp != "" && strings.HasPrefix(d, tmp+string(filepath.Separator)) {
				if err := os.Chmod(d, st.Mode().Perm()|0o005); err != nil {
					return fmt.Errorf("pgcluster: %w", err)
				}
			} else {
				return fmt.Errorf("pgcluster: the postgres OS user cannot reach %s: %s is mode %v "+
					"(chmod o+x it, or choose a DataDir elsewhere)", dir, d, st.Mode().Perm())
			}
		}
		if d == filepath.Dir(d) {
			return nil
		}
	}
}

// build creates the Shard and Instance structures.
func (c *Cluster) build() {
	for n := 0; n < c.opts.Shards; n++ {
		name := fmt.Sprintf("shard%d", n)
		s := &Shard{Name: name}
		s.Primary = &Instance{
			Name: name, Host: c.opts.Host, Primary: true, c: c,
			key: name + "/primary", DataDir: filepath.Join(c.root, name, "primary"),
		}
		for r := 1; r <= c.opts.Replicas; r++ {
			s.Replicas = append(s.Replicas, &Instance{
				Name: fmt.Sprintf("%s-replica%d", name, r), Host: c.opts.Host, c: c,
				key:     fmt.Sprintf("%s/replica%d", name, r),
				DataDir: filepath.Join(c.root, name, fmt.Sprintf("replica%d", r)),
				primary: s.Primary, slot: fmt.Sprintf("pgcluster_%s_replica%d", name, r),
			})
		}
		c.Shards = append(c.Shards, s)
	}
}

// assignPorts reserves every instance's port: BasePort+n, else (persistent)
// the recorded one if it is free, else the next free one.
func (c *Cluster) assignPorts() error {
	var recorded layout
	if !c.temp {
		if b, err := os.ReadFile(filepath.Join(c.root, "cluster.json")); err == nil {
			if err := json.Unmarshal(b, &recorded); err != nil {
				return fmt.Errorf("pgcluster: %s/cluster.json: %w", c.root, err)
			}
		}
	}
	used := map[int]bool{}
	for n, in := range c.Instances() {
		var pl *portLock
		var err error
		switch {
		case c.opts.BasePort > 0:
			pl, err = reservePort(c.opts.Host, c.opts.BasePort+n, nil)
		case recorded.Ports[in.key] > 0 && !used[recorded.Ports[in.key]]:
			if pl, err = tryPort(c.opts.Host, recorded.Ports[in.key]); err == nil && pl == nil {
				c.log.Warn("pgcluster: recorded port taken, picking another", "instance", in.Name, "port", recorded.Ports[in.key])
				pl, err = reservePort(c.opts.Host, 0, used)
			}
		default:
			pl, err = reservePort(c.opts.Host, 0, used)
		}
		if err != nil {
			return err
		}
		used[pl.port] = true
		in.Port = pl.port
		c.mu.Lock()
		c.ports[in] = pl
		c.mu.Unlock()
	}
	return nil
}

// movePort gives in a new port after its old one turned out to be taken.
func (c *Cluster) movePort(in *Instance) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	used := map[int]bool{}
	for _, pl := range c.ports {
		used[pl.port] = true
	}
	pl, err := reservePort(c.opts.Host, 0, used)
	if err != nil {
		return err
	}
	c.ports[in].release()
	c.ports[in] = pl
	in.Port = pl.port
	return nil
}

func (c *Cluster) saveLayout() error {
	l := layout{Ports: map[string]int{}}
	for _, in := range c.Instances() {
		l.Ports[in.key] = in.Port
	}
	b, err := json.MarshalIndent(l, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(c.root, "cluster.json"), append(b, '\n'), 0o644)
}

// run creates missing data directories and starts every server.
func (c *Cluster) run(ctx context.Context) error {
	errs := make([]error, len(c.Shards))
	var wg sync.WaitGroup
	for n, s := range c.Shards {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[n] = c.runShard(ctx, s)
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

func (c *Cluster) runShard(ctx context.Context, s *Shard) error {
	if err := os.MkdirAll(filepath.Join(c.root, s.Name), 0o755); err != nil {
		return fmt.Errorf("pgcluster: %w", err)
	}
	p := s.Primary
	if err := c.initPrimary(ctx, p); err != nil {
		return err
	}
	p.opMu.Lock()
	err := p.start(ctx, true)
	p.opMu.Unlock()
	if err != nil {
		return err
	}
	errs := make([]error, len(s.Replicas))
	var wg sync.WaitGroup
	for n, r := range s.Replicas {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := c.initReplica(ctx, r); err != nil {
				errs[n] = err
				return
			}
			r.opMu.Lock()
			errs[n] = r.start(ctx, true)
			r.opMu.Unlock()
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// hasMarker reports whether dir was completely set up as instance key.
func hasMarker(dir, key string) bool {
	b, err := os.ReadFile(filepath.Join(dir, markerFile))
	return err == nil && strings.TrimSpace(string(b)) == key
}

// emptyDataDir creates dir (0700, owned by the server user) or empties it.
func (c *Cluster) emptyDataDir(dir string) error {
	if err := os.RemoveAll(dir); err != nil {
		return fmt.Errorf("pgcluster: %w", err)
	}
	if err := os.Mkdir(dir, 0o700); err != nil {
		return fmt.Errorf("pgcluster: %w", err)
	}
	return c.user.chown(dir)
}

// initPrimary runs initdb unless the data directory already holds this
// primary. A non-empty directory without our marker is refused rather than
// wiped: it may hold someone's data.
func (c *Cluster) initPrimary(ctx context.Context, p *Instance) error {
	if hasMarker(p.DataDir, p.key) {
		c.log.Info("pgcluster: reusing data directory", "instance", p.Name, "datadir", p.DataDir)
		return nil
	}
	if ents, err := os.ReadDir(p.DataDir); err == nil && len(ents) > 0 {
		return fmt.Errorf("pgcluster: %s exists but was not set up completely by pgcluster (no %s); "+
			"remove it to start afresh", p.DataDir, markerFile)
	}
	if err := c.emptyDataDir(p.DataDir); err != nil {
		return err
	}
	args := []string{"-D", p.DataDir, "-U", "postgres", "--auth=trust", "-E", "UTF8",
		"--locale=" + c.opts.Locale, "--no-instructions"}
	if c.temp {
		args = append(args, "--no-sync")
	}
	if c.opts.Password != "" {
		pwfile := filepath.Join(filepath.Dir(p.DataDir), ".pwfile-"+filepath.Base(p.DataDir))
		if err := c.user.writeFile(pwfile, []byte(c.opts.Password+"\n"), 0o600); err != nil {
			return fmt.Errorf("pgcluster: %w", err)
		}
		defer os.Remove(pwfile)
		args = append(args, "--pwfile="+pwfile)
	}
	c.log.Info("pgcluster: initdb", "instance", p.Name, "datadir", p.DataDir)
	if _, err := c.user.runTool(ctx, c.user.env(), filepath.Join(c.bin, "initdb"), args...); err != nil {
		return err
	}
	f, err := os.OpenFile(filepath.Join(p.DataDir, "postgresql.conf"), os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		return fmt.Errorf("pgcluster: %w", err)
	}
	_, err = f.WriteString("\n# Added by pgcluster: the settings it manages.\ninclude_if_exists = '" + confFile + "'\n")
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("pgcluster: %w", err)
	}
	return c.user.writeFile(filepath.Join(p.DataDir, markerFile), []byte(p.key+"\n"), 0o600)
}

// initReplica takes a base backup of the primary unless the data directory
// already holds this replica. A replica directory without its marker is an
// interrupted backup and is redone (replicas hold no data of their own).
func (c *Cluster) initReplica(ctx context.Context, r *Instance) error {
	if hasMarker(r.DataDir, r.key) {
		c.log.Info("pgcluster: reusing data directory", "instance", r.Name, "datadir", r.DataDir)
		return nil
	}
	if err := c.emptyDataDir(r.DataDir); err != nil {
		return err
	}
	if err := r.ensureSlot(ctx); err != nil {
		return err
	}
	args := []string{"-h", r.primary.Host, "-p", fmt.Sprint(r.primary.Port), "-U", "postgres", "-w",
		"-D", r.DataDir, "-X", "stream", "-c", "fast", "-S", r.slot}
	if c.temp {
		args = append(args, "--no-sync")
	}
	var env []string
	if c.opts.Password != "" {
		env = append(env, "PGPASSWORD="+c.opts.Password)
	}
	c.log.Info("pgcluster: base backup", "instance", r.Name, "from", r.primary.Addr())
	if _, err := c.user.runTool(ctx, c.user.env(env...), filepath.Join(c.bin, "pg_basebackup"), args...); err != nil {
		return err
	}
	// The primary's log and marker came along with the backup.
	_ = os.Remove(filepath.Join(r.DataDir, logFile))
	if err := c.user.writeFile(filepath.Join(r.DataDir, "standby.signal"), nil, 0o600); err != nil {
		return fmt.Errorf("pgcluster: %w", err)
	}
	return c.user.writeFile(filepath.Join(r.DataDir, markerFile), []byte(r.key+"\n"), 0o600)
}
