package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// memResult is the memory a pooler needs per idle client connection.
type memResult struct {
	target          string
	clients         int   // connections that completed startup
	baseline, after int64 // RSS bytes of the pooler
	perClient       float64
	err             error
}

// idleMemory opens n client connections to t, each completing startup
// (authentication through ReadyForQuery), and measures the growth of the
// pooler's resident set. The connections stay idle and are closed at the end.
func (e *env) idleMemory(ctx context.Context, t target, n int) memResult {
	m := memResult{target: t.name}
	var err error
	if m.baseline, err = rssBytes(t.pooler); err != nil {
		m.err = err
		return m
	}
	conns := make([]net.Conn, n)
	var next atomic.Int64
	var firstErr error
	var errOnce sync.Once
	var wg sync.WaitGroup
	for range 32 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			br := bufio.NewReaderSize(nil, 4096)
			for {
				i := int(next.Add(1)) - 1
				if i >= n || ctx.Err() != nil {
					return
				}
				c, err := startupOnly(ctx, t.port, br)
				if err != nil {
					errOnce.Do(func() { firstErr = fmt.Errorf("connection %d: %w", i, err) })
					next.Store(int64(n)) // stop the others
					return
				}
				conns[i] = c
			}
		}()
	}
	wg.Wait()
	defer func() {
		for _, c := range conns {
			if c != nil {
				c.Close()
			}
		}
	}()
	for _, c := range conns {
		if c != nil {
			m.clients++
		}
	}
	if firstErr != nil {
		m.err = firstErr
	}
	if m.clients == 0 {
		return m
	}
	// Let the pooler finish whatever the last logins started, then take the
	// highest of a few readings a moment apart.
	for range 5 {
		time.Sleep(200 * time.Millisecond)
		if rss, err := rssBytes(t.pooler); err == nil && rss > m.after {
			m.after = rss
		}
	}
	m.perClient = float64(m.after-m.baseline) / float64(m.clients)
	return m
}

// startupOnly connects as postgres/postgres without TLS, reads until
// ReadyForQuery and returns the idle connection. It keeps nothing but the
// socket, so the driver's own memory does not limit the client count.
func startupOnly(ctx context.Context, port int, br *bufio.Reader) (net.Conn, error) {
	d := net.Dialer{Timeout: 10 * time.Second}
	c, err := d.DialContext(ctx, "tcp", "127.0.0.1:"+strconv.Itoa(port))
	if err != nil {
		return nil, err
	}
	_ = c.SetDeadline(time.Now().Add(30 * time.Second))
	body := []byte{0, 3, 0, 0} // protocol 3.0
	for _, kv := range [][2]string{{"user", "postgres"}, {"database", "postgres"}} {
		body = append(body, kv[0]...)
		body = append(body, 0)
		body = append(body, kv[1]...)
		body = append(body, 0)
	}
	body = append(body, 0)
	msg := binary.BigEndian.AppendUint32(nil, uint32(len(body)+4))
	if _, err := c.Write(append(msg, body...)); err != nil {
		c.Close()
		return nil, err
	}
	br.Reset(c)
	for {
		var hdr [5]byte
		if _, err := io.ReadFull(br, hdr[:]); err != nil {
			c.Close()
			return nil, err
		}
		n := int(binary.BigEndian.Uint32(hdr[1:])) - 4
		if n < 0 || n > 1<<20 {
			c.Close()
			return nil, fmt.Errorf("bad message length %d", n)
		}
		payload := make([]byte, n)
		if _, err := io.ReadFull(br, payload); err != nil {
			c.Close()
			return nil, err
		}
		switch hdr[0] {
		case 'R':
			if n >= 4 && binary.BigEndian.Uint32(payload) != 0 {
				c.Close()
				return nil, fmt.Errorf("server asks for authentication (type %d); trust expected", binary.BigEndian.Uint32(payload))
			}
		case 'E':
			c.Close()
			return nil, errors.New("error response at startup: " + errorText(payload))
		case 'Z':
			if br.Buffered() > 0 {
				c.Close()
				return nil, errors.New("unexpected data after ReadyForQuery")
			}
			_ = c.SetDeadline(time.Time{})
			return c, nil
		}
	}
}

// errorText renders an ErrorResponse body as "SQLSTATE message".
func errorText(body []byte) string {
	var code, msg string
	for _, f := range bytes.Split(body, []byte{0}) {
		if len(f) < 2 {
			continue
		}
		switch f[0] {
		case 'C':
			code = string(f[1:])
		case 'M':
			msg = string(f[1:])
		}
	}
	return code + " " + msg
}
