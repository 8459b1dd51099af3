package topology

import (
	"context"
	"sync"
	"sync/atomic"
)

// Store holds the current topology and is the only way to change it.
// Implementations: StaticStore (in memory) and topology/raftstore.
//
// Implementations are safe for concurrent use.
type Store interface {
	// Current returns the latest committed snapshot; never nil. It is one
	// atomic load, cheap enough to call per statement.
	Current() *Snapshot
	// Watch returns a channel that first receives the current snapshot and
	// then each newer one, in version order. A slow reader is never waited
	// for: it skips intermediate versions and gets the latest. The channel
	// is closed when ctx is done.
	Watch(ctx context.Context) <-chan *Snapshot
	// Apply applies cmd and returns the new snapshot once it is committed
	// (for a replicated store: durable on a quorum). Errors: those of
	// ApplyCommand, ctx's error, or the store's own (e.g. not the leader).
	Apply(ctx context.Context, cmd Command) (*Snapshot, error)
}

// StaticStore is a Store kept in memory, for tests, tiny setups and the
// static-config mode. Apply changes only this process's copy.
type StaticStore struct {
	cur atomic.Pointer[Snapshot]

	mu       sync.Mutex // serialises Apply and guards watchers
	watchers map[chan *Snapshot]struct{}
}

var _ Store = (*StaticStore)(nil)

// NewStaticStore returns a store whose current snapshot is snap (Empty() if
// nil).
func NewStaticStore(snap *Snapshot) *StaticStore {
	if snap == nil {
		snap = Empty()
	}
	s := &StaticStore{watchers: map[chan *Snapshot]struct{}{}}
	s.cur.Store(snap)
	return s
}

// Current implements Store.
func (s *StaticStore) Current() *Snapshot { return s.cur.Load() }

// Watch implements Store.
func (s *StaticStore) Watch(ctx context.Context) <-chan *Snapshot {
	ch := make(chan *Snapshot, 1)
	s.mu.Lock()
	ch <- s.cur.Load()
	s.watchers[ch] = struct{}{}
	s.mu.Unlock()
	go func() {
		<-ctx.Done()
		s.mu.Lock()
		delete(s.watchers, ch)
		close(ch)
		s.mu.Unlock()
	}()
	return ch
}

// Apply implements Store.
func (s *StaticStore) Apply(ctx context.Context, cmd Command) (*Snapshot, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	next, err := ApplyCommand(s.cur.Load(), cmd)
	if err != nil {
		return nil, err
	}
	s.publishLocked(next)
	return next, nil
}

// Replace installs snap as the current snapshot (e.g. after a config
// reload) and notifies watchers. snap's version must be greater than the
// current one.
func (s *StaticStore) Replace(snap *Snapshot) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if cur := s.cur.Load(); snap.Version() <= cur.Version() {
		return invalidf("replace topology: version %d is not newer than current %d", snap.Version(), cur.Version())
	}
	s.publishLocked(snap)
	return nil
}

// publishLocked stores next and hands it to every watcher without blocking:
// a watcher's one-slot buffer holds only the newest unread snapshot. Only
// this function sends, always under mu, so after draining a full slot the
// send cannot block.
func (s *StaticStore) publishLocked(next *Snapshot) {
	s.cur.Store(next)
	for ch := range s.watchers {
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
