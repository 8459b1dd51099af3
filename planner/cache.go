package planner

import (
	"hash/maphash"
	"sync"
)

// lruCache is a bounded LRU map from SQL text to analysis results, split
// into independently locked shards so concurrent sessions rarely contend.
// Each shard holds at most ceil(size/len(shards)) entries.
type lruCache struct {
	seed   maphash.Seed
	shards []lruShard
}

type lruEntry struct {
	key        string
	a          *Analysis
	err        error
	prev, next *lruEntry
}

type lruShard struct {
	mu   sync.Mutex
	cap  int
	m    map[string]*lruEntry
	head lruEntry // sentinel: head.next is most recent
	_    [32]byte // keep shards' locks on separate cache lines
}

func newLRU(size, nshards int) *lruCache {
	if nshards < 1 {
		nshards = 1
	}
	if size < nshards {
		nshards = 1
	}
	c := &lruCache{seed: maphash.MakeSeed(), shards: make([]lruShard, nshards)}
	per := (size + nshards - 1) / nshards
	for i := range c.shards {
		s := &c.shards[i]
		s.cap = per
		s.m = make(map[string]*lruEntry)
		s.head.next, s.head.prev = &s.head, &s.head
	}
	return c
}

func (c *lruCache) shard(key string) *lruShard {
	if len(c.shards) == 1 {
		return &c.shards[0]
	}
	return &c.shards[maphash.String(c.seed, key)%uint64(len(c.shards))]
}

func (c *lruCache) get(key string) (*Analysis, error, bool) {
	s := c.shard(key)
	s.mu.Lock()
	e, ok := s.m[key]
	if ok {
		s.unlink(e)
		s.pushFront(e)
	}
	s.mu.Unlock()
	if !ok {
		return nil, nil, false
	}
	return e.a, e.err, true
}

func (c *lruCache) put(key string, a *Analysis, err error) {
	if c == nil {
		return
	}
	s := c.shard(key)
	s.mu.Lock()
	defer s.mu.Unlock()
	if e, ok := s.m[key]; ok {
		s.unlink(e)
		s.pushFront(e)
		return
	}
	e := &lruEntry{key: key, a: a, err: err}
	s.m[key] = e
	s.pushFront(e)
	for len(s.m) > s.cap {
		old := s.head.prev
		s.unlink(old)
		delete(s.m, old.key)
	}
}

func (c *lruCache) len() int {
	n := 0
	for i := range c.shards {
		s := &c.shards[i]
		s.mu.Lock()
		n += len(s.m)
		s.mu.Unlock()
	}
	return n
}

func (s *lruShard) unlink(e *lruEntry) {
	e.prev.next = e.next
	e.next.prev = e.prev
}

func (s *lruShard) pushFront(e *lruEntry) {
	e.prev = &s.head
	e.next = s.head.next
	s.head.next.prev = e
	s.head.next = e
}
