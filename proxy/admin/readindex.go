package admin

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"
)

// getReadIndex answers GET /v1/internal/read-index on the leader (followers
// forward it there through leaderOnly): the topology version committed
// before the request, after a Raft barrier. A restarted node asks it before
// it accepts clients (LeaderVersion, raftstore.Store.CatchUp). In static
// mode it is the one topology's version.
func (s *Server) getReadIndex(w http.ResponseWriter, r *http.Request) error {
	if s.cluster == nil {
		writeJSON(w, http.StatusOK, ReadIndex{Version: s.store.Current().Version()})
		return nil
	}
	snap, err := s.cluster.ReadIndex(r.Context())
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, ReadIndex{LeaderID: s.cluster.NodeID(), Version: snap.Version()})
	return nil
}

// readIndexTimeout bounds one round of LeaderVersion: a forward (up to
// LeaderWait while an election runs) plus the leader's barrier.
const readIndexTimeout = 10 * time.Second

// LeaderVersion asks the Raft leader for its committed topology version
// (GET /v1/internal/read-index) and returns it with the leader's ID; it
// implements raftstore.LeaderVersionFunc. It asks every other node whose
// admin URL this node knows (admin-peers.json survives restarts) and the
// extra base URLs (raft.join) at once — a follower forwards to the leader —
// and returns the first answer, or an error when none answers within
// readIndexTimeout.
func (s *Server) LeaderVersion(ctx context.Context, extra ...string) (uint64, string, error) {
	if s.cluster == nil {
		return s.store.Current().Version(), "", nil
	}
	self := s.cluster.NodeID()
	seen := map[string]bool{s.peers.selfURL: true}
	var urls []string
	add := func(u string) {
		u = strings.TrimRight(u, "/")
		if u != "" && !seen[u] {
			seen[u] = true
			urls = append(urls, u)
		}
	}
	if id, _ := s.cluster.Leader(); id != "" && id != self {
		add(s.peers.get(id))
	}
	for id, u := range s.peers.all() {
		if id != self {
			add(u)
		}
	}
	for _, u := range extra {
		add(u)
	}
	if len(urls) == 0 {
		return 0, "", errors.New("no other node's admin address is known (admin-peers.json is empty and raft.join is not set)")
	}
	ctx, cancel := context.WithTimeout(ctx, readIndexTimeout)
	defer cancel()
	type answer struct {
		ri  ReadIndex
		err error
	}
	answers := make(chan answer, len(urls))
	for _, u := range urls {
		go func() {
			var ri ReadIndex
			err := s.call(ctx, http.MethodGet, u+"/v1/internal/read-index", nil, &ri)
			if err != nil {
				err = fmt.Errorf("%s: %w", u, err)
			}
			answers <- answer{ri, err}
		}()
	}
	var errs []error
	for range urls {
		a := <-answers
		if a.err == nil {
			return a.ri.Version, a.ri.LeaderID, nil
		}
		errs = append(errs, a.err)
	}
	return 0, "", errors.Join(errs...)
}
