package pool

import (
	"log/slog"
	"sync"
)

// Set holds the pools of one proxy, one per Key, created on first use.
// Safe for concurrent use.
type Set struct {
	logger *slog.Logger
	mu     sync.RWMutex
	pools  map[Key]*Pool
	closed bool
}

// NewSet returns an empty set. logger (nil = discard) is given to pools
// whose Options carry no Logger.
func NewSet(logger *slog.Logger) *Set {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &Set{logger: logger, pools: make(map[Key]*Pool)}
}

// Get returns the pool for key, creating it with opts() on first use (opts
// is called at most once per created pool, under the set's lock). After
// Close, Get returns a closed pool whose Acquire fails with 57P01.
func (s *Set) Get(key Key, opts func() Options) *Pool {
	s.mu.RLock()
	p := s.pools[key]
	s.mu.RUnlock()
	if p != nil {
		return p
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if p = s.pools[key]; p != nil {
		return p
	}
	o := opts()
	if o.Logger == nil {
		o.Logger = s.logger
	}
	p = New(key, o)
	if s.closed {
		p.Close()
		return p
	}
	s.pools[key] = p
	return p
}

// Remove closes and forgets the pool for key (e.g. a user removed by a
// reload). Busy connections are closed as they are released.
func (s *Set) Remove(key Key) {
	s.mu.Lock()
	p := s.pools[key]
	delete(s.pools, key)
	s.mu.Unlock()
	if p != nil {
		p.Close()
	}
}

// Each calls f for every pool, on a snapshot taken under the lock (f may
// call Get or Remove).
func (s *Set) Each(f func(Key, *Pool)) {
	s.mu.RLock()
	keys := make([]Key, 0, len(s.pools))
	pools := make([]*Pool, 0, len(s.pools))
	for k, p := range s.pools {
		keys = append(keys, k)
		pools = append(pools, p)
	}
	s.mu.RUnlock()
	for i := range keys {
		f(keys[i], pools[i])
	}
}

// Close closes every pool; later Gets return closed pools.
func (s *Set) Close() {
	s.mu.Lock()
	s.closed = true
	pools := s.pools
	s.pools = make(map[Key]*Pool)
	s.mu.Unlock()
	for _, p := range pools {
		p.Close()
	}
}
