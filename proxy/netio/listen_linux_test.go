//go:build linux

package netio

import (
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

func listenRaw(t *testing.T, network, addr string) *Listener {
	t.Helper()
	ln, err := net.Listen(network, addr)
	if err != nil {
		t.Fatal(err)
	}
	var rl *Listener
	switch l := ln.(type) {
	case *net.TCPListener:
		rl, err = NewListener(l)
	case *net.UnixListener:
		rl, err = NewListener(l)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rl.Close() })
	return rl
}

// A connection from Listener.Accept behaves like a net.TCPConn wrapped by
// Wrap: addresses, data both ways, deadlines, end of stream, Close.
func TestListenerAcceptedConn(t *testing.T) {
	unixPath := filepath.Join(t.TempDir(), "s")
	for _, tc := range []struct{ network, addr string }{{"tcp4", "127.0.0.1:0"}, {"tcp6", "[::1]:0"}, {"unix", unixPath}} {
		t.Run(tc.network, func(t *testing.T) {
			if tc.network != "unix" {
				probe, err := net.Listen(tc.network, tc.addr)
				if err != nil {
					t.Fatalf("%s loopback not available: %v", tc.network, err)
				}
				probe.Close()
			}
			ln := listenRaw(t, tc.network, tc.addr)
			client, c := dialAccept(t, ln)
			if _, ok := c.(*Conn); !ok {
				t.Fatalf("Accept returned %T, want *netio.Conn", c)
			}
			if Wrap(c) != c {
				t.Fatal("Wrap of an accepted connection wrapped it again")
			}
			if got, want := c.RemoteAddr().String(), client.LocalAddr().String(); got != want {
				t.Errorf("RemoteAddr = %s, want %s", got, want)
			}
			if got, want := c.LocalAddr().String(), client.RemoteAddr().String(); got != want {
				t.Errorf("LocalAddr = %s, want %s", got, want)
			}

			if _, err := client.Write([]byte("ping")); err != nil {
				t.Fatal(err)
			}
			buf := make([]byte, 16)
			n, err := io.ReadFull(c, buf[:4])
			if err != nil || string(buf[:n]) != "ping" {
				t.Fatalf("read %q, %v", buf[:n], err)
			}
			if _, err := c.Write([]byte("pong")); err != nil {
				t.Fatal(err)
			}
			if n, err := io.ReadFull(client, buf[:4]); err != nil || string(buf[:n]) != "pong" {
				t.Fatalf("client read %q, %v", buf[:n], err)
			}

			c.SetReadDeadline(time.Now().Add(20 * time.Millisecond))
			_, err = c.Read(buf)
			var ne net.Error
			if !errors.As(err, &ne) || !ne.Timeout() {
				t.Fatalf("read past the deadline: %v, want a timeout net.Error", err)
			}
			c.SetReadDeadline(time.Time{})

			client.Close()
			if _, err := c.Read(buf); err != io.EOF {
				t.Fatalf("read after the peer closed: %v, want io.EOF", err)
			}
			if err := c.Close(); err != nil {
				t.Fatalf("Close: %v", err)
			}
			if _, err := c.Read(buf); !errors.Is(err, net.ErrClosed) {
				t.Fatalf("read after Close: %v, want net.ErrClosed", err)
			}
			if err := c.Close(); !errors.Is(err, net.ErrClosed) {
				t.Fatalf("second Close: %v, want net.ErrClosed", err)
			}
		})
	}
}

// Close ends a waiting Accept with net.ErrClosed; a second Close says so.
func TestListenerCloseEndsAccept(t *testing.T) {
	ln := listenRaw(t, "tcp", "127.0.0.1:0")
	done := make(chan error, 1)
	go func() {
		_, err := ln.Accept()
		done <- err
	}()
	if err := ln.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if !errors.Is(err, net.ErrClosed) {
			t.Fatalf("Accept after Close: %v, want net.ErrClosed", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Accept still waiting 5 s after Close")
	}
	if err := ln.Close(); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("second Close: %v", err)
	}
	if _, err := net.Dial("tcp", ln.Addr().String()); err == nil {
		t.Fatal("the socket still accepts connections after Close")
	}
}

// A Unix-domain listener keeps its socket file while it listens (taking
// over the net.UnixListener does not remove it) and removes it on Close.
func TestUnixListenerSocketFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "s")
	ln := listenRaw(t, "unix", path)
	if fi, err := os.Lstat(path); err != nil || fi.Mode()&os.ModeSocket == 0 {
		t.Fatalf("socket file while listening: %v, %v", fi, err)
	}
	client, c := dialAccept(t, ln)
	if got := c.RemoteAddr(); got.Network() != "unix" {
		t.Errorf("RemoteAddr %#v, want a unix address", got)
	}
	client.Write([]byte("x"))
	var b [1]byte
	if _, err := io.ReadFull(c, b[:]); err != nil || b[0] != 'x' {
		t.Fatalf("read %q, %v", b[:], err)
	}
	if err := ln.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(path); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("socket file after Close: %v", err)
	}
	var oe *net.OpError
	if _, err := ln.Accept(); !errors.As(err, &oe) || oe.Net != "unix" || !errors.Is(err, net.ErrClosed) {
		t.Fatalf("Accept after Close: %v", err)
	}
}

// Accepted sockets take TCP_NODELAY from the listening socket, which is
// why Accept does not set it.
func TestListenerInheritsNoDelay(t *testing.T) {
	lc := net.ListenConfig{Control: func(_, _ string, c syscall.RawConn) error {
		var serr error
		c.Control(func(fd uintptr) { serr = syscall.SetsockoptInt(int(fd), syscall.IPPROTO_TCP, syscall.TCP_NODELAY, 1) })
		return serr
	}}
	tl, err := lc.Listen(t.Context(), "tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ln, err := NewListener(tl.(*net.TCPListener))
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	_, c := dialAccept(t, ln)
	raw, _ := c.(syscall.Conn).SyscallConn()
	raw.Control(func(fd uintptr) {
		if v, err := syscall.GetsockoptInt(int(fd), syscall.IPPROTO_TCP, syscall.TCP_NODELAY); err != nil || v != 1 {
			t.Errorf("TCP_NODELAY = %d (%v), want 1", v, err)
		}
	})
}

// dialAccept connects a client to ln and accepts it; both are closed when
// the test ends.
func dialAccept(t *testing.T, ln net.Listener) (client, accepted net.Conn) {
	t.Helper()
	client, err := net.Dial(ln.Addr().Network(), ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Close() })
	accepted, err = ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { accepted.Close() })
	return client, accepted
}
