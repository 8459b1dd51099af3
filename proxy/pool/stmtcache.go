package pool

// StmtCache is the set of server-side prepared statement names on one server
// connection, in least-recently-used order, bounded by a maximum. It is not
// safe for concurrent use: it belongs to whoever holds the ServerConn.
type StmtCache struct {
	max   int
	items map[string]*stmtEntry
	// root is the sentinel of a circular list; root.next is the most
	// recently used entry, root.prev the least recently used.
	root stmtEntry
}

type stmtEntry struct {
	name       string
	prev, next *stmtEntry
}

// NewStmtCache returns an empty cache holding at most max names (max < 1
// means 1).
func NewStmtCache(max int) *StmtCache {
	if max < 1 {
		max = 1
	}
	sc := &StmtCache{max: max, items: make(map[string]*stmtEntry)}
	sc.root.next, sc.root.prev = &sc.root, &sc.root
	return sc
}

// Max returns the bound.
func (c *StmtCache) Max() int { return c.max }

// Len returns how many names are in the cache.
func (c *StmtCache) Len() int { return len(c.items) }

// Has reports whether name is prepared on the connection and, if so, marks
// it most recently used.
func (c *StmtCache) Has(name string) bool {
	e, ok := c.items[name]
	if ok {
		c.moveToFront(e)
	}
	return ok
}

// Add records name as prepared (or marks it most recently used if already
// present) and returns the names evicted to stay within the bound, least
// recently used first. The caller must Close ('S') each evicted name on the
// server. The result is nil when nothing was evicted.
func (c *StmtCache) Add(name string) (evicted []string) {
	if e, ok := c.items[name]; ok {
		c.moveToFront(e)
		return nil
	}
	e := &stmtEntry{name: name}
	c.items[name] = e
	c.insertFront(e)
	for len(c.items) > c.max {
		lru := c.root.prev
		c.unlink(lru)
		delete(c.items, lru.name)
		evicted = append(evicted, lru.name)
	}
	return evicted
}

// Remove forgets name (after the caller closed it on the server).
func (c *StmtCache) Remove(name string) {
	if e, ok := c.items[name]; ok {
		c.unlink(e)
		delete(c.items, name)
	}
}

// Clear forgets every name (after DISCARD ALL or DEALLOCATE ALL).
func (c *StmtCache) Clear() {
	clear(c.items)
	c.root.next, c.root.prev = &c.root, &c.root
}

// Names returns the names from most to least recently used.
func (c *StmtCache) Names() []string {
	out := make([]string, 0, len(c.items))
	for e := c.root.next; e != &c.root; e = e.next {
		out = append(out, e.name)
	}
	return out
}

func (c *StmtCache) insertFront(e *stmtEntry) {
	e.prev = &c.root
	e.next = c.root.next
	c.root.next.prev = e
	c.root.next = e
}

func (c *StmtCache) unlink(e *stmtEntry) {
	e.prev.next = e.next
	e.next.prev = e.prev
	e.prev, e.next = nil, nil
}

func (c *StmtCache) moveToFront(e *stmtEntry) {
	if c.root.next == e {
		return
	}
	c.unlink(e)
	c.insertFront(e)
}
