package proxy

import (
	"context"
	"net"
	"time"
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
