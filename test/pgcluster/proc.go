package pgcluster

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// BinDir finds the PostgreSQL server binaries: `pg_config --bindir` when that
// directory holds initdb and postgres, else the highest-versioned
// /usr/lib/postgresql/*/bin that does. The error says how to install them.
func BinDir() (string, error) {
	if out, err := exec.Command("pg_config", "--bindir").Output(); err == nil {
		if d := strings.TrimSpace(string(out)); hasServer(d) {
			return d, nil
		}
	}
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	sort.Slice(dirs, func(a, b int) bool { return versionOf(dirs[a]) > versionOf(dirs[b]) })
	for _, d := range dirs {
		if hasServer(d) {
			return d, nil
		}
	}
	return "", errors.New("pgcluster: PostgreSQL server binaries (initdb, postgres) not found via `pg_config --bindir` " +
		"or in /usr/lib/postgresql/*/bin: install PostgreSQL >= 15 server packages " +
		"(Debian: apt-get install postgresql; or run `make pg`)")
}

func hasServer(dir string) bool {
	for _, b := range []string{"initdb", "postgres"} {
		st, err := os.Stat(filepath.Join(dir, b))
		if err != nil || st.IsDir() || st.Mode()&0o111 == 0 {
			return false
		}
	}
	return true
}

// versionOf returns the numeric major version in /usr/lib/postgresql/<v>/bin.
func versionOf(binDir string) float64 {
	v, err := strconv.ParseFloat(filepath.Base(filepath.Dir(binDir)), 64)
	if err != nil {
		return -1
	}
	return v
}

// serverMajor runs `postgres --version` and returns the major version.
func serverMajor(binDir string) (int, error) {
	out, err := exec.Command(filepath.Join(binDir, "postgres"), "--version").Output()
	if err != nil {
		return 0, fmt.Errorf("pgcluster: %s/postgres --version: %w", binDir, err)
	}
	// "postgres (PostgreSQL) 15.8 (Debian 15.8-0+deb12u1)"
	f := strings.Fields(string(out))
	if len(f) < 3 {
		return 0, fmt.Errorf("pgcluster: cannot parse %q", out)
	}
	major, err := strconv.Atoi(strings.SplitN(f[2], ".", 2)[0])
	if err != nil {
		return 0, fmt.Errorf("pgcluster: cannot parse version in %q", out)
	}
	return major, nil
}

// osUser is who the servers run as. When the Go process runs as root the
// servers run as the "postgres" OS user (PostgreSQL refuses to run as root);
// otherwise they run as the current user and cred is nil.
type osUser struct {
	cred *syscall.Credential // nil: run as ourselves
	uid  int
	gid  int
	home string
}

func lookupOSUser() (osUser, error) {
	if os.Geteuid() != 0 {
		home, _ := os.UserHomeDir()
		return osUser{uid: os.Geteuid(), gid: os.Getegid(), home: home}, nil
	}
	u, err := user.Lookup("postgres")
	if err != nil {
		return osUser{}, fmt.Errorf("pgcluster: running as root, so servers must run as the postgres OS user, but: %w "+
			"(installing the postgresql package creates it)", err)
	}
	uid, err1 := strconv.Atoi(u.Uid)
	gid, err2 := strconv.Atoi(u.Gid)
	if err1 != nil || err2 != nil {
		return osUser{}, fmt.Errorf("pgcluster: unexpected uid/gid %q/%q for postgres", u.Uid, u.Gid)
	}
	return osUser{
		cred: &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)},
		uid:  uid, gid: gid, home: u.HomeDir,
	}, nil
}

// chown gives path to the server user (a no-op when not root).
func (u osUser) chown(path string) error {
	if u.cred == nil {
		return nil
	}
	return os.Lchown(path, u.uid, u.gid)
}

// writeFile writes a file owned by the server user.
func (u osUser) writeFile(path string, data []byte, mode os.FileMode) error {
	if err := os.WriteFile(path, data, mode); err != nil {
		return err
	}
	return u.chown(path)
}

// env is the environment for server processes: no PG* variables of ours leak
// into the tools, the C locale, and the server user's home.
func (u osUser) env(extra ...string) []string {
	path := os.Getenv("PATH")
	if path == "" {
		path = "/usr/local/bin:/usr/bin:/bin"
	}
	env := []string{"PATH=" + path, "LANG=C", "LC_ALL=C", "HOME=" + u.home}
	return append(env, extra...)
}

// sysProcAttr builds the attributes every child gets: its own process group
// (so a terminal's Ctrl-C reaches only the Go process, which stops servers
// in order), the server user's credentials, and a parent-death signal.
// Go applies Pdeathsig after the credential change, so it survives setuid.
func (u osUser) sysProcAttr(deathSig syscall.Signal) *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: deathSig, Credential: u.cred}
}

// The parent-death signal fires when the *thread* that forked the child
// exits, not the process. Go may retire threads, so every child is forked
// from one goroutine locked to an OS thread that never exits.
var (
	spawnOnce sync.Once
	spawnReqs chan spawnReq
)

type spawnReq struct {
	cmd *exec.Cmd
	res chan error
}

func spawn(cmd *exec.Cmd) error {
	spawnOnce.Do(func() {
		spawnReqs = make(chan spawnReq)
		go func() {
			runtime.LockOSThread() // never unlocked: the thread lives as long as the process
			for r := range spawnReqs {
				r.res <- r.cmd.Start()
			}
		}()
	})
	r := spawnReq{cmd: cmd, res: make(chan error, 1)}
	spawnReqs <- r
	return <-r.res
}

// runTool runs a short-lived PostgreSQL program (initdb, pg_basebackup) as
// the server user and returns its combined output. Cancelling ctx kills it.
func (u osUser) runTool(ctx context.Context, env []string, name string, args ...string) ([]byte, error) {
	cmd := exec.Command(name, args...)
	var out lockedBuffer
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.Env = env
	cmd.Dir = "/"
	cmd.SysProcAttr = u.sysProcAttr(syscall.SIGKILL)
	cmd.WaitDelay = 10 * time.Second // a grandchild left holding the output pipe does not block Wait for ever
	if err := spawn(cmd); err != nil {
		return nil, fmt.Errorf("pgcluster: start %s: %w", filepath.Base(name), err)
	}
	done := make(chan struct{})
	go func() {
		select {
		case <-ctx.Done():
			// The whole process group (Setpgid): pg_basebackup -X stream
			// forks a WAL streamer that holds the output pipe open, and
			// Wait would wait for it.
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		case <-done:
		}
	}()
	err := cmd.Wait()
	close(done)
	if err != nil {
		if ctx.Err() != nil {
			err = ctx.Err()
		}
		return out.Bytes(), fmt.Errorf("pgcluster: %s %s: %w\n%s", filepath.Base(name), strings.Join(args, " "), err, out.Bytes())
	}
	return out.Bytes(), nil
}

type lockedBuffer struct {
	mu  sync.Mutex
	buf []byte
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.buf = append(b.buf, p...)
	return len(p), nil
}

func (b *lockedBuffer) Bytes() []byte {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]byte(nil), b.buf...)
}

// processesIn returns the live (non-zombie) processes whose working
// directory is dir. Every PostgreSQL server process chdirs to its data
// directory, so this finds a postmaster and all its children, including
// children orphaned by a killed postmaster.
func processesIn(dir string) []int {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	var pids []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		cwd, err := os.Readlink("/proc/" + e.Name() + "/cwd")
		if err != nil || cwd != dir {
			continue
		}
		if alive(pid) {
			pids = append(pids, pid)
		}
	}
	return pids
}

// alive reports whether pid exists and is not a zombie.
func alive(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	// pid (comm) S ...; comm may contain spaces and parentheses.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 || i+2 >= len(s) {
		return false
	}
	return s[i+2] != 'Z' && s[i+2] != 'X'
}

// childrenOf returns the live processes whose parent is pid.
func childrenOf(pid int) []int {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	var kids []int
	for _, e := range ents {
		p, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		s := string(b)
		i := strings.LastIndexByte(s, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(s[i+1:]) // state ppid ...
		if len(f) >= 2 && f[1] == strconv.Itoa(pid) && f[0] != "Z" {
			kids = append(kids, p)
		}
	}
	return kids
}

// killAllIn SIGKILLs every process working in dir and waits until they are
// gone (or zombies) or the deadline passes. An exiting process loses its
// cwd before it stops running, so the PIDs seen (and the known ones, listed
// before the postmaster was signalled) are also waited for.
func killAllIn(dir string, known []int, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	seen := map[int]bool{}
	for _, p := range known {
		seen[p] = true
	}
	for {
		var left []int
		in := processesIn(dir)
		for _, p := range in {
			seen[p] = true
		}
		for p := range seen {
			if alive(p) {
				left = append(left, p)
			}
		}
		if len(left) == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("pgcluster: processes %v in %s did not exit", left, dir)
		}
		for _, p := range in { // not left: a PID that went away may be reused
			_ = syscall.Kill(p, syscall.SIGKILL)
		}
		time.Sleep(5 * time.Millisecond) // polling interval, bounded by deadline
	}
}

// ownerFile in a temporary root names the process that created it, so a
// later Start can remove roots left behind by killed processes (their
// servers died with them through the parent-death signal).
const ownerFile = "pgcluster.owner"

// selfOwner identifies this process: PID and start time (PIDs are reused).
func selfOwner() string {
	pid := os.Getpid()
	return fmt.Sprintf("%d %s\n", pid, startTime(pid))
}

// startTime returns field 22 of /proc/<pid>/stat, or "" if pid is gone.
func startTime(pid int) string {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return ""
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return ""
	}
	f := strings.Fields(s[i+1:]) // field 3 (state) is f[0]
	if len(f) < 20 {
		return ""
	}
	return f[19]
}

// removeStaleTempRoots removes $TMPDIR/pgcluster-* directories whose owner
// process is gone and in which no process runs any more.
func removeStaleTempRoots() {
	roots, _ := filepath.Glob(filepath.Join(os.TempDir(), "pgcluster-*"))
	var stale []string
	for _, r := range roots {
		b, err := os.ReadFile(filepath.Join(r, ownerFile))
		if err != nil {
			continue // being created, or not ours to judge
		}
		f := strings.Fields(string(b))
		if len(f) != 2 {
			continue
		}
		pid, err := strconv.Atoi(f[0])
		if err != nil || startTime(pid) == f[1] {
			continue // owner alive
		}
		stale = append(stale, r)
	}
	if len(stale) == 0 {
		return
	}
	busy := map[string]bool{}
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		if _, err := strconv.Atoi(e.Name()); err != nil {
			continue
		}
		cwd, err := os.Readlink("/proc/" + e.Name() + "/cwd")
		if err != nil {
			continue
		}
		for _, r := range stale {
			if strings.HasPrefix(cwd, r+"/") {
				busy[r] = true
			}
		}
	}
	for _, r := range stale {
		if !busy[r] {
			_ = os.RemoveAll(r)
		}
	}
}
