package proxy

import (
	"context"
	"fmt"
	"net"
	"os"
	"time"

	"github.com/shardproxy/shardproxy/proxy/auth"
)

// ClientKeepAlive is the TCP keepalive clients' connections get from
// Listen: probes after this much idle time and then at this interval, nine
// unanswered probes close the connection (Go's own defaults, so a client
// that vanished is noticed within about two and a half minutes).
const ClientKeepAlive = 15 * time.Second

// Listen opens the TCP listener for clients on addr. On Linux the
// keepalive options and TCP_NODELAY are set once on the listening socket,
// which accepted connections inherit, instead of on every accepted
// connection (five system calls per connection, a measurable part of the
// cost of a client that connects for each transaction), and connections
// are accepted with raw system calls (netio.Listener); elsewhere every
// connection gets them as net.Listen does. Accepted connections have
// TCP_NODELAY and the keepalive either way.
func Listen(addr string) (net.Listener, error) {
	ln, err := listenConfig().Listen(context.Background(), "tcp", addr)
	if err != nil {
		return nil, err
	}
	return wrapListener(ln)
}

// ListenUnix opens the Unix-domain socket path for clients (see
// config.Config.UnixSocketPath) with the permission bits mode. A socket
// file left behind by a process that is gone is replaced; one that still
// accepts connections is an error, as is a path that is not a socket.
// Closing the listener removes the file. On Linux connections are
// accepted with raw system calls (netio.Listener).
func ListenUnix(path string, mode os.FileMode) (net.Listener, error) {
	if fi, err := os.Lstat(path); err == nil {
		if fi.Mode()&os.ModeSocket == 0 {
			return nil, fmt.Errorf("%s exists and is not a socket", path)
		}
		if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
			c.Close()
			return nil, fmt.Errorf("another server accepts connections on %s", path)
		}
		if err := os.Remove(path); err != nil {
			return nil, fmt.Errorf("remove stale socket: %w", err)
		}
	}
	ln, err := net.Listen("unix", path)
	if err != nil {
		return nil, err
	}
	if err := os.Chmod(path, mode); err != nil {
		ln.Close()
		return nil, fmt.Errorf("unix_socket_mode: %w", err)
	}
	return wrapListener(ln) // raw accepts on Linux, as Listen's
}

// isUnixSocket reports whether c came in on a Unix-domain socket.
func isUnixSocket(c net.Conn) bool {
	_, ok := c.LocalAddr().(*net.UnixAddr)
	return ok
}

// peerAuthenticate lets user in when the process at the other end of the
// Unix-domain socket c runs as the OS user of that name (SO_PEERCRED), as
// PostgreSQL's peer authentication; otherwise the error is PostgreSQL's
// 28000 "Peer authentication failed".
func peerAuthenticate(c net.Conn, user string) error {
	failed := func(detail string) error {
		return &auth.AuthError{Code: codeInvalidAuthorization, Message: fmt.Sprintf("Peer authentication failed for user %q", user), Detail: detail}
	}
	osUser, err := peerUser(c)
	if err != nil {
		return failed(err.Error())
	}
	if osUser != user {
		return failed(fmt.Sprintf("the client runs as OS user %q", osUser))
	}
	return nil
}
