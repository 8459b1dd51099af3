package proxy

import (
	"net"
	"sync/atomic"
)

// maxIdleSessionWorkers bounds the goroutines kept waiting for the next
// client connection. Each keeps the stack its last session grew (a few
// KiB; the garbage collector shrinks stacks of waiting goroutines).
const maxIdleSessionWorkers = 64

// sessionWorkers runs client sessions on goroutines that outlive one
// connection. A new goroutine starts with a small stack that a session
// grows several times (each time the runtime copies the whole stack and
// adjusts every frame), which was a measurable part of the CPU a client
// that connects for each transaction costs; a goroutine that served a
// session before already has the stack the next one needs.
//
// The zero value is not ready: Serve calls init once before accepting.
type sessionWorkers struct {
	// handoff is unbuffered: a send succeeds only while a worker waits in
	// receive, so a connection is never queued behind a busy worker.
	handoff chan net.Conn
	idle    atomic.Int32 // workers waiting on handoff (or about to)
}

func (w *sessionWorkers) init() { w.handoff = make(chan net.Conn) }

// startSession serves c on a waiting worker, or on a new one when none is
// waiting. The session is counted in s.wg until it ends.
func (s *Server) startSession(c net.Conn) {
	s.wg.Add(1)
	select {
	case s.workers.handoff <- c:
	default:
		go s.sessionWorker(c)
	}
}

// sessionWorker serves c and then, while fewer than maxIdleSessionWorkers
// wait, further connections handed over by startSession, until Shutdown.
func (s *Server) sessionWorker(c net.Conn) {
	for {
		s.serveConn(c)
		s.wg.Done()
		if s.workers.idle.Add(1) > maxIdleSessionWorkers {
			s.workers.idle.Add(-1)
			return
		}
		select {
		case c = <-s.workers.handoff:
			s.workers.idle.Add(-1)
		case <-s.done:
			s.workers.idle.Add(-1)
			return
		}
	}
}
