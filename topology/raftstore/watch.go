package raftstore

import (
	"context"
	"sync"
	"sync/atomic"

	"github.com/shardproxy/shardproxy/topology"
)

// hub holds the served snapshot and the watchers. Only the FSM (through
// offer) changes cur; readers load it without locks.
type hub struct {
	cur atomic.Pointer[topology.Snapshot]

	mu       sync.Mutex // guards watchers and closed; offer sends under it
	watchers map[chan *topology.Snapshot]struct{}
	closed   bool
}

func newHub(s *topology.Snapshot) *hub {
	h := &hub{watchers: map[chan *topology.Snapshot]struct{}{}}
	h.cur.Store(s)
	return h
}

// watch registers a watcher whose one-slot channel first holds the current
// snapshot. The channel is closed when ctx is done or the hub is closed.
func (h *hub) watch(ctx context.Context) <-chan *topology.Snapshot {
	ch := make(chan *topology.Snapshot, 1)
	h.mu.Lock()
	ch <- h.cur.Load()
	if h.closed {
		close(ch)
		h.mu.Unlock()
		return ch
	}
	h.watchers[ch] = struct{}{}
	h.mu.Unlock()
	context.AfterFunc(ctx, func() {
		h.mu.Lock()
		defer h.mu.Unlock()
		if _, ok := h.watchers[ch]; ok {
			delete(h.watchers, ch)
			close(ch)
		}
	})
	return ch
}

// offer serves next unless the hub already serves a newer version (the
// last-applied cache while the FSM replays after a restart), and hands it
// to every watcher without blocking: a watcher's slot keeps only the
// newest unread snapshot. Sends happen only here, under mu, so after
// draining a full slot the send cannot block.
func (h *hub) offer(next *topology.Snapshot) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if next.Version() <= h.cur.Load().Version() {
		return
	}
	h.cur.Store(next)
	for ch := range h.watchers {
		select {
		case ch <- next:
		default:
			select {
			case <-ch:
			default:
			}
			ch <- next
		}
	}
}

// close closes every watcher channel; later watchers get the current
// snapshot and a closed channel.
func (h *hub) close() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.closed = true
	for ch := range h.watchers {
		delete(h.watchers, ch)
		close(ch)
	}
}
