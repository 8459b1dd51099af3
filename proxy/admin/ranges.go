package admin

import (
	"context"
	"fmt"
	"net/http"
	"sort"
	"strings"
	"sync"

	"github.com/jackc/pgx/v5"

	"github.com/shardproxy/shardproxy/topology"
)

// getRanges answers GET /v1/ranges[?distribution=D|table=T][&stats=1][&database=DB]:
// the range tables, and with stats the rows per range counted on the
// shards.
func (s *Server) getRanges(w http.ResponseWriter, r *http.Request) error {
	q := r.URL.Query()
	snap := s.store.Current()
	filter := ""
	if q.Get("distribution") != "" || q.Get("table") != "" {
		d, err := resolveDistribution(snap, q.Get("table"), q.Get("distribution"))
		if err != nil {
			return err
		}
		filter = d
	}
	stats := q.Get("stats") == "1" || q.Get("stats") == "true"
	db := q.Get("database")
	if db == "" {
		db = "postgres"
	}
	if stats && s.opts.ShardConn == nil {
		return &APIError{Status: http.StatusNotImplemented, Code: CodeUnavailable,
			Msg:  "this proxy cannot log in to the shards for range statistics",
			Hint: "ask without stats (shardctl ranges --stats=false)"}
	}
	out := Ranges{Version: snap.Version(), Distributions: []DistributionRanges{}}
	if stats {
		out.Database = db
	}
	for _, d := range snap.Distributions() {
		if filter != "" && d.Name != filter {
			continue
		}
		dr := DistributionRanges{Name: d.Name, Scheme: d.Scheme, KeyType: d.KeyType, Tables: []string{},
			TextRanges: d.TextRanges, ListValues: d.ListValues, Overrides: d.Overrides}
		for _, t := range snap.Tables() {
			if t.Kind == topology.Distributed && t.Distribution == d.Name {
				dr.Tables = append(dr.Tables, t.Name)
			}
		}
		for _, rg := range d.Ranges {
			ri := RangeInfo{Lo: rg.Lo, Hi: rg.Hi, Shard: rg.Shard}
			if d.Scheme == topology.Hash {
				ri.Fraction = rg.Fraction()
			}
			dr.Ranges = append(dr.Ranges, ri)
		}
		if stats && len(d.Ranges) > 0 && len(dr.Tables) > 0 {
			ctx, cancel := context.WithTimeout(r.Context(), s.opts.StatsTimeout)
			s.rangeStats(ctx, snap, d, db, &dr)
			cancel()
		}
		out.Distributions = append(out.Distributions, dr)
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

// bucketCount is what one shard holds of one table in one range.
type bucketCount struct {
	shard, table string
	idx          int // range index
	rows, bytes  int64
	relBytes     int64 // estimated share of pg_total_relation_size
}

// rangeStats counts, on every shard, the rows of each table of d per
// range with one scan per table:
//
//	SELECT width_bucket(hashint8extended(key, 0), $1::int8[]), count(*), sum(pg_column_size(t.*))
//	FROM table t GROUP BY 1
//
// where $1 holds the lower bounds of the range table (the hash functions
// are PostgreSQL's own, see package router). Keys pinned by the directory
// are left out. Rows found on a shard that does not own their range are
// reported as stray.
func (s *Server) rangeStats(ctx context.Context, snap *topology.Snapshot, d topology.Distribution, db string, dr *DistributionRanges) {
	los := make([]int64, len(d.Ranges))
	for i, rg := range d.Ranges {
		los[i] = rg.Lo
	}
	var pinned []string
	for k := range d.Overrides {
		pinned = append(pinned, k)
	}
	var mu sync.Mutex
	var counts []bucketCount
	var errs []string
	var wg sync.WaitGroup
	for _, sh := range snap.Shards() {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, e := s.shardRangeCounts(ctx, sh, d, dr.Tables, db, los, pinned)
			mu.Lock()
			counts = append(counts, c...)
			errs = append(errs, e...)
			mu.Unlock()
		}()
	}
	wg.Wait()
	sort.Strings(errs)
	dr.StatsError = errs
	failed := map[string]bool{}
	for _, e := range errs {
		failed[strings.SplitN(e, ":", 2)[0]] = true
	}
	for i := range dr.Ranges {
		if failed["shard "+dr.Ranges[i].Shard] {
			continue // unknown rather than zero
		}
		var rows, bytes, rel int64
		dr.Ranges[i].Rows, dr.Ranges[i].Bytes, dr.Ranges[i].RelationBytes = &rows, &bytes, &rel
		dr.Ranges[i].TableRows = map[string]int64{}
	}
	for _, c := range counts {
		rg := &dr.Ranges[c.idx]
		if rg.Shard != c.shard {
			dr.Stray = append(dr.Stray, StrayRows{Shard: c.shard, Table: c.table, Lo: rg.Lo, Hi: rg.Hi, Owner: rg.Shard, Rows: c.rows})
			continue
		}
		if rg.Rows == nil {
			continue
		}
		*rg.Rows += c.rows
		*rg.Bytes += c.bytes
		*rg.RelationBytes += c.relBytes
		rg.TableRows[c.table] += c.rows
	}
	sort.Slice(dr.Stray, func(i, j int) bool {
		a, b := dr.Stray[i], dr.Stray[j]
		if a.Shard != b.Shard {
			return a.Shard < b.Shard
		}
		if a.Table != b.Table {
			return a.Table < b.Table
		}
		return a.Lo < b.Lo
	})
}

// keyExpr is the SQL expression whose value the range table is over.
func keyExpr(d topology.Distribution, col string) string {
	c := pgx.Identifier{col}.Sanitize()
	if d.Scheme != topology.Hash {
		return c + "::int8"
	}
	switch d.KeyType {
	case topology.Text:
		return "hashtextextended(" + c + "::text, 0)"
	case topology.UUID:
		return "uuid_hash_extended(" + c + "::uuid, 0)"
	}
	return "hashint8extended(" + c + "::int8, 0)"
}

func quoteTable(name string) string {
	schema, table, ok := strings.Cut(name, ".")
	if !ok {
		return pgx.Identifier{name}.Sanitize()
	}
	return pgx.Identifier{schema, table}.Sanitize()
}

func (s *Server) shardRangeCounts(ctx context.Context, sh topology.Shard, d topology.Distribution, tables []string, db string, los []int64, pinned []string) ([]bucketCount, []string) {
	conn, err := s.opts.ShardConn(ctx, sh.Primary, db)
	if err != nil {
		return nil, []string{fmt.Sprintf("shard %s: connect to %s: %v", sh.Name, sh.Primary, err)}
	}
	defer conn.Close(context.Background())
	snap := s.store.Current()
	var out []bucketCount
	var errs []string
	for _, name := range tables {
		t, ok := snap.Table(name)
		if !ok {
			continue
		}
		qt := quoteTable(name)
		where := ""
		args := []any{los}
		if len(pinned) > 0 {
			where = fmt.Sprintf(" WHERE %s::text <> ALL($2::text[])", pgx.Identifier{t.KeyColumn}.Sanitize())
			args = append(args, pinned)
		}
		sql := fmt.Sprintf("SELECT width_bucket(%s, $1::int8[]) AS b, count(*), coalesce(sum(pg_column_size(t.*)), 0)::int8 FROM %s t%s GROUP BY 1",
			keyExpr(d, t.KeyColumn), qt, where)
		rows, err := conn.Query(ctx, sql, args...)
		if err != nil {
			errs = append(errs, fmt.Sprintf("shard %s: %s: %v", sh.Name, name, err))
			continue
		}
		var got []bucketCount
		var total int64
		for rows.Next() {
			var b *int32
			var n, bytes int64
			if err := rows.Scan(&b, &n, &bytes); err != nil {
				rows.Close()
				errs = append(errs, fmt.Sprintf("shard %s: %s: %v", sh.Name, name, err))
				break
			}
			total += n
			if b == nil || *b < 1 || int(*b) > len(los) {
				continue // NULL keys, or below the first range of a range scheme
			}
			got = append(got, bucketCount{shard: sh.Name, table: name, idx: int(*b) - 1, rows: n, bytes: bytes})
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			errs = append(errs, fmt.Sprintf("shard %s: %s: %v", sh.Name, name, err))
			continue
		}
		var rel int64
		if err := conn.QueryRow(ctx, "SELECT pg_total_relation_size($1::regclass)", qt).Scan(&rel); err == nil && total > 0 {
			for i := range got {
				got[i].relBytes = int64(float64(rel) * float64(got[i].rows) / float64(total))
			}
		}
		out = append(out, got...)
	}
	return out, errs
}
