//go:build linux

package netio

import (
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"
)

// Listener accepts TCP or Unix-domain connections with accept4(2) made as
// a raw system call and returns them as *Conn, ready for raw reads and
// writes.
//
// net.TCPListener.Accept costs three system calls through syscall.Syscall
// per connection (accept4, setsockopt TCP_NODELAY, plus getsockname), and
// each one that finds the runtime idle wakes sysmon, which then naps every
// 20 µs for a while (see the package documentation). Here accept4 is raw,
// the socket options come from the listening socket (Linux copies
// TCP_NODELAY and keepalive settings to accepted sockets, so the listener
// must have them: see the proxy's Listen), and the local address is only
// looked up when asked for. The accepted descriptor enters Go's netpoller
// through os.NewFile, whose F_GETFL and epoll registration are the
// runtime's own raw calls; Close works as for any *os.File.
//
// A net.TCPListener's RawConn refuses Read, so the listening socket is
// held as the *os.File of a duplicate of its descriptor (non-blocking, in
// the netpoller), which Accept waits on.
//
// A Unix-domain connection's local address is the listener's socket path
// and its peer is unnamed (as net.UnixListener reports them), so no address
// is looked up at all.
type Listener struct {
	f       *os.File
	raw     syscall.RawConn
	addr    net.Addr
	network string // "tcp" or "unix"
	unlink  string // a Unix socket file Close removes ("" for none)
	closed  atomic.Bool

	mu    sync.Mutex // one Accept at a time uses the state below
	afn   func(fd uintptr) bool
	nfd   int
	errno syscall.Errno
	peer  rawSockaddr
}

// NewListener takes over ln's socket (a *net.TCPListener or a
// *net.UnixListener): ln itself is closed (the socket stays open through
// the duplicate), and the Listener's Close closes it and, for a Unix
// socket ln would have removed on Close, removes the socket file.
func NewListener(ln interface {
	net.Listener
	File() (*os.File, error)
}) (*Listener, error) {
	addr := ln.Addr()
	l := &Listener{addr: addr, network: "tcp"}
	if ul, ok := ln.(*net.UnixListener); ok {
		l.network = "unix"
		// net.Listen("unix") listeners remove their file on Close; the
		// file must outlive ln's Close, so Close here removes it instead.
		if ua, ok := addr.(*net.UnixAddr); ok && ua.Name != "" && ua.Name[0] != '@' {
			l.unlink = ua.Name
		}
		ul.SetUnlinkOnClose(false)
	}
	f, err := ln.File()
	ln.Close()
	if err != nil {
		l.removeFile()
		return nil, err
	}
	raw, err := f.SyscallConn()
	if err != nil {
		f.Close()
		l.removeFile()
		return nil, err
	}
	l.f, l.raw = f, raw
	l.afn = l.acceptOnce
	return l, nil
}

// SyscallConn returns the listening socket's raw connection (for socket
// options; Accept uses its Read).
func (l *Listener) SyscallConn() (syscall.RawConn, error) { return l.raw, nil }

// Addr is the listening address.
func (l *Listener) Addr() net.Addr { return l.addr }

// Close stops listening; a waiting Accept returns an error that is
// net.ErrClosed.
func (l *Listener) Close() error {
	if l.closed.Swap(true) {
		return &net.OpError{Op: "close", Net: l.network, Addr: l.addr, Err: net.ErrClosed}
	}
	err := l.f.Close()
	l.removeFile()
	if err != nil {
		return &net.OpError{Op: "close", Net: l.network, Addr: l.addr, Err: err}
	}
	return nil
}

// removeFile removes the Unix socket file the Listener owns.
func (l *Listener) removeFile() {
	if l.unlink != "" {
		os.Remove(l.unlink)
	}
}

// Accept waits for the next connection. Errors look like
// net.TCPListener's: *net.OpError, errors.Is net.ErrClosed after Close,
// Temporary for a transient accept4 failure (EMFILE, ENFILE, ENOBUFS…).
func (l *Listener) Accept() (net.Conn, error) {
	l.mu.Lock()
	l.nfd, l.errno = -1, 0
	err := l.raw.Read(l.afn)
	nfd, errno, addr := l.nfd, l.errno, l.peer
	l.mu.Unlock()
	if err == nil && errno != 0 {
		err = os.NewSyscallError("accept4", errno)
	}
	if err != nil {
		if l.closed.Load() {
			err = net.ErrClosed
		}
		return nil, &net.OpError{Op: "accept", Net: l.network, Addr: l.addr, Err: err}
	}
	f := os.NewFile(uintptr(nfd), l.network)
	fraw, err := f.SyscallConn()
	if err != nil { // not reached: f is valid
		f.Close()
		return nil, &net.OpError{Op: "accept", Net: l.network, Addr: l.addr, Err: err}
	}
	s := &socket{f: f, remoteRaw: addr}
	if l.network == "unix" {
		s.unixLocal = l.addr
	}
	s.raw = socketRaw{RawConn: fraw, s: s}
	return wrapRaw(s, &s.raw), nil
}

// acceptOnce is the RawConn.Read callback: accept4(2); false (wait for a
// connection) on EAGAIN.
func (l *Listener) acceptOnce(fd uintptr) bool {
	for {
		l.peer.len = uint32(unsafe.Sizeof(l.peer.sa))
		r, _, e := syscall.RawSyscall6(syscall.SYS_ACCEPT4, fd,
			uintptr(unsafe.Pointer(&l.peer.sa)), uintptr(unsafe.Pointer(&l.peer.len)),
			syscall.SOCK_NONBLOCK|syscall.SOCK_CLOEXEC, 0, 0)
		switch e {
		case 0:
			l.nfd = int(r)
			return true
		case syscall.EINTR, syscall.ECONNABORTED: // like net: a connection reset before accept is skipped
			continue
		case syscall.EAGAIN:
			return false
		default:
			l.errno = e
			return true
		}
	}
}

// rawSockaddr is the peer address accept4 filled in. A TCP peer's
// address is a sockaddr_in or sockaddr_in6, so the storage is the size of
// the larger (accept4 truncates anything longer, such as a Unix peer's
// path, which is not used).
type rawSockaddr struct {
	sa  syscall.RawSockaddrInet6
	len uint32
}

// tcpAddr converts a sockaddr_in or sockaddr_in6; nil for anything else.
func (a *rawSockaddr) tcpAddr() *net.TCPAddr {
	switch a.sa.Family {
	case syscall.AF_INET:
		sa := (*syscall.RawSockaddrInet4)(unsafe.Pointer(&a.sa))
		p := (*[2]byte)(unsafe.Pointer(&sa.Port))
		return &net.TCPAddr{IP: net.IPv4(sa.Addr[0], sa.Addr[1], sa.Addr[2], sa.Addr[3]), Port: int(p[0])<<8 | int(p[1])}
	case syscall.AF_INET6:
		sa := &a.sa
		p := (*[2]byte)(unsafe.Pointer(&sa.Port))
		ip := make(net.IP, net.IPv6len)
		copy(ip, sa.Addr[:])
		zone := ""
		if sa.Scope_id != 0 {
			if ifi, err := net.InterfaceByIndex(int(sa.Scope_id)); err == nil {
				zone = ifi.Name
			}
		}
		return &net.TCPAddr{IP: ip, Port: int(p[0])<<8 | int(p[1]), Zone: zone}
	}
	return nil
}

// socket is an accepted TCP or Unix-domain connection held as an
// *os.File. It is the net.Conn inside the *Conn that Listener.Accept
// returns; its own Read and Write are used only by callers that unwrap it.
type socket struct {
	f         *os.File
	raw       socketRaw
	remoteRaw rawSockaddr
	unixLocal net.Addr // the listener's socket path; nil for TCP
	closed    atomic.Bool

	remoteOnce, localOnce sync.Once
	remote, local         net.Addr
}

// LocalAddr is looked up (getsockname) on first use; a Unix-domain
// connection's is the listener's path.
func (s *socket) LocalAddr() net.Addr {
	if s.unixLocal != nil {
		return s.unixLocal
	}
	s.localOnce.Do(func() {
		s.local = &net.TCPAddr{}
		s.raw.RawConn.Control(func(fd uintptr) {
			if sa, err := syscall.Getsockname(int(fd)); err == nil {
				switch sa := sa.(type) {
				case *syscall.SockaddrInet4:
					s.local = &net.TCPAddr{IP: net.IPv4(sa.Addr[0], sa.Addr[1], sa.Addr[2], sa.Addr[3]), Port: sa.Port}
				case *syscall.SockaddrInet6:
					s.local = &net.TCPAddr{IP: append(net.IP(nil), sa.Addr[:]...), Port: sa.Port}
				}
			}
		})
	})
	return s.local
}

// RemoteAddr is the address accept4 reported; a Unix-domain peer is
// unnamed.
func (s *socket) RemoteAddr() net.Addr {
	s.remoteOnce.Do(func() {
		if s.unixLocal != nil {
			s.remote = &net.UnixAddr{Name: "@", Net: "unix"} // as net.UnixListener reports it
		} else if ra := s.remoteRaw.tcpAddr(); ra != nil {
			s.remote = ra
		} else {
			s.remote = &net.TCPAddr{}
		}
	})
	return s.remote
}

func (s *socket) Read(b []byte) (int, error) {
	n, err := s.f.Read(b)
	if err == io.EOF {
		return n, err
	}
	return n, s.opError("read", err)
}

func (s *socket) Write(b []byte) (int, error) {
	n, err := s.f.Write(b)
	return n, s.opError("write", err)
}

// Close closes the descriptor; a second Close reports net.ErrClosed.
func (s *socket) Close() error {
	if s.closed.Swap(true) {
		return s.opError("close", net.ErrClosed)
	}
	return s.opError("close", s.f.Close())
}

func (s *socket) SetDeadline(t time.Time) error     { return s.opError("set", s.f.SetDeadline(t)) }
func (s *socket) SetReadDeadline(t time.Time) error { return s.opError("set", s.f.SetReadDeadline(t)) }
func (s *socket) SetWriteDeadline(t time.Time) error {
	return s.opError("set", s.f.SetWriteDeadline(t))
}

// SyscallConn returns the descriptor's raw connection (errors as net's).
func (s *socket) SyscallConn() (syscall.RawConn, error) { return &s.raw, nil }

// opError turns an *os.File error into what a net.TCPConn would return:
// *net.OpError around the cause, net.ErrClosed once the socket is closed.
func (s *socket) opError(op string, err error) error {
	if err == nil {
		return nil
	}
	var pe *os.PathError
	if errors.As(err, &pe) {
		err = pe.Err
	}
	if s.closed.Load() && !errors.Is(err, os.ErrDeadlineExceeded) {
		err = net.ErrClosed
	}
	network := "tcp"
	if s.unixLocal != nil {
		network = "unix"
	}
	return &net.OpError{Op: op, Net: network, Source: s.LocalAddr(), Addr: s.RemoteAddr(), Err: err}
}

// socketRaw is the *os.File's RawConn with net's error for a closed
// socket (the file's own is "use of closed file").
type socketRaw struct {
	syscall.RawConn
	s *socket
}

func (r *socketRaw) Read(f func(uintptr) bool) error  { return r.err(r.RawConn.Read(f)) }
func (r *socketRaw) Write(f func(uintptr) bool) error { return r.err(r.RawConn.Write(f)) }
func (r *socketRaw) Control(f func(uintptr)) error    { return r.err(r.RawConn.Control(f)) }

func (r *socketRaw) err(err error) error {
	if err != nil && r.s.closed.Load() && !errors.Is(err, os.ErrDeadlineExceeded) {
		return net.ErrClosed
	}
	return err
}
