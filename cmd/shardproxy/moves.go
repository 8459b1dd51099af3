package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"strings"

	"github.com/prometheus/client_golang/prometheus"

	adminapi "github.com/shardproxy/shardproxy/proxy/admin"
	"github.com/shardproxy/shardproxy/proxy/config"
	"github.com/shardproxy/shardproxy/rebalance"
	"github.com/shardproxy/shardproxy/topology"
	"github.com/shardproxy/shardproxy/topology/raftstore"
)

// newMoveController builds the data-movement controller of this proxy. It
// logs in to shards like the admin API (shardLogin). With Raft, it waits
// for every proxy of the cluster (through their admin APIs, awaitPeers) to
// serve a cutover's topology before the source is fenced, so no proxy
// routes a write to the old owner after the flip.
func newMoveController(cfg config.Config, store topology.Store, awaitPeers func(context.Context, uint64) error, log *slog.Logger, reg prometheus.Registerer) (*rebalance.Controller, error) {
	user, password := shardLogin(cfg)
	connect, conninfo := rebalance.Login(user, password, cfg.Pool.ConnectTimeout.D())
	return rebalance.New(rebalance.Options{
		Store:         store,
		Connect:       connect,
		Conninfo:      conninfo,
		AwaitObserved: awaitPeers,
		Logger:        log.With("component", "rebalance"),
		Registerer:    reg,
	})
}

// runMoveController runs ctrl while this node leads the Raft cluster (or
// always, with a static topology) until ctx is done.
func runMoveController(ctx context.Context, ctrl *rebalance.Controller, rstore *raftstore.Store) {
	if rstore == nil {
		ctrl.Run(ctx)
		return
	}
	ctrl.RunWhileLeader(ctx, rstore.LeadershipChanges(ctx))
}

// movesAPI adapts a rebalance.Controller to the admin API's Moves.
type movesAPI struct {
	ctrl  *rebalance.Controller
	store topology.Store
}

// decodeRequest parses an optional JSON body, refusing unknown fields.
func decodeRequest(body json.RawMessage, v any) error {
	if len(body) == 0 {
		return nil
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return &adminapi.APIError{Status: http.StatusBadRequest, Code: adminapi.CodeBadRequest, Msg: fmt.Sprintf("bad JSON body: %v", err)}
	}
	return nil
}

func (m movesAPI) Plan(ctx context.Context, body json.RawMessage) (json.RawMessage, error) {
	var req rebalance.PlanRequest
	if err := decodeRequest(body, &req); err != nil {
		return nil, err
	}
	p, err := m.ctrl.PlanNow(ctx, req)
	if err != nil {
		return nil, err
	}
	return json.Marshal(p)
}

func (m movesAPI) Start(ctx context.Context, body json.RawMessage) (adminapi.MovesStarted, error) {
	var req rebalance.PlanRequest
	if err := decodeRequest(body, &req); err != nil {
		return adminapi.MovesStarted{}, err
	}
	p, err := m.ctrl.PlanNow(ctx, req)
	if err != nil {
		return adminapi.MovesStarted{}, err
	}
	raw, _ := json.Marshal(p)
	if len(p.Moves) == 0 {
		return adminapi.MovesStarted{Version: m.store.Current().Version(), Message: "nothing to move: the shards are balanced", Moves: []string{}, Plan: raw}, nil
	}
	ids, err := m.ctrl.StartPlan(ctx, p, req.HoldTimeoutMS)
	if err != nil {
		return adminapi.MovesStarted{}, err
	}
	return adminapi.MovesStarted{Version: m.store.Current().Version(), Moves: ids, Plan: raw,
		Message: fmt.Sprintf("started %d moves: %s (follow them with shardctl rebalance status --watch)", len(ids), strings.Join(ids, ", "))}, nil
}

func (m movesAPI) Move(ctx context.Context, body json.RawMessage) (adminapi.MovesStarted, error) {
	var req rebalance.MoveRequest
	if len(body) == 0 {
		return adminapi.MovesStarted{}, &adminapi.APIError{Status: http.StatusBadRequest, Code: adminapi.CodeBadRequest,
			Msg: `the request needs a JSON body: {"distribution": …, "lo": …, "hi": …, "to": …}`}
	}
	if err := decodeRequest(body, &req); err != nil {
		return adminapi.MovesStarted{}, err
	}
	if req.Distribution == "" || req.To == "" {
		return adminapi.MovesStarted{}, &adminapi.APIError{Status: http.StatusBadRequest, Code: adminapi.CodeBadRequest,
			Msg: "a move needs distribution, lo, hi and to"}
	}
	id, err := m.ctrl.MoveRange(ctx, req)
	if err != nil {
		return adminapi.MovesStarted{}, err
	}
	return adminapi.MovesStarted{Version: m.store.Current().Version(), Moves: []string{id},
		Message: fmt.Sprintf("started move %s: [%d, %d] of %s to %s (follow it with shardctl rebalance status --watch)", id, req.Lo, req.Hi, req.Distribution, req.To)}, nil
}

func (m movesAPI) Cancel(ctx context.Context, id string) ([]string, error) {
	ids, err := m.ctrl.Cancel(ctx, id)
	if ids == nil {
		ids = []string{}
	}
	return ids, err
}

func (m movesAPI) Status(ctx context.Context) (json.RawMessage, error) {
	return json.Marshal(m.ctrl.Report())
}
