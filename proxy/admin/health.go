package admin

import (
	"context"
	"encoding/binary"
	"fmt"
	"net"
	"time"

	"github.com/shardproxy/shardproxy/proxy/pool"
)

// probe checks one PostgreSQL server: a TCP connect and an SSLRequest,
// which any postmaster answers with 'S' or 'N' before authentication (so
// the probe needs no credentials and leaves no log line on the server).
// With ShardConn it also logs in and asks pg_is_in_recovery().
func (s *Server) probe(ctx context.Context, addr, role string) Health {
	h := Health{Addr: addr, Role: role}
	pctx, cancel := context.WithTimeout(ctx, s.opts.ProbeTimeout)
	defer cancel()
	start := time.Now()
	if err := sslProbe(pctx, addr); err != nil {
		h.Error = err.Error()
		return h
	}
	h.Up = true
	h.LatencyMS = float64(time.Since(start).Microseconds()) / 1000
	if s.opts.ShardConn == nil {
		return h
	}
	lctx, cancel2 := context.WithTimeout(ctx, 2*s.opts.ProbeTimeout)
	defer cancel2()
	conn, err := s.opts.ShardConn(lctx, addr, "postgres")
	if err != nil {
		h.Error = "reachable, but the admin API could not log in: " + err.Error()
		return h
	}
	defer conn.Close(context.Background())
	var rec bool
	var maxPrepared int
	if err := conn.QueryRow(lctx, "SELECT pg_is_in_recovery(), current_setting('max_prepared_transactions')::int").Scan(&rec, &maxPrepared); err != nil {
		h.Error = "reachable, but pg_is_in_recovery() failed: " + err.Error()
		return h
	}
	h.InRecovery = &rec
	h.MaxPreparedTransactions = &maxPrepared
	return h
}

// sslProbe sends an SSLRequest and expects a one-byte answer.
func sslProbe(ctx context.Context, addr string) error {
	var d net.Dialer
	network, address := pool.DialAddress(addr)
	c, err := d.DialContext(ctx, network, address)
	if err != nil {
		return err
	}
	defer c.Close()
	if dl, ok := ctx.Deadline(); ok {
		c.SetDeadline(dl)
	}
	var req [8]byte
	binary.BigEndian.PutUint32(req[0:4], 8)
	binary.BigEndian.PutUint32(req[4:8], 80877103)
	if _, err := c.Write(req[:]); err != nil {
		return fmt.Errorf("sending SSLRequest: %w", err)
	}
	var b [1]byte
	if _, err := c.Read(b[:]); err != nil {
		return fmt.Errorf("no answer to SSLRequest: %w", err)
	}
	if b[0] != 'S' && b[0] != 'N' {
		return fmt.Errorf("not a PostgreSQL server (answered %q to SSLRequest)", b[0])
	}
	return nil
}
