package netio

import (
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"syscall"
)

// Conn is a net.Conn whose Read and Write use raw system calls (see the
// package documentation). Other methods are the wrapped connection's.
//
// Like any net.Conn it may be used from several goroutines; Reads are
// serialized with each other, and so are Writes.
type Conn struct {
	net.Conn
	raw syscall.RawConn

	rmu  sync.Mutex // guards the read state below for one Read
	rbuf []byte
	rn   int
	rerr error
	rfn  func(fd uintptr) bool

	wmu  sync.Mutex // guards the write state below for one Write
	wbuf []byte
	wn   int
	werr error
	wfn  func(fd uintptr) bool
}

// Wrap returns c with raw-syscall Read and Write when the platform supports
// it and c is a socket (it has SyscallConn); otherwise c itself.
func Wrap(c net.Conn) net.Conn {
	if !supported {
		return c
	}
	if _, ok := c.(*Conn); ok {
		return c
	}
	sc, ok := c.(syscall.Conn)
	if !ok {
		return c
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return c
	}
	return wrapRaw(c, raw)
}

// wrapRaw returns c with Read and Write through raw's callbacks.
func wrapRaw(c net.Conn, raw syscall.RawConn) *Conn {
	w := &Conn{Conn: c, raw: raw}
	w.rfn = w.readOnce
	w.wfn = w.writeAll
	return w
}

// NetConn returns the wrapped connection.
func (c *Conn) NetConn() net.Conn { return c.Conn }

// SyscallConn returns the wrapped connection's raw connection.
func (c *Conn) SyscallConn() (syscall.RawConn, error) { return c.raw, nil }

// Read reads up to len(b) bytes, waiting in the netpoller until some are
// available, the read deadline passes or the connection is closed.
func (c *Conn) Read(b []byte) (int, error) {
	if len(b) == 0 {
		return 0, nil
	}
	c.rmu.Lock()
	c.rbuf, c.rn, c.rerr = b, 0, nil
	err := c.raw.Read(c.rfn)
	n, rerr := c.rn, c.rerr
	c.rbuf, c.rerr = nil, nil
	c.rmu.Unlock()
	if err == nil {
		if rerr != nil {
			err = os.NewSyscallError("read", rerr)
		} else if n == 0 {
			return 0, io.EOF
		}
	}
	if err != nil {
		return n, c.opError("read", err)
	}
	return n, nil
}

// readOnce is the RawConn.Read callback: one read(2); false (wait for
// readiness) on EAGAIN.
func (c *Conn) readOnce(fd uintptr) bool {
	for {
		n, errno := rawRead(fd, c.rbuf)
		switch errno {
		case 0:
			c.rn = n
			return true
		case syscall.EINTR:
			continue
		case syscall.EAGAIN:
			return false
		default:
			c.rerr = errno
			return true
		}
	}
}

// Write writes all of b, waiting in the netpoller while the socket's send
// buffer is full, until the write deadline passes or the connection is
// closed. A short count comes with an error.
func (c *Conn) Write(b []byte) (int, error) {
	if len(b) == 0 {
		return 0, nil
	}
	c.wmu.Lock()
	c.wbuf, c.wn, c.werr = b, 0, nil
	err := c.raw.Write(c.wfn)
	n, werr := c.wn, c.werr
	c.wbuf, c.werr = nil, nil
	c.wmu.Unlock()
	if err == nil && werr != nil {
		err = os.NewSyscallError("write", werr)
	}
	if err != nil {
		return n, c.opError("write", err)
	}
	return n, nil
}

// writeAll is the RawConn.Write callback: write(2) until everything is
// written; false (wait for writability) on EAGAIN.
func (c *Conn) writeAll(fd uintptr) bool {
	for c.wn < len(c.wbuf) {
		n, errno := rawWrite(fd, c.wbuf[c.wn:])
		switch errno {
		case 0:
			c.wn += n
		case syscall.EINTR:
		case syscall.EAGAIN:
			return false
		default:
			c.werr = errno
			return true
		}
	}
	return true
}

// opError wraps err like the net package does for a failed Read or Write.
func (c *Conn) opError(op string, err error) error {
	var oe *net.OpError
	if errors.As(err, &oe) {
		return err
	}
	return &net.OpError{Op: op, Net: c.LocalAddr().Network(), Source: c.LocalAddr(), Addr: c.RemoteAddr(), Err: err}
}
