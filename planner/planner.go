package planner

import (
	"runtime"
	"sync/atomic"
)

// Options configures a Planner.
type Options struct {
	// CacheSize bounds the number of analyses cached by SQL text (LRU).
	// 0 means 10000; negative disables the cache.
	CacheSize int
	// CacheShards is the number of independently locked LRU shards; 1
	// gives one exact LRU under one mutex. Default: 1 when GOMAXPROCS ≤ 4,
	// else 16. Measured on 2 cores (BenchmarkAnalyzeCachedParallel), one
	// mutex costs ~30-37 ns per hit and 16 shards ~70 ns (hashing the key
	// costs more than the little contention saves); shards pay off only
	// with more cores.
	CacheShards int
	// GeneratedKeys reports whether the key column of a distributed table
	// (qualified name) has a generated default (bigserial, identity), so an
	// INSERT that omits it gets keys from the cluster-wide allocator (an
	// AllocateKeys plan). nil: no table has generated keys. A topology
	// field will replace this.
	GeneratedKeys func(table string) bool
	// GeneratedColumns returns the columns of a distributed table
	// (qualified name) other than its key that have a sequence default
	// (bigserial, identity BY DEFAULT), lower-case. An INSERT that omits
	// one (or gives DEFAULT) gets its values from the cluster-wide
	// allocator as well (AllocateKeys.Extra), so they are unique across
	// shards as on one server. nil: no such columns.
	GeneratedColumns func(table string) []string
	// Columns returns a table's column names in order (as the catalog
	// has them), used for INSERT without a column list. nil, or a nil
	// result, makes such INSERTs into distributed tables fail with 0A000.
	Columns func(table string) []string
}

// Planner analyses and plans statements. It is safe for concurrent use;
// its only state is the analysis cache.
type Planner struct {
	opts  Options
	cache *lruCache

	hits, misses atomic.Uint64 // cache lookups, for CacheStats
}

// New returns a Planner.
func New(opts Options) *Planner {
	if opts.CacheSize == 0 {
		opts.CacheSize = 10000
	}
	if opts.CacheShards == 0 {
		opts.CacheShards = 1
		if runtime.GOMAXPROCS(0) > 4 {
			opts.CacheShards = 16
		}
	}
	p := &Planner{opts: opts}
	if opts.CacheSize > 0 {
		p.cache = newLRU(opts.CacheSize, opts.CacheShards)
	}
	return p
}

// Analyze parses sql (PostgreSQL 17 grammar, pg_query) and returns its
// analysis, from the cache when the same text was analysed before. The
// result is shared and immutable.
//
// A syntax error is a *plan.Error with SQLSTATE 42601, PostgreSQL's
// message and the error position. The grammar is PostgreSQL's own, so the
// proxy can answer the client directly instead of forwarding the text to a
// shard; statements that only a newer server accepts are rejected the same
// way a 17 server would. Errors are cached too.
func (p *Planner) Analyze(sql string) (*Analysis, error) {
	if p.cache != nil {
		if a, err, ok := p.cache.get(sql); ok {
			p.hits.Add(1)
			return a, err
		}
		p.misses.Add(1)
	}
	a, err := analyze(sql)
	if p.cache != nil {
		p.cache.put(sql, a, err)
	}
	return a, err
}

// CacheStats returns how many Analyze calls the cache answered (hits) and
// how many had to parse (misses), since New. Both stay 0 without a cache.
func (p *Planner) CacheStats() (hits, misses uint64) { return p.hits.Load(), p.misses.Load() }

// CacheLen returns the number of cached analyses.
func (p *Planner) CacheLen() int {
	if p.cache == nil {
		return 0
	}
	return p.cache.len()
}
