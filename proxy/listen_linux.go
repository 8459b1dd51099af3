//go:build linux

package proxy

import (
	"errors"
	"net"
	"os/user"
	"strconv"
	"syscall"

	"github.com/shardproxy/shardproxy/proxy/netio"
)

// wrapListener accepts with raw system calls (see netio.Listener); the
// accepted sockets get their options from the listening socket. TCP and
// Unix-domain listeners are wrapped, others returned as they are.
func wrapListener(ln net.Listener) (net.Listener, error) {
	var rl *netio.Listener
	var err error
	switch l := ln.(type) {
	case *net.TCPListener:
		rl, err = netio.NewListener(l)
	case *net.UnixListener:
		rl, err = netio.NewListener(l)
	default:
		return ln, nil
	}
	if err != nil {
		ln.Close()
		return nil, err
	}
	return rl, nil
}

// deferAcceptSeconds is the listening socket's TCP_DEFER_ACCEPT: the
// kernel hands a connection to accept only once the client's first packet
// (SSLRequest or StartupMessage: PostgreSQL clients speak first) is there,
// so the session's first read finds it instead of parking until it comes
// (a read, a netpoller wake-up and often a context switch less per
// connection). A client that sends nothing is accepted after about this
// long anyway and then meets the startup timeout. PgBouncer does the same
// (tcp_defer_accept, 45 s by default on Linux).
const deferAcceptSeconds = 10

// listenConfig sets SO_KEEPALIVE, TCP_KEEPIDLE, TCP_KEEPINTVL, TCP_KEEPCNT
// and TCP_NODELAY on the listening socket (Linux copies them to every
// accepted socket), and TCP_DEFER_ACCEPT, and tells the runtime to leave
// keepalive alone on accept.
func listenConfig() *net.ListenConfig {
	secs := int(ClientKeepAlive.Seconds())
	return &net.ListenConfig{
		KeepAlive: -1,
		Control: func(network, address string, c syscall.RawConn) error {
			var serr error
			err := c.Control(func(fd uintptr) {
				for _, o := range []struct{ level, opt, v int }{
					{syscall.SOL_SOCKET, syscall.SO_KEEPALIVE, 1},
					{syscall.IPPROTO_TCP, syscall.TCP_KEEPIDLE, secs},
					{syscall.IPPROTO_TCP, syscall.TCP_KEEPINTVL, secs},
					{syscall.IPPROTO_TCP, syscall.TCP_KEEPCNT, 9},
					{syscall.IPPROTO_TCP, syscall.TCP_NODELAY, 1},
					{syscall.IPPROTO_TCP, syscall.TCP_DEFER_ACCEPT, deferAcceptSeconds},
				} {
					if serr == nil {
						serr = syscall.SetsockoptInt(int(fd), o.level, o.opt, o.v)
					}
				}
			})
			if err != nil {
				return err
			}
			return serr
		},
	}
}

// peerUser is the OS user name of the process at the other end of the
// Unix-domain socket c (SO_PEERCRED: the credentials it had when it
// connected).
func peerUser(c net.Conn) (string, error) {
	sc, ok := c.(syscall.Conn)
	if !ok || !isUnixSocket(c) {
		return "", errors.New("not a Unix-domain socket connection")
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return "", err
	}
	var cred *syscall.Ucred
	var cerr error
	if err := raw.Control(func(fd uintptr) {
		cred, cerr = syscall.GetsockoptUcred(int(fd), syscall.SOL_SOCKET, syscall.SO_PEERCRED)
	}); err != nil {
		return "", err
	}
	if cerr != nil {
		return "", cerr
	}
	u, err := user.LookupId(strconv.FormatUint(uint64(cred.Uid), 10))
	if err != nil {
		return "", err
	}
	return u.Username, nil
}
