package proxy

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"syscall"
	"time"
)

// watchInterval is how often the watchdog looks for clients that went away
// while their query runs; a query whose client vanished is cancelled
// within about watchAfter + watchInterval.
const (
	watchInterval = 250 * time.Millisecond
	watchAfter    = 500 * time.Millisecond
)

// watchdog cancels server queries of clients that disconnected while the
// session goroutine is blocked waiting for the server (PostgreSQL itself
// would not notice until it writes). It probes only sessions that have
// been waiting longer than watchAfter, with a non-blocking MSG_PEEK.
func (s *Server) watchdog() {
	t := time.NewTicker(watchInterval)
	defer t.Stop()
	for {
		select {
		case <-s.done:
			return
		case <-t.C:
		}
		limit := time.Now().Add(-watchAfter).UnixNano()
		s.mu.Lock()
		var suspects []*session
		for _, sess := range s.sessions {
			if b := sess.busySince.Load(); b != 0 && b < limit {
				suspects = append(suspects, sess)
			}
		}
		s.mu.Unlock()
		for _, sess := range suspects {
			if !clientClosed(sess.rawConn) {
				continue
			}
			sc := sess.current.Load()
			if sc == nil || sess.cancelled.Swap(true) {
				continue
			}
			s.log.Debug("client left during a query; cancelling it", "user", sess.user)
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			sc.CancelWhile(ctx, func() bool { return sess.current.Load() == sc })
			cancel()
		}
	}
}

// clientClosed reports whether the peer closed c (EOF on a non-blocking
// peek). Data waiting to be read means the client is alive.
func clientClosed(c net.Conn) bool {
	if tc, ok := c.(*tls.Conn); ok {
		c = tc.NetConn()
	}
	sc, ok := c.(syscall.Conn)
	if !ok {
		return false
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return false
	}
	closed := false
	var buf [1]byte
	raw.Read(func(fd uintptr) bool {
		n, _, err := syscall.Recvfrom(int(fd), buf[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		closed = n == 0 && err == nil || (err != nil && !errors.Is(err, syscall.EAGAIN) && !errors.Is(err, syscall.EINTR))
		return true
	})
	return closed
}
