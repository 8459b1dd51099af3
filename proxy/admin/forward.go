package admin

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"time"
)

// leaderOnly wraps a write: on the leader (or in static mode) it runs h;
// on a follower it forwards the request to the leader's admin API. While
// an election runs it waits up to Options.LeaderWait for a leader.
func (s *Server) leaderOnly(h apiHandler) apiHandler {
	return func(w http.ResponseWriter, r *http.Request) error {
		body, err := readBody(r)
		if err != nil {
			return err
		}
		r.Body = io.NopCloser(bytes.NewReader(body))
		if s.cluster == nil {
			return h(w, r)
		}
		self := s.cluster.NodeID()
		deadline := time.Now().Add(s.opts.LeaderWait)
		for {
			if s.cluster.IsLeader() {
				return h(w, r)
			}
			if id, raftAddr := s.cluster.Leader(); id != "" && id != self {
				if by := r.Header.Get(hdrForwarded); by != "" {
					return &APIError{Status: http.StatusServiceUnavailable, Code: CodeNotLeader, Retryable: true,
						Msg:  fmt.Sprintf("node %s forwarded this write here, but this node is not the leader either (it follows %s)", by, id),
						Hint: "leadership is moving; nothing was changed, retry in a moment"}
				}
				url := s.peers.get(id)
				if url == "" {
					s.syncPeers(r.Context())
					url = s.peers.get(id)
				}
				if url == "" {
					return &APIError{Status: http.StatusServiceUnavailable, Code: CodeNotLeader, Retryable: true,
						Msg:  fmt.Sprintf("this node is not the Raft leader and does not know the admin address of the leader %s (Raft address %s)", id, raftAddr),
						Hint: "send the request to the leader's admin API (--server), or retry once the nodes have exchanged addresses (a few seconds)"}
				}
				return s.forward(w, r, id, url, body)
			}
			if !time.Now().Before(deadline) {
				return &APIError{Status: http.StatusServiceUnavailable, Code: CodeNoQuorum,
					Msg: fmt.Sprintf("no Raft leader known to node %s after %s", self, s.opts.LeaderWait),
					Hint: fmt.Sprintf("topology is read-only without a leader; routing continues with version %d. "+
						"If this node just started with --join it may not be a member yet; otherwise check shardctl nodes list and bring a majority of voters back",
						s.store.Current().Version())}
			}
			select {
			case <-r.Context().Done():
				return r.Context().Err()
			case <-time.After(50 * time.Millisecond):
			}
		}
	}
}

// forward sends the request to the leader's admin API and copies the
// answer back.
func (s *Server) forward(w http.ResponseWriter, r *http.Request, leaderID, base string, body []byte) error {
	timeout, client := s.opts.ForwardTimeout, s.client
	if long := longForwardTimeout(r); long > timeout {
		// The client's own Timeout would cut it short: the request's
		// deadline bounds it instead.
		timeout, client = long, &http.Client{Transport: s.client.Transport}
	}
	ctx, cancel := context.WithTimeout(r.Context(), timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, r.Method, base+r.URL.RequestURI(), bytes.NewReader(body))
	if err != nil {
		return err
	}
	for _, h := range []string{"Authorization", "Content-Type", "Accept"} {
		if v := r.Header.Get(h); v != "" {
			req.Header.Set(h, v)
		}
	}
	req.Header.Set(hdrForwarded, s.cluster.NodeID())
	s.met.forwarded.Inc()
	resp, err := client.Do(req)
	if err != nil {
		var op *net.OpError
		notSent := errors.As(err, &op) && op.Op == "dial"
		hint := "the leader may have just failed; a new one is elected within seconds. Check shardctl status"
		if !notSent {
			hint += "; the change may or may not have been applied, so check before retrying"
		}
		return &APIError{Status: http.StatusBadGateway, Code: CodeUnavailable, Retryable: notSent,
			Msg:  fmt.Sprintf("forwarding the write to the leader %s at %s failed: %v", leaderID, base, err),
			Hint: hint}
	}
	defer resp.Body.Close()
	out, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return &APIError{Status: http.StatusBadGateway, Code: CodeUnavailable,
			Msg:  fmt.Sprintf("reading the leader's answer failed: %v", err),
			Hint: "the change may or may not have been applied; check shardctl status before retrying"}
	}
	if resp.StatusCode/100 == 2 {
		// Read your writes through this node: answer once it applied the
		// version the leader committed.
		var res struct {
			Version uint64 `json:"version"`
		}
		if json.Unmarshal(out, &res) == nil && res.Version > 0 {
			s.waitVersion(r.Context(), res.Version, 2*time.Second)
		}
	}
	for _, h := range []string{"Content-Type", hdrServedBy} {
		if v := resp.Header.Get(h); v != "" {
			w.Header().Set(h, v)
		}
	}
	w.WriteHeader(resp.StatusCode)
	_, _ = w.Write(out)
	return nil
}

// waitVersion waits until this node serves topology version v (or newer),
// at most max.
func (s *Server) waitVersion(ctx context.Context, v uint64, max time.Duration) {
	if s.store.Current().Version() >= v {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, max)
	defer cancel()
	for snap := range s.store.Watch(ctx) {
		if snap.Version() >= v {
			return
		}
	}
}
