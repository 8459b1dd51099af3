package router

import (
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"

	"github.com/shardproxy/shardproxy/topology"
)

// SQL text for the router's hash, so statements that run on a shard (move
// publications, verification, cleanup, ownership filters on fan-out reads
// during a move) can name a key range exactly as the router computes it
// (DESIGN.md decision 1).

// HashExpr returns the SQL expression that computes, on a shard, the int8
// hash the router uses for key column col (quoted by the caller) of a
// distribution with keys of type kt: PostgreSQL's own extended hash
// functions with seed 0 (DESIGN.md decision 1). Integer keys of any width
// go through hashint8extended, which gives the same value as
// hashint4extended for values that fit in int4, exactly as IntKey
// does; text keys use hashtextextended (deterministic collations hash the
// bytes); uuid keys use uuid_hash_extended. The expression uses built-in
// immutable functions only, so it is allowed in a publication row filter.
func HashExpr(kt topology.KeyType, col string) (string, error) {
	switch kt {
	case topology.Int:
		return "hashint8extended(" + col + "::int8, 0)", nil
	case topology.Text:
		return "hashtextextended(" + col + "::text, 0)", nil
	case topology.UUID:
		return "uuid_hash_extended(" + col + ", 0)", nil
	}
	return "", fmt.Errorf("no hash expression for key type %q", kt)
}

// RangeFilter returns a boolean SQL expression that is true exactly for rows
// whose key (column col, quoted) falls into one of spans: for hash
// distributions over HashExpr, for int range distributions over the key
// itself. Bounds are written as typed int8 literals so the comparison stays
// int8 (MinInt64 as a bare literal would be numeric).
func RangeFilter(scheme topology.Scheme, kt topology.KeyType, col string, spans []topology.Span) (string, error) {
	expr := col + "::int8"
	if scheme == topology.Hash {
		e, err := HashExpr(kt, col)
		if err != nil {
			return "", err
		}
		expr = e
	} else if kt != topology.Int {
		return "", fmt.Errorf("moves of %s distributions with %s keys are not supported", scheme, kt)
	}
	if len(spans) == 0 {
		return "false", nil
	}
	parts := make([]string, len(spans))
	for i, sp := range spans {
		switch {
		case sp.Lo == math.MinInt64 && sp.Hi == math.MaxInt64:
			parts[i] = "true"
		case sp.Lo == math.MinInt64:
			parts[i] = fmt.Sprintf("%s <= %s", expr, int8Lit(sp.Hi))
		case sp.Hi == math.MaxInt64:
			parts[i] = fmt.Sprintf("%s >= %s", expr, int8Lit(sp.Lo))
		default:
			parts[i] = fmt.Sprintf("%s BETWEEN %s AND %s", expr, int8Lit(sp.Lo), int8Lit(sp.Hi))
		}
	}
	if len(parts) == 1 {
		return "(" + parts[0] + ")", nil
	}
	return "((" + strings.Join(parts, ") OR (") + "))", nil
}

func int8Lit(v int64) string { return "'" + strconv.FormatInt(v, 10) + "'::int8" }

// MovingRowsFilter is RangeFilter for the rows of distribution d that a
// move of spans carries: keys pinned by a per-key override stay on their
// shard whatever their hash, so they are excluded (col NOT IN the pinned
// keys, as typed literals). A NULL key is in no span.
func MovingRowsFilter(d topology.Distribution, col string, spans []topology.Span) (string, error) {
	f, err := RangeFilter(d.Scheme, d.KeyType, col, spans)
	if err != nil || len(d.Overrides) == 0 || f == "false" {
		return f, err
	}
	keys := make([]string, 0, len(d.Overrides))
	for k := range d.Overrides {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	lits := make([]string, len(keys))
	for i, k := range keys {
		lit := "'" + strings.ReplaceAll(k, "'", "''") + "'"
		switch d.KeyType {
		case topology.Int:
			lits[i] = lit + "::int8"
		case topology.UUID:
			lits[i] = lit + "::uuid"
		default:
			lits[i] = lit + "::text"
		}
	}
	key := col + "::int8"
	switch d.KeyType {
	case topology.UUID:
		key = col
	case topology.Text:
		key = col + "::text"
	}
	return "(" + f + " AND " + key + " NOT IN (" + strings.Join(lits, ", ") + "))", nil
}
