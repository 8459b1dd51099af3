package proxy

import (
	"fmt"
	"strconv"
	"strings"
	"sync"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/shardproxy/shardproxy/planner"
	"github.com/shardproxy/shardproxy/planner/plan"
	"github.com/shardproxy/shardproxy/proxy/pool"
	"github.com/shardproxy/shardproxy/topology"
)

// catalog caches, per distributed table, what the planner needs from the
// database schema: the column order (INSERT and COPY without a column
// list) and which columns have a generated default (bigserial, identity),
// which makes INSERTs that omit them take values from the cluster-wide
// allocator, so they are unique across shards. It is read from the default shard (every shard
// has the same schema for distributed tables) the first time a statement
// needs it and dropped after DDL the proxy broadcasts.
type catalog struct {
	mu     sync.Mutex
	tables map[string]*tableCatalog
}

type tableCatalog struct {
	cols      []string
	generated bool     // the distribution key column has a sequence or identity default
	others    []string // other columns (lower-case) with a sequence or identity BY DEFAULT default
}

func (c *catalog) get(table string) *tableCatalog {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.tables[table]
}

func (c *catalog) put(table string, t *tableCatalog) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.tables == nil {
		c.tables = make(map[string]*tableCatalog)
	}
	c.tables[table] = t
}

// invalidate forgets everything (after DDL).
func (c *catalog) invalidate() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.tables = nil
}

// plannerOptions wires the catalog into the planner's callbacks.
func (c *catalog) plannerOptions() planner.Options {
	return planner.Options{
		GeneratedKeys: func(table string) bool {
			t := c.get(table)
			return t != nil && t.generated
		},
		Columns: func(table string) []string {
			t := c.get(table)
			if t == nil {
				return nil
			}
			return append([]string(nil), t.cols...)
		},
		GeneratedColumns: func(table string) []string {
			if t := c.get(table); t != nil {
				return t.others
			}
			return nil
		},
	}
}

// loadCatalog makes sure the catalog knows the distributed tables that the
// INSERT and COPY statements of a write into.
func (ss *session) loadCatalog(snap *topology.Snapshot, a *planner.Analysis) error {
	for _, st := range a.Statements {
		if st.Kind != planner.KindInsert && st.Kind != planner.KindCopy {
			continue
		}
		for _, name := range st.Tables {
			t, ok := snap.Table(name)
			if !ok || t.Kind != topology.Distributed || ss.srv.catalog.get(name) != nil {
				continue
			}
			if err := ss.readTableCatalog(snap, name, t.KeyColumn); err != nil {
				return err
			}
		}
	}
	return nil
}

func (ss *session) readTableCatalog(snap *topology.Snapshot, table, key string) error {
	// Column 3: a non-key column may take an allocated value (GENERATED
	// ALWAYS identity columns refuse one).
	q := fmt.Sprintf(`SELECT a.attname, (a.attidentity <> '' OR coalesce(pg_get_expr(d.adbin, d.adrelid) LIKE 'nextval(%%', false))::text,
  (a.attidentity = 'd' OR coalesce(pg_get_expr(d.adbin, d.adrelid) LIKE 'nextval(%%', false))::text
FROM pg_attribute a LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
WHERE a.attrelid = to_regclass(%s) AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum`, quoteLiteral(table))
	rows, err := ss.defaultShardQuery(snap, q)
	if err != nil {
		return err
	}
	if len(rows) == 0 {
		return nil // no such table (yet): the shard will say so
	}
	t := &tableCatalog{}
	for _, r := range rows {
		t.cols = append(t.cols, r[0])
		switch {
		case strings.EqualFold(r[0], key):
			t.generated = r[1] == "true"
		case r[2] == "true":
			t.others = append(t.others, strings.ToLower(r[0]))
		}
	}
	ss.srv.catalog.put(table, t)
	return nil
}

// defaultShardQuery runs a read-only internal query on a connection of its
// own to the default shard (not the session's: it must not join the
// client's transaction) and returns the rows as text.
func (ss *session) defaultShardQuery(snap *topology.Snapshot, sql string) ([][]string, error) {
	p, err := ss.shardPool(snap, snap.DefaultShard())
	if err != nil {
		return nil, err
	}
	sc, err := p.Acquire(ss.srv.forceCtx)
	if err != nil {
		return nil, err
	}
	rows, err := simpleQuery(sc, sql)
	if err != nil {
		if _, ok := err.(*sqlError); ok {
			p.Release(sc, false)
		} else {
			sc.MarkBroken()
			p.Discard(sc)
		}
		return nil, err
	}
	p.Release(sc, false)
	return rows, nil
}

// simpleQuery runs sql on a pooled server connection through its
// Frontend and returns the rows as text (NULL as "").
func simpleQuery(sc *pool.ServerConn, sql string) ([][]string, error) {
	sc.Frontend.Send(&pgproto3.Query{String: sql})
	if err := sc.Frontend.Flush(); err != nil {
		return nil, &errServerGone{err}
	}
	var rows [][]string
	var first error
	for {
		msg, err := sc.Frontend.Receive()
		if err != nil {
			return nil, &errServerGone{err}
		}
		switch m := msg.(type) {
		case *pgproto3.DataRow:
			r := make([]string, len(m.Values))
			for i, v := range m.Values {
				r[i] = string(v)
			}
			rows = append(rows, r)
		case *pgproto3.ErrorResponse:
			if first == nil {
				first = &sqlError{errorFields{Code: m.Code, Message: m.Message, Detail: m.Detail, Hint: m.Hint}}
			}
		case *pgproto3.ReadyForQuery:
			return rows, first
		}
	}
}

// idAllocator hands out values for generated columns of distributed
// tables. Every shard has the column's sequence (the DDL was broadcast);
// the one on the default shard is the cluster-wide source, so keys are
// unique across shards and proxies. Keys are fetched in blocks.
type idAllocator struct {
	mu    sync.Mutex
	spare map[string][]int64 // table.column → unused keys
}

const idBlock = 64

// allocateFor returns the values an AllocateKeys plan needs, in parameter
// order: o.Count keys for o.Column, then each Extra column's values.
func (ss *session) allocateFor(snap *topology.Snapshot, o *plan.AllocateKeys) ([]string, error) {
	keys, err := ss.allocateKeys(snap, o.Table, o.Column, o.Count)
	if err != nil {
		return nil, err
	}
	for _, e := range o.Extra {
		more, err := ss.allocateKeys(snap, o.Table, e.Column, e.Count)
		if err != nil {
			return nil, err
		}
		keys = append(keys, more...)
	}
	return keys, nil
}

// allocateKeys returns n new values for the generated column table.column
// as text.
func (ss *session) allocateKeys(snap *topology.Snapshot, table, column string, n int) ([]string, error) {
	if n == 0 {
		return nil, nil
	}
	a := &ss.srv.ids
	k := table + "." + column
	a.mu.Lock()
	if a.spare == nil {
		a.spare = make(map[string][]int64)
	}
	if have := a.spare[k]; len(have) >= n {
		a.spare[k] = have[n:]
		a.mu.Unlock()
		return formatKeys(have[:n]), nil
	}
	a.mu.Unlock()
	// Fetch enough for this call plus a block for later ones, and take
	// this call's keys from its own fetch: sessions fetching at the same
	// time cannot take them away.
	q := fmt.Sprintf("SELECT nextval(pg_get_serial_sequence(%s, %s)) FROM generate_series(1, %d)",
		quoteLiteral(table), quoteLiteral(column), n+idBlock)
	rows, err := ss.defaultShardQuery(snap, q)
	if err != nil {
		return nil, err
	}
	vals := make([]int64, len(rows))
	for i, r := range rows {
		v, err := strconv.ParseInt(r[0], 10, 64)
		if err != nil {
			return nil, fmt.Errorf("key allocator: sequence of %s returned %q", k, r[0])
		}
		vals[i] = v
	}
	if len(vals) < n {
		return nil, fmt.Errorf("key allocator: not enough keys for %s", k)
	}
	a.mu.Lock()
	a.spare[k] = append(a.spare[k], vals[n:]...)
	a.mu.Unlock()
	return formatKeys(vals[:n]), nil
}

func formatKeys(keys []int64) []string {
	out := make([]string, len(keys))
	for i, v := range keys {
		out[i] = strconv.FormatInt(v, 10)
	}
	return out
}
