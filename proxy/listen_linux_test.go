//go:build linux

package proxy

import (
	"net"
	"syscall"
	"testing"
)

// TestListenAcceptedSocketOptions: connections accepted from Listen have
// TCP_NODELAY and the client keepalive (inherited from the listening
// socket, not set per connection); the listening socket defers accepting
// until the client's first bytes are there.
func TestListenAcceptedSocketOptions(t *testing.T) {
	ln, err := Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	client, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	// PostgreSQL clients speak first; with TCP_DEFER_ACCEPT the connection
	// is accepted once they have.
	if _, err := client.Write([]byte{0, 0, 0, 8}); err != nil {
		t.Fatal(err)
	}
	c, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	lraw, err := ln.(syscall.Conn).SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	lraw.Control(func(fd uintptr) {
		// Linux stores TCP_DEFER_ACCEPT as a number of SYN-ACK
		// retransmissions and reports the seconds they cover (≥ the value set).
		if got, err := syscall.GetsockoptInt(int(fd), syscall.IPPROTO_TCP, syscall.TCP_DEFER_ACCEPT); err != nil || got < deferAcceptSeconds {
			t.Errorf("listening socket TCP_DEFER_ACCEPT = %d (%v), want ≥ %d", got, err, deferAcceptSeconds)
		}
	})
	raw, err := c.(syscall.Conn).SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	secs := int(ClientKeepAlive.Seconds())
	want := []struct {
		name       string
		level, opt int
		v          int
	}{
		{"TCP_NODELAY", syscall.IPPROTO_TCP, syscall.TCP_NODELAY, 1},
		{"SO_KEEPALIVE", syscall.SOL_SOCKET, syscall.SO_KEEPALIVE, 1},
		{"TCP_KEEPIDLE", syscall.IPPROTO_TCP, syscall.TCP_KEEPIDLE, secs},
		{"TCP_KEEPINTVL", syscall.IPPROTO_TCP, syscall.TCP_KEEPINTVL, secs},
		{"TCP_KEEPCNT", syscall.IPPROTO_TCP, syscall.TCP_KEEPCNT, 9},
	}
	raw.Control(func(fd uintptr) {
		for _, w := range want {
			got, err := syscall.GetsockoptInt(int(fd), w.level, w.opt)
			if err != nil || got != w.v {
				t.Errorf("%s = %d (%v), want %d", w.name, got, err, w.v)
			}
		}
	})
}
