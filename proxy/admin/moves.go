package admin

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"sort"
	"strings"
	"sync"
	"time"
)

// Moves is the data-movement controller as the admin API sees it (package
// rebalance, adapted in cmd/shardproxy: admin may not import rebalance).
// Requests and answers are JSON passed through unchanged, so the wire
// format is rebalance's own (rebalance.PlanRequest, Plan, MoveRequest,
// Progress). A method returns *APIError for a bad request body and
// topology errors (ErrNotFound, ErrInvalid, version mismatch) otherwise;
// the admin API classifies them like every other error.
//
// Every method runs on the Raft leader: the controller's progress lives
// there, so the routes forward reads too.
type Moves interface {
	// Plan computes which ranges would move where, and why (PlanRequest →
	// Plan); nothing changes.
	Plan(ctx context.Context, request json.RawMessage) (json.RawMessage, error)
	// Start computes a plan (PlanRequest) and records its moves; the
	// answer is MovesStarted.
	Start(ctx context.Context, request json.RawMessage) (MovesStarted, error)
	// Move records one move (MoveRequest); the answer is MovesStarted.
	Move(ctx context.Context, request json.RawMessage) (MovesStarted, error)
	// Cancel rolls back move id, or every move not flipped yet when id is
	// "", and returns the IDs it cancelled.
	Cancel(ctx context.Context, id string) ([]string, error)
	// Status lists the moves with their progress (rebalance.Progress).
	Status(ctx context.Context) (json.RawMessage, error)
}

// MovesStarted answers POST /v1/rebalance/start and POST /v1/moves.
type MovesStarted struct {
	Version uint64          `json:"version"`
	Message string          `json:"message"`
	Moves   []string        `json:"moves"`
	Plan    json.RawMessage `json:"plan,omitempty"`
}

// MovesCancelled answers POST /v1/rebalance/cancel.
type MovesCancelled struct {
	Version   uint64   `json:"version"`
	Message   string   `json:"message"`
	Cancelled []string `json:"cancelled"`
}

// CancelRequest is POST /v1/rebalance/cancel; no ID cancels every move
// that has not flipped its ranges yet.
type CancelRequest struct {
	ID string `json:"id,omitempty"`
}

// RegisterMoves mounts the data-movement endpoints on mux (next to
// Register's): POST /v1/rebalance/plan, POST /v1/rebalance/start, GET
// /v1/rebalance/status, POST /v1/rebalance/cancel and POST /v1/moves. All
// of them run on the Raft leader (followers forward).
func (s *Server) RegisterMoves(mux *http.ServeMux, m Moves) {
	route := func(pattern string, h apiHandler) {
		mux.Handle(pattern, s.instrument(pattern, s.auth(s.leaderOnly(h))))
	}
	route("POST /v1/rebalance/plan", func(w http.ResponseWriter, r *http.Request) error {
		body, err := readOptionalBody(r)
		if err != nil {
			return err
		}
		plan, err := m.Plan(r.Context(), body)
		if err != nil {
			return err
		}
		writeRaw(w, plan)
		return nil
	})
	started := func(do func(context.Context, json.RawMessage) (MovesStarted, error)) apiHandler {
		return func(w http.ResponseWriter, r *http.Request) error {
			body, err := readOptionalBody(r)
			if err != nil {
				return err
			}
			res, err := do(r.Context(), body)
			if err != nil {
				return err
			}
			s.log.Info("moves recorded through the admin API", "moves", res.Moves, "version", res.Version, "remote", r.RemoteAddr)
			writeJSON(w, http.StatusOK, res)
			return nil
		}
	}
	route("POST /v1/rebalance/start", started(m.Start))
	route("POST /v1/moves", started(m.Move))
	route("GET /v1/rebalance/status", func(w http.ResponseWriter, r *http.Request) error {
		st, err := m.Status(r.Context())
		if err != nil {
			return err
		}
		writeRaw(w, st)
		return nil
	})
	route("POST /v1/rebalance/cancel", func(w http.ResponseWriter, r *http.Request) error {
		body, err := readOptionalBody(r)
		if err != nil {
			return err
		}
		var req CancelRequest
		if len(body) > 0 {
			if err := decode(body, &req); err != nil {
				return err
			}
		}
		ids, err := m.Cancel(r.Context(), req.ID)
		if err != nil {
			return err
		}
		msg := "no move to cancel"
		if len(ids) > 0 {
			msg = fmt.Sprintf("cancelling %s: copied rows are removed from the target, the source keeps its rows", strings.Join(ids, ", "))
		}
		s.log.Info("moves cancelled through the admin API", "moves", ids, "remote", r.RemoteAddr)
		writeJSON(w, http.StatusOK, MovesCancelled{Version: s.store.Current().Version(), Message: msg, Cancelled: ids})
		return nil
	})
}

// readOptionalBody returns the request body, nil when it is empty.
func readOptionalBody(r *http.Request) (json.RawMessage, error) {
	b, err := readBody(r)
	if err != nil || len(strings.TrimSpace(string(b))) == 0 {
		return nil, err
	}
	return b, nil
}

func writeRaw(w http.ResponseWriter, b json.RawMessage) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(b)
}

// AwaitVersion returns once every member of the Raft configuration serves
// topology version ≥ v: this node from its store, the others through
// their /v1/status, polled every few milliseconds until ctx is done. A
// member that does not answer (down, or unreachable) fails the wait when
// ctx ends, naming it: it may be serving clients by an older topology, so
// the caller (a move's cutover) must not go on. Remove a member that is
// gone for good with shardctl nodes remove. Static mode: only this node.
func (s *Server) AwaitVersion(ctx context.Context, v uint64) error {
	if s.store.Current().Version() >= v && s.cluster == nil {
		return nil
	}
	var pending []string
	if s.cluster != nil {
		servers, err := s.cluster.Servers()
		if err != nil {
			return fmt.Errorf("listing the Raft members: %w", err)
		}
		self := s.cluster.NodeID()
		for _, sv := range servers {
			if sv.ID != self {
				pending = append(pending, sv.ID)
			}
		}
	}
	var (
		mu      sync.Mutex
		lastErr = map[string]string{}
	)
	seen := func(id string, err error) {
		mu.Lock()
		defer mu.Unlock()
		if err == nil {
			delete(lastErr, id)
		} else {
			lastErr[id] = err.Error()
		}
	}
	for {
		var wg sync.WaitGroup
		done := make([]bool, len(pending))
		for i, id := range pending {
			wg.Add(1)
			go func() {
				defer wg.Done()
				got, err := s.peerVersion(ctx, id)
				if err == nil && got < v {
					err = fmt.Errorf("serves version %d", got)
				}
				seen(id, err)
				done[i] = err == nil
			}()
		}
		wg.Wait()
		var still []string
		for i, id := range pending {
			if !done[i] {
				still = append(still, id)
			}
		}
		pending = still
		local := s.store.Current().Version()
		if len(pending) == 0 && local >= v {
			return nil
		}
		select {
		case <-ctx.Done():
			mu.Lock()
			defer mu.Unlock()
			var why []string
			if local < v {
				why = append(why, fmt.Sprintf("this node serves version %d", local))
			}
			sort.Strings(pending)
			for _, id := range pending {
				why = append(why, fmt.Sprintf("%s: %s", id, lastErr[id]))
			}
			return fmt.Errorf("not every proxy serves topology version %d yet (%s): %w", v, strings.Join(why, "; "), ctx.Err())
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// peerVersion asks node id for the topology version it serves.
func (s *Server) peerVersion(ctx context.Context, id string) (uint64, error) {
	base := s.peers.get(id)
	if base == "" {
		s.syncPeers(ctx)
		if base = s.peers.get(id); base == "" {
			return 0, fmt.Errorf("admin address unknown")
		}
	}
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	var st Status
	if err := s.call(ctx, http.MethodGet, base+"/v1/status?health=0", nil, &st); err != nil {
		return 0, err
	}
	return st.TopologyVersion, nil
}
