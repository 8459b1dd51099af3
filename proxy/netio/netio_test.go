package netio

import (
	"bytes"
	"errors"
	"io"
	"net"
	"runtime"
	"testing"
	"time"
)

// pair returns a wrapped client connection and the server side of a real
// loopback TCP connection.
func pair(t *testing.T) (net.Conn, net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			close(accepted)
			return
		}
		accepted <- c
	}()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	s, ok := <-accepted
	if !ok {
		t.Fatal("accept failed")
	}
	w := Wrap(c)
	t.Cleanup(func() { w.Close(); s.Close() })
	return w, s
}

func TestWrapUsesRawPathOnLinux(t *testing.T) {
	w, _ := pair(t)
	_, isRaw := w.(*Conn)
	if want := runtime.GOOS == "linux"; isRaw != want {
		t.Fatalf("Wrap returned %T; raw path expected: %v", w, want)
	}
	if Wrap(w) != w {
		t.Fatal("wrapping twice made a new connection")
	}
}

func TestReadWriteRoundTripAndEOF(t *testing.T) {
	w, s := pair(t)
	if _, err := w.Write([]byte("hello")); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, 5)
	if _, err := io.ReadFull(s, got); err != nil || string(got) != "hello" {
		t.Fatalf("server read %q, %v", got, err)
	}
	if _, err := s.Write([]byte("world")); err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(w, got); err != nil || string(got) != "world" {
		t.Fatalf("client read %q, %v", got, err)
	}
	s.Close()
	if n, err := w.Read(got); n != 0 || err != io.EOF {
		t.Fatalf("read after peer close: %d, %v; want 0, io.EOF", n, err)
	}
}

// A write larger than the socket buffers waits for the peer to read
// (EAGAIN → netpoller) and arrives complete and in order.
func TestLargeWriteWaitsForReader(t *testing.T) {
	w, s := pair(t)
	big := bytes.Repeat([]byte("0123456789abcdef"), 1<<18) // 4 MiB
	done := make(chan error, 1)
	go func() {
		_, err := w.Write(big)
		done <- err
	}()
	got := make([]byte, len(big))
	if _, err := io.ReadFull(s, got); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, big) {
		t.Fatal("data corrupted")
	}
}

func TestReadDeadlineIsTimeout(t *testing.T) {
	w, _ := pair(t)
	w.SetReadDeadline(time.Now().Add(20 * time.Millisecond))
	_, err := w.Read(make([]byte, 1))
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("read past deadline: %v; want a net.Error with Timeout()", err)
	}
	// The connection stays usable once the deadline is cleared.
	w.SetReadDeadline(time.Time{})
}

func TestCloseWakesBlockedRead(t *testing.T) {
	w, _ := pair(t)
	done := make(chan error, 1)
	go func() {
		_, err := w.Read(make([]byte, 1))
		done <- err
	}()
	w.Close()
	if err := <-done; !errors.Is(err, net.ErrClosed) {
		t.Fatalf("read on closed connection: %v; want net.ErrClosed", err)
	}
	if _, err := w.Write([]byte("x")); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("write on closed connection: %v; want net.ErrClosed", err)
	}
}

func TestWriteToResetPeerFails(t *testing.T) {
	w, s := pair(t)
	s.(*net.TCPConn).SetLinger(0)
	s.Close() // RST
	buf := make([]byte, 64<<10)
	var err error
	for i := 0; i < 100 && err == nil; i++ {
		_, err = w.Write(buf)
	}
	var oe *net.OpError
	if !errors.As(err, &oe) || oe.Op != "write" {
		t.Fatalf("write to a reset connection: %v; want *net.OpError write", err)
	}
}

// Reads and writes from different goroutines at once, as net.Conn allows.
func TestConcurrentReadAndWrite(t *testing.T) {
	w, s := pair(t)
	go io.Copy(s, s) // echo
	const n = 2000
	errs := make(chan error, 1)
	go func() {
		for i := 0; i < n; i++ {
			if _, err := w.Write([]byte{byte(i)}); err != nil {
				errs <- err
				return
			}
		}
		errs <- nil
	}()
	got := make([]byte, n)
	if _, err := io.ReadFull(w, got); err != nil {
		t.Fatal(err)
	}
	if err := <-errs; err != nil {
		t.Fatal(err)
	}
	for i := range got {
		if got[i] != byte(i) {
			t.Fatalf("byte %d = %d", i, got[i])
		}
	}
}
