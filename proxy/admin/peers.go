package admin

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"time"
)

// peerDir maps Raft node IDs to admin API base URLs. A node's own entry is
// authoritative from that node: merging a directory received from node X
// overwrites X's entry and only fills in the others.
type peerDir struct {
	self, selfURL, file string
	log                 *slog.Logger

	mu sync.Mutex
	m  map[string]string
}

func newPeerDir(self, selfURL, file string, log *slog.Logger) *peerDir {
	p := &peerDir{self: self, selfURL: selfURL, file: file, log: log, m: map[string]string{}}
	if file != "" {
		if b, err := os.ReadFile(file); err == nil {
			if err := json.Unmarshal(b, &p.m); err != nil {
				log.Warn("admin: ignoring unreadable peer directory", "file", file, "err", err)
				p.m = map[string]string{}
			}
		}
	}
	if self != "" && selfURL != "" {
		p.m[self] = selfURL
		p.saveLocked()
	}
	return p
}

func (p *peerDir) get(id string) string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.m[id]
}

func (p *peerDir) all() map[string]string {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make(map[string]string, len(p.m))
	for k, v := range p.m {
		out[k] = v
	}
	return out
}

// set records id's URL authoritatively (a join).
func (p *peerDir) set(id, url string) {
	if id == "" || url == "" || id == p.self {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.m[id] != url {
		p.m[id] = url
		p.saveLocked()
	}
}

// merge adds a directory received from node from.
func (p *peerDir) merge(from string, m map[string]string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	changed := false
	for id, url := range m {
		if id == "" || url == "" || id == p.self {
			continue
		}
		if cur, ok := p.m[id]; !ok || (id == from && cur != url) {
			p.m[id] = url
			changed = true
		}
	}
	if changed {
		p.saveLocked()
	}
}

func (p *peerDir) remove(id string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if _, ok := p.m[id]; ok && id != p.self {
		delete(p.m, id)
		p.saveLocked()
	}
}

// saveLocked writes the directory atomically (temp file + rename).
func (p *peerDir) saveLocked() {
	if p.file == "" {
		return
	}
	b, err := json.MarshalIndent(p.m, "", "  ")
	if err == nil {
		tmp := p.file + ".tmp"
		if err = os.MkdirAll(filepath.Dir(p.file), 0o700); err == nil {
			if err = os.WriteFile(tmp, b, 0o600); err == nil {
				err = os.Rename(tmp, p.file)
			}
		}
	}
	if err != nil {
		p.log.Warn("admin: could not save the peer directory", "file", p.file, "err", err)
	}
}

// Run keeps the admin directory in step with the other nodes until ctx is
// done: every SyncInterval (and when a write needs a leader's address) it
// asks the leader, then other members, for their directory. Static mode
// has nothing to do.
func (s *Server) Run(ctx context.Context) {
	if s.cluster == nil {
		return
	}
	t := time.NewTicker(s.opts.SyncInterval)
	defer t.Stop()
	for {
		s.syncPeers(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-s.syncNow:
		}
	}
}

// syncPeers asks the leader, then the other members, for their directory
// until every member's admin URL is known.
func (s *Server) syncPeers(ctx context.Context) {
	if s.cluster == nil {
		return
	}
	self := s.cluster.NodeID()
	servers, _ := s.cluster.Servers()
	known := s.peers.all()
	missing := func() bool {
		known = s.peers.all()
		for _, sv := range servers {
			if known[sv.ID] == "" {
				return true
			}
		}
		return false
	}
	var order []string
	if id, _ := s.cluster.Leader(); id != "" && id != self {
		order = append(order, id)
	}
	ids := make([]string, 0, len(known))
	for id := range known {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	for _, id := range ids {
		if id != self && (len(order) == 0 || id != order[0]) {
			order = append(order, id)
		}
	}
	for i, id := range order {
		url := known[id]
		if url == "" {
			continue
		}
		ok := s.fetchPeers(ctx, url)
		if ok && (i > 0 || !missing()) {
			return
		}
	}
}

// fetchPeers merges the directory of the node at base.
func (s *Server) fetchPeers(ctx context.Context, base string) bool {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	var p Peers
	if err := s.call(ctx, http.MethodGet, base+"/v1/internal/peers", nil, &p); err != nil {
		s.log.Debug("admin: peer sync failed", "peer", base, "err", err)
		return false
	}
	s.peers.merge(p.From, p.Peers)
	return true
}

// call is a node-to-node request with the shared token.
func (s *Server) call(ctx context.Context, method, url string, in, out any) error {
	c := &Client{BaseURL: "", Token: s.opts.Token, HTTP: s.client}
	return c.do(ctx, method, url, in, out)
}

// JoinCluster adds this node to the cluster through the admin API of any
// member in targets (base URLs; a follower forwards to the leader). It
// retries with backoff until it succeeds or ctx is done. Joining a cluster
// this node is already a member of is harmless; it refreshes the node's
// admin URL.
func (s *Server) JoinCluster(ctx context.Context, targets []string) error {
	if s.cluster == nil {
		return fmt.Errorf("admin: join needs Raft (raft.dir)")
	}
	if len(targets) == 0 {
		return fmt.Errorf("admin: join needs the admin address of a cluster member")
	}
	req := JoinRequest{ID: s.cluster.NodeID(), RaftAddr: s.cluster.Addr(), AdminURL: s.peers.selfURL}
	backoff := 200 * time.Millisecond
	for attempt := 1; ; attempt++ {
		var lastErr error
		for _, t := range targets {
			actx, cancel := context.WithTimeout(ctx, 15*time.Second)
			var res JoinResult
			err := s.call(actx, http.MethodPost, t+"/v1/nodes/join", req, &res)
			cancel()
			if err == nil {
				s.peers.merge(res.LeaderID, res.Peers)
				s.log.Info("joined the Raft cluster", "via", t, "suffrage", res.Suffrage, "leader", res.LeaderID)
				return nil
			}
			lastErr = err
		}
		level := slog.LevelDebug
		if attempt == 1 || attempt%10 == 0 {
			level = slog.LevelWarn
		}
		s.log.Log(ctx, level, "join failed; retrying", "targets", targets, "attempt", attempt, "err", lastErr)
		select {
		case <-ctx.Done():
			return fmt.Errorf("join via %v: %w (last error: %v)", targets, ctx.Err(), lastErr)
		case <-time.After(backoff):
		}
		if backoff *= 2; backoff > 3*time.Second {
			backoff = 3 * time.Second
		}
	}
}
