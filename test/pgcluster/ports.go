package pgcluster

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
)

const (
	firstAutoPort = 61000
	lastAutoPort  = 65000
)

// portLock reserves a TCP port across processes: a free listen check plus an
// flock on a file named after the port, held until release. Several test
// binaries run in parallel and all pick ports from 61000 up; the lock keeps
// them from choosing the same one between the check and the server's bind.
// A crashed process drops its locks with its file descriptors.
type portLock struct {
	port int
	f    *os.File
}

func portLockDir() string { return filepath.Join(os.TempDir(), "pgcluster-ports") }

// tryPort locks and checks one port; nil, nil means taken.
func tryPort(host string, port int) (*portLock, error) {
	dir := portLockDir()
	if err := os.MkdirAll(dir, 0o777); err != nil {
		return nil, fmt.Errorf("pgcluster: port lock dir: %w", err)
	}
	// Shared by every user, like /tmp. Only the owner can chmod; others
	// find it already so.
	if st, err := os.Stat(dir); err == nil && st.Mode().Perm() != 0o777 {
		_ = os.Chmod(dir, 0o777|os.ModeSticky)
	}
	// Read-only is enough for flock, so a lock file another user created
	// (mode 0644) can be locked too.
	f, err := os.OpenFile(filepath.Join(dir, strconv.Itoa(port)+".lock"), os.O_CREATE|os.O_RDONLY, 0o644)
	if err != nil {
		return nil, fmt.Errorf("pgcluster: port lock: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, nil
		}
		return nil, fmt.Errorf("pgcluster: port lock: %w", err)
	}
	l, err := net.Listen("tcp", net.JoinHostPort(host, strconv.Itoa(port)))
	if err != nil {
		f.Close()
		return nil, nil
	}
	l.Close()
	return &portLock{port: port, f: f}, nil
}

// reservePort reserves want when want > 0 (error if taken), else the first
// free port from 61000 up that is not in avoid.
func reservePort(host string, want int, avoid map[int]bool) (*portLock, error) {
	if want > 0 {
		pl, err := tryPort(host, want)
		if err != nil {
			return nil, err
		}
		if pl == nil {
			return nil, fmt.Errorf("pgcluster: port %d on %s is in use", want, host)
		}
		return pl, nil
	}
	for p := firstAutoPort; p <= lastAutoPort; p++ {
		if avoid[p] {
			continue
		}
		pl, err := tryPort(host, p)
		if err != nil {
			return nil, err
		}
		if pl != nil {
			return pl, nil
		}
	}
	return nil, fmt.Errorf("pgcluster: no free port in %d-%d on %s", firstAutoPort, lastAutoPort, host)
}

func (p *portLock) release() {
	if p != nil && p.f != nil {
		p.f.Close() // closing drops the flock
		p.f = nil
	}
}
