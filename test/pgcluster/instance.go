package pgcluster

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
)

const (
	// readyTimeout bounds waiting for a server to accept connections when
	// the caller's context has no deadline.
	readyTimeout = 90 * time.Second
	// stopTimeout is how long a fast shutdown may take before SIGQUIT.
	stopTimeout = 60 * time.Second
	// logFile is the server log inside the data directory.
	logFile = "postgres.log"
	// confFile is rewritten at every start; postgresql.conf includes it.
	confFile = "pgcluster.conf"
	// markerFile holds the instance key once initdb or the base backup has
	// completed, so an interrupted one is recognised on a persistent restart.
	markerFile = "pgcluster.id"
)

// Instance is one PostgreSQL server (a primary or a streaming replica).
// The exported fields are fixed once the cluster's Start has returned (Port
// stays the same across Stop/Start/Kill/Restart). Methods are safe for
// concurrent use.
type Instance struct {
	Name    string // "shard0", "shard0-replica1"
	Host    string
	Port    int
	DataDir string
	Primary bool

	c       *Cluster
	key     string    // "shard0/primary", "shard0/replica1": the DataDir-relative path
	primary *Instance // the replica's upstream; nil for a primary
	slot    string    // the replica's physical replication slot on its primary

	opMu sync.Mutex // serializes Start, Stop and Kill

	mu      sync.Mutex // guards the fields below
	proc    *process
	sockDir string // a temp socket dir when DataDir is too long for a socket path
	cgroup  string
}

type process struct {
	cmd      *exec.Cmd
	pid      int
	stopping atomic.Bool   // set before we signal it, so its exit is expected
	done     chan struct{} // closed when the postmaster has exited and been reaped
	err      error         // exit status; valid after done
	log      *os.File
	logFrom  int64 // offset in the log where this run's output starts
}

// Addr returns host:port.
func (i *Instance) Addr() string { return net.JoinHostPort(i.Host, strconv.Itoa(i.Port)) }

// DSN returns a URL connection string for the superuser "postgres" (with the
// cluster's password, if any) to database on this instance, sslmode=disable.
func (i *Instance) DSN(database string) string {
	u := url.URL{Scheme: "postgres", Host: i.Addr(), Path: "/" + database, RawQuery: "sslmode=disable"}
	if i.c.opts.Password != "" {
		u.User = url.UserPassword("postgres", i.c.opts.Password)
	} else {
		u.User = url.User("postgres")
	}
	return u.String()
}

// LogPath returns the server log file (inside DataDir).
func (i *Instance) LogPath() string { return filepath.Join(i.DataDir, logFile) }

// PID returns the postmaster's process ID, or 0 when the server is not running.
func (i *Instance) PID() int {
	i.mu.Lock()
	defer i.mu.Unlock()
	if i.proc == nil {
		return 0
	}
	return i.proc.pid
}

// Running reports whether the postmaster process is alive.
func (i *Instance) Running() bool {
	i.mu.Lock()
	p := i.proc
	i.mu.Unlock()
	if p == nil {
		return false
	}
	select {
	case <-p.done:
		return false
	default:
		return true
	}
}

// Start starts the server again after Stop or Kill, on the same port and
// data, and returns once it accepts connections (for a replica: once it is
// in recovery and accepts read-only connections). Starting a running
// instance is a no-op.
func (i *Instance) Start(ctx context.Context) error {
	i.opMu.Lock()
	defer i.opMu.Unlock()
	if i.Running() {
		return nil
	}
	if i.c.isStopped() {
		return fmt.Errorf("pgcluster: %s: the cluster was stopped", i.Name)
	}
	i.cleanupDead()
	return i.start(ctx, false)
}

// Stop shuts the server down (fast shutdown: SIGINT, open transactions are
// rolled back) and waits for every one of its processes to exit. If it has
// not exited after a minute it gets SIGQUIT, then SIGKILL. Stopping a
// stopped instance is a no-op.
func (i *Instance) Stop() error {
	i.opMu.Lock()
	defer i.opMu.Unlock()
	return i.stop(syscall.SIGINT)
}

// Restart is Stop followed by Start.
func (i *Instance) Restart(ctx context.Context) error {
	i.opMu.Lock()
	defer i.opMu.Unlock()
	if err := i.stop(syscall.SIGINT); err != nil {
		return err
	}
	if i.c.isStopped() {
		return fmt.Errorf("pgcluster: %s: the cluster was stopped", i.Name)
	}
	return i.start(ctx, false)
}

// Kill simulates a crash: SIGKILL to the postmaster and to every process it
// had started, and waits until all are gone. Start afterwards runs crash
// recovery. Committed data survives (the OS page cache holds it even with
// fsync=off), except transactions whose commit record had not been written
// yet because of synchronous_commit=off.
func (i *Instance) Kill() error {
	i.opMu.Lock()
	defer i.opMu.Unlock()
	return i.stop(syscall.SIGKILL)
}

// cleanupDead clears the state of a postmaster that died on its own.
func (i *Instance) cleanupDead() {
	i.mu.Lock()
	p := i.proc
	i.mu.Unlock()
	if p != nil {
		_ = i.stop(syscall.SIGKILL)
	}
}

// stop ends the server with sig (SIGINT fast, SIGQUIT immediate, SIGKILL
// crash) and escalates on timeout. Caller holds opMu.
func (i *Instance) stop(sig syscall.Signal) error {
	i.mu.Lock()
	p := i.proc
	i.mu.Unlock()
	if p == nil {
		return nil
	}
	var errs []error
	before := processesIn(i.DataDir)
	p.stopping.Store(true)
	_ = syscall.Kill(p.pid, sig)
	timeout := stopTimeout
	if sig != syscall.SIGINT {
		timeout = 10 * time.Second
	}
	if !waitDone(p.done, timeout) {
		errs = append(errs, fmt.Errorf("pgcluster: %s: postmaster %d did not exit %v after %v; sending SIGQUIT", i.Name, p.pid, sig, timeout))
		_ = syscall.Kill(p.pid, syscall.SIGQUIT)
		if !waitDone(p.done, 10*time.Second) {
			_ = syscall.Kill(p.pid, syscall.SIGKILL)
			<-p.done
		}
	}
	// After a crash the postmaster's children may outlive it for a while;
	// a new postmaster refuses to start while they hold shared memory.
	if err := killAllIn(i.DataDir, before, 10*time.Second); err != nil {
		errs = append(errs, err)
	}
	p.log.Close()
	i.mu.Lock()
	i.proc = nil
	cg := i.cgroup
	i.cgroup = ""
	i.mu.Unlock()
	if cg != "" {
		if err := removeCgroup(cg, 5*time.Second); err != nil {
			errs = append(errs, err)
		}
	}
	if sig == syscall.SIGINT && len(errs) == 0 {
		i.c.log.Info("pgcluster: stopped", "instance", i.Name, "pid", p.pid)
	}
	return errors.Join(errs...)
}

func waitDone(done <-chan struct{}, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-done:
		return true
	case <-t.C:
		return false
	}
}

// start launches the postmaster and waits until it is ready. With
// mayMovePort (only while the cluster starts, before anyone saw the port)
// a port taken between reservation and bind is replaced by another one.
// Caller holds opMu.
func (i *Instance) start(ctx context.Context, mayMovePort bool) error {
	if _, hasDeadline := ctx.Deadline(); !hasDeadline {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, readyTimeout)
		defer cancel()
	}
	for attempt := 0; ; attempt++ {
		err := i.startOnce(ctx)
		if err == nil {
			return nil
		}
		if !mayMovePort || !errors.Is(err, errPortInUse) || attempt >= 3 || ctx.Err() != nil {
			return err
		}
		if perr := i.c.movePort(i); perr != nil {
			return errors.Join(err, perr)
		}
		i.c.log.Warn("pgcluster: port taken, retrying on another", "instance", i.Name, "port", i.Port)
	}
}

var errPortInUse = errors.New("port in use")

func (i *Instance) startOnce(ctx context.Context) error {
	if pids := processesIn(i.DataDir); len(pids) > 0 {
		return fmt.Errorf("pgcluster: %s: processes %v already run in %s (a server left over from an earlier run?): stop them first",
			i.Name, pids, i.DataDir)
	}
	if err := i.writeConfig(); err != nil {
		return err
	}
	if !i.Primary && i.primary.Running() {
		// The slot may be missing after the primary's data was replaced.
		if err := i.ensureSlot(ctx); err != nil {
			return err
		}
	}
	log, err := os.OpenFile(i.LogPath(), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("pgcluster: %s: open log: %w", i.Name, err)
	}
	_ = i.c.user.chown(log.Name())
	from, _ := log.Seek(0, io.SeekEnd)

	cmd := exec.Command(filepath.Join(i.c.bin, "postgres"), "-D", i.DataDir)
	cmd.Stdout, cmd.Stderr = log, log
	cmd.Env = i.c.user.env()
	cmd.Dir = i.DataDir
	// SIGQUIT on parent death is an immediate shutdown: the postmaster
	// takes its children down with it.
	cmd.SysProcAttr = i.c.user.sysProcAttr(syscall.SIGQUIT)
	if err := spawn(cmd); err != nil {
		log.Close()
		return fmt.Errorf("pgcluster: %s: start postgres: %w", i.Name, err)
	}
	p := &process{cmd: cmd, pid: cmd.Process.Pid, done: make(chan struct{}), log: log, logFrom: from}
	go func() {
		p.err = cmd.Wait()
		if !p.stopping.Load() {
			i.c.log.Warn("pgcluster: postgres exited unexpectedly", "instance", i.Name, "pid", p.pid, "status", p.err, "log", i.LogPath())
		}
		close(p.done)
	}()
	i.mu.Lock()
	i.proc = p
	i.mu.Unlock()
	i.c.log.Info("pgcluster: starting", "instance", i.Name, "pid", p.pid, "addr", i.Addr(), "datadir", i.DataDir)

	if i.c.cgroupDir != "" {
		cg, err := createInstanceCgroup(i.c.cgroupDir, i.Name, i.c.opts.CPUQuota)
		if err == nil {
			i.mu.Lock()
			i.cgroup = cg
			i.mu.Unlock()
			err = joinCgroup(cg, p.pid)
		}
		if err != nil {
			_ = i.stop(syscall.SIGQUIT)
			return fmt.Errorf("pgcluster: %s: %w", i.Name, err)
		}
	}
	if i.c.cpusetDir != "" {
		if err := joinCgroup(i.c.cpusetDir, p.pid); err != nil {
			_ = i.stop(syscall.SIGQUIT)
			return fmt.Errorf("pgcluster: %s: %w", i.Name, err)
		}
	}

	if err := i.waitReady(ctx, p); err != nil {
		tail := i.logTail(p.logFrom)
		_ = i.stop(syscall.SIGQUIT)
		if errors.Is(err, errPortInUse) {
			return fmt.Errorf("pgcluster: %s: %w", i.Name, err)
		}
		if strings.Contains(tail, "could not bind") || strings.Contains(tail, "could not create any TCP/IP sockets") {
			return fmt.Errorf("pgcluster: %s: %w: %v\n%s", i.Name, errPortInUse, err, tail)
		}
		return fmt.Errorf("pgcluster: %s: %w\nlog %s:\n%s", i.Name, err, i.LogPath(), tail)
	}
	i.c.log.Info("pgcluster: ready", "instance", i.Name, "pid", p.pid)
	return nil
}

// waitReady polls until the server accepts a connection (and, for a
// replica, reports pg_is_in_recovery()), the process exits, or ctx ends.
func (i *Instance) waitReady(ctx context.Context, p *process) error {
	cfg, err := pgconn.ParseConfig(i.DSN("postgres"))
	if err != nil {
		return err
	}
	delay := 10 * time.Millisecond
	var last error
	for {
		select {
		case <-p.done:
			return fmt.Errorf("postgres exited during startup: %v", p.err)
		default:
		}
		cctx, cancel := context.WithTimeout(ctx, 3*time.Second)
		conn, err := pgconn.ConnectConfig(cctx, cfg)
		if err == nil {
			// The server that answers must be this one: tests run in
			// parallel, and another package's server may hold the port
			// while this postmaster fails to bind it.
			var rows []*pgconn.Result
			rows, err = conn.Exec(cctx, "SELECT current_setting('data_directory'), pg_is_in_recovery()").ReadAll()
			conn.Close(ctx)
			if err == nil && (len(rows) != 1 || len(rows[0].Rows) != 1) {
				err = errors.New("unexpected answer to the readiness query")
			}
			if err == nil {
				dir, recovering := string(rows[0].Rows[0][0]), string(rows[0].Rows[0][1]) == "t"
				if !sameDir(dir, i.DataDir) {
					cancel()
					return fmt.Errorf("%w: %s is answered by the server of %s", errPortInUse, i.Addr(), dir)
				}
				if i.Primary || recovering {
					cancel()
					return nil
				}
				err = errors.New("replica is not in recovery")
			}
		}
		cancel()
		var pgErr *pgconn.PgError
		if errors.As(err, &pgErr) && (pgErr.Code == "28P01" || pgErr.Code == "28000") {
			return fmt.Errorf("authentication failed (a persistent DataDir keeps the password it was created with): %w", err)
		}
		last = err
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("not ready: %w (last error: %v)", ctx.Err(), last)
		case <-p.done:
			t.Stop()
		case <-t.C:
		}
		if delay < 100*time.Millisecond {
			delay *= 2
		}
	}
}

// sameDir reports whether two paths name the same directory.
func sameDir(a, b string) bool {
	if filepath.Clean(a) == filepath.Clean(b) {
		return true
	}
	ra, errA := filepath.EvalSymlinks(a)
	rb, errB := filepath.EvalSymlinks(b)
	return errA == nil && errB == nil && ra == rb
}

// logTail returns up to 4 KiB of what this run wrote to the server log.
func (i *Instance) logTail(from int64) string {
	f, err := os.Open(i.LogPath())
	if err != nil {
		return ""
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return ""
	}
	if st.Size()-from > 4096 {
		from = st.Size() - 4096
	}
	b := make([]byte, st.Size()-from)
	n, _ := f.ReadAt(b, from)
	return string(b[:n])
}

// socketDir is where the server puts its Unix socket: the data directory
// when the socket path fits in sun_path (107 bytes), else a short temp dir.
// SocketDir is the directory of the server's Unix-domain socket
// (.s.PGSQL.PORT; libpq's host=DIR). Connections there are trusted.
func (i *Instance) SocketDir() (string, error) { return i.socketDir() }

func (i *Instance) socketDir() (string, error) {
	if len(i.DataDir)+len("/.s.PGSQL.65535") < 107 {
		return i.DataDir, nil
	}
	i.mu.Lock()
	defer i.mu.Unlock()
	if i.sockDir != "" {
		return i.sockDir, nil
	}
	d, err := os.MkdirTemp("", "pgs-")
	if err != nil {
		return "", err
	}
	if err := os.Chmod(d, 0o755); err != nil {
		return "", err
	}
	if err := i.c.user.chown(d); err != nil {
		return "", err
	}
	i.sockDir = d
	return d, nil
}

// writeConfig (re)writes pgcluster.conf and pg_hba.conf; they are
// regenerated at every start so ports, paths and Options apply to reused
// data directories too.
func (i *Instance) writeConfig() error {
	sock, err := i.socketDir()
	if err != nil {
		return fmt.Errorf("pgcluster: %s: socket dir: %w", i.Name, err)
	}
	o := i.c.opts
	set := map[string]string{
		"listen_addresses":          o.Host,
		"port":                      strconv.Itoa(i.Port),
		"unix_socket_directories":   sock,
		"wal_level":                 "logical",
		"max_wal_senders":           "10",
		"max_replication_slots":     "10",
		"max_prepared_transactions": "100",
		"max_connections":           "600",
		"hot_standby":               "on",
		"hot_standby_feedback":      "on",
		"shared_buffers":            "32MB",
		"logging_collector":         "off",
		"password_encryption":       "scram-sha-256",
	}
	if i.c.temp {
		// Throwaway data: trade durability for speed. A short WAL writer
		// delay keeps asynchronous commits reaching replicas quickly.
		set["fsync"] = "off"
		set["synchronous_commit"] = "off"
		set["full_page_writes"] = "off"
		set["wal_writer_delay"] = "10ms"
	}
	// A replica retries a lost primary connection this often (default 5s):
	// tests restart primaries and expect replicas back promptly.
	set["wal_retrieve_retry_interval"] = "1s"
	if i.c.temp {
		set["wal_retrieve_retry_interval"] = "100ms"
	}
	if !i.Primary {
		pw := ""
		if o.Password != "" {
			pw = " password=" + conninfoQuote(o.Password)
		}
		set["primary_conninfo"] = fmt.Sprintf("host=%s port=%d user=postgres%s application_name=%s",
			conninfoQuote(i.primary.Host), i.primary.Port, pw, conninfoQuote(i.Name))
		set["primary_slot_name"] = i.slot
	}
	for k, v := range o.Settings {
		set[k] = v
	}
	keys := make([]string, 0, len(set))
	for k := range set {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	b.WriteString("# Written by pgcluster at every start; edits here are overwritten.\n")
	b.WriteString("# Use ALTER SYSTEM (postgresql.auto.conf) or Options.Settings instead.\n")
	for _, k := range keys {
		fmt.Fprintf(&b, "%s = %s\n", k, confQuote(set[k]))
	}
	if err := i.c.user.writeFile(filepath.Join(i.DataDir, confFile), []byte(b.String()), 0o600); err != nil {
		return fmt.Errorf("pgcluster: %s: %w", i.Name, err)
	}
	method := "trust"
	if o.Password != "" {
		method = "scram-sha-256"
	}
	var h strings.Builder
	h.WriteString("# Written by pgcluster at every start.\n")
	h.WriteString("local all all trust\nlocal replication all trust\n")
	for _, src := range []string{"127.0.0.1/32", "::1/128", "samehost"} {
		fmt.Fprintf(&h, "host all all %s %s\nhost replication all %s %s\n", src, method, src, method)
	}
	if err := i.c.user.writeFile(filepath.Join(i.DataDir, "pg_hba.conf"), []byte(h.String()), 0o600); err != nil {
		return fmt.Errorf("pgcluster: %s: %w", i.Name, err)
	}
	return nil
}

// confQuote quotes a postgresql.conf value (every GUC accepts quotes; the
// file's parser treats backslash as an escape inside them).
func confQuote(v string) string {
	r := strings.NewReplacer(`\`, `\\`, `'`, `''`)
	return "'" + r.Replace(v) + "'"
}

// conninfoQuote quotes a libpq keyword/value connection string value.
func conninfoQuote(v string) string {
	r := strings.NewReplacer(`\`, `\\`, `'`, `\'`)
	return "'" + r.Replace(v) + "'"
}

// ensureSlot creates the replica's physical slot on its primary if missing.
func (i *Instance) ensureSlot(ctx context.Context) error {
	conn, err := pgconn.Connect(ctx, i.primary.DSN("postgres"))
	if err != nil {
		return fmt.Errorf("pgcluster: %s: connect to primary: %w", i.Name, err)
	}
	defer conn.Close(context.Background())
	sql := fmt.Sprintf(`SELECT pg_create_physical_replication_slot('%s', true)
		WHERE NOT EXISTS (SELECT 1 FROM pg_replication_slots WHERE slot_name = '%s')`, i.slot, i.slot)
	if _, err := conn.Exec(ctx, sql).ReadAll(); err != nil {
		return fmt.Errorf("pgcluster: %s: create replication slot %s: %w", i.Name, i.slot, err)
	}
	return nil
}

// Promote turns a running replica into a primary (pg_promote) and waits
// until it accepts writes. The Primary field keeps describing the role the
// instance was started with; the shard's other replicas keep following the
// old primary. For failover tests: stop or kill the old primary first.
func (i *Instance) Promote(ctx context.Context) error {
	i.opMu.Lock()
	defer i.opMu.Unlock()
	if !i.Running() {
		return fmt.Errorf("pgcluster: %s is not running", i.Name)
	}
	conn, err := pgconn.Connect(ctx, i.DSN("postgres"))
	if err != nil {
		return fmt.Errorf("pgcluster: %s: %w", i.Name, err)
	}
	defer conn.Close(context.Background())
	res, err := conn.Exec(ctx, "SELECT pg_promote(true, 60)::text, pg_is_in_recovery()::text").ReadAll()
	if err != nil {
		return fmt.Errorf("pgcluster: %s: promote: %w", i.Name, err)
	}
	if row := res[0].Rows[0]; string(row[0]) != "true" || string(row[1]) != "false" {
		return fmt.Errorf("pgcluster: %s: promote did not finish (pg_promote=%s, in recovery=%s)", i.Name, row[0], row[1])
	}
	i.c.log.Info("pgcluster: promoted", "instance", i.Name)
	return nil
}
