package pool

import (
	"sort"
	"time"
)

// ConnInfo describes one open server connection of a pool (SHOW SERVERS).
type ConnInfo struct {
	// PID is the server backend's process ID.
	PID uint32
	// Addr is the server's host:port; LocalAddr the proxy side's.
	Addr, LocalAddr string
	// Created is when the connection was established.
	Created time.Time
	// Idle: the connection sits in the pool. Otherwise a caller holds it.
	Idle bool
	// IdleSince is when an idle connection was released (zero when held).
	IdleSince time.Time
	// Prepared is the number of server-side prepared statements on it
	// (0 while a caller holds it: only the holder may read its cache).
	Prepared int
}

// Conns returns the pool's open connections, oldest first. It is a
// snapshot for monitoring: connections may change state right after.
func (p *Pool) Conns() []ConnInfo {
	var out []ConnInfo
	p.mu.Lock()
	p.live.Range(func(k, _ any) bool {
		sc := k.(*ServerConn)
		ci := ConnInfo{PID: sc.PID, Addr: sc.Addr, Created: sc.Created, Idle: sc.inPool}
		if sc.Conn != nil {
			ci.LocalAddr = sc.Conn.LocalAddr().String()
		}
		if sc.inPool { // under mu, an idle connection is the pool's alone
			ci.IdleSince = sc.LastUsed
			if sc.Prepared != nil {
				ci.Prepared = sc.Prepared.Len()
			}
		}
		out = append(out, ci)
		return true
	})
	p.mu.Unlock()
	sort.Slice(out, func(i, j int) bool { return out[i].Created.Before(out[j].Created) })
	return out
}
