package merge

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/shardproxy/shardproxy/test/pgcluster"
)

// randomJSON builds a JSON text that exercises jsonb_cmp: every type, top-
// level scalars and empty arrays (the raw-scalar anomaly), numbers equal
// in value but not in text, keys of different lengths, duplicate keys.
func randomJSON(r *rand.Rand, depth int) string {
	scalars := []func() string{
		func() string { return "null" },
		func() string { return []string{"true", "false"}[r.IntN(2)] },
		func() string {
			return []string{"0", "1", "1.0", "1.00", "-1", "2.5", "10", "-0.5", "100000000000000000000", "0.001", "7"}[r.IntN(11)]
		},
		func() string {
			return []string{`""`, `"a"`, `"b"`, `"ab"`, `"B"`, `"é"`, `"a\nb"`, `"\u00e9"`, `"zz"`, `"a b"`}[r.IntN(10)]
		},
	}
	if depth <= 0 || r.IntN(3) == 0 {
		return scalars[r.IntN(len(scalars))]()
	}
	n := r.IntN(4)
	parts := make([]string, n)
	if r.IntN(2) == 0 {
		for i := range parts {
			parts[i] = randomJSON(r, depth-1)
		}
		return "[" + strings.Join(parts, ", ") + "]"
	}
	keys := []string{"a", "b", "c", "aa", "bb", "abc", ""}
	for i := range parts {
		parts[i] = fmt.Sprintf("%q: %s", keys[r.IntN(len(keys))], randomJSON(r, depth-1))
	}
	return "{" + strings.Join(parts, ", ") + "}"
}

// TestJSONBOrderMatchesPostgres sorts random jsonb values with
// compareJSONB and with PostgreSQL's ORDER BY (C.UTF-8 database), and
// counts their distinct values with appendJSONBKey and with DISTINCT.
func TestJSONBOrderMatchesPostgres(t *testing.T) {
	c := pgcluster.StartT(t, pgcluster.Options{Shards: 1, Locale: "C.UTF-8"})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	conn, err := pgx.Connect(ctx, c.Shards[0].Primary.DSN("postgres"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())

	r := rand.New(rand.NewPCG(7, 11))
	texts := []string{"[]", "null", "{}", `[[]]`, `"a"`, "1", "[1]", "[null]"}
	for len(texts) < 3000 {
		texts = append(texts, randomJSON(r, 3))
	}
	c16 := codecFor(oidJSONB)
	parse := func(s string, format int16) value {
		raw := []byte(s)
		if format == 1 {
			raw = append([]byte{1}, raw...)
		}
		v, err := c16.decode(raw, format)
		if err != nil {
			t.Fatalf("%s: %v", s, err)
		}
		return v
	}

	// PostgreSQL's order, as it prints the values.
	rows, err := conn.Query(ctx, "SELECT v::text FROM unnest($1::text[]) AS t(s), LATERAL (SELECT s::jsonb AS v) j ORDER BY j.v", texts)
	if err != nil {
		t.Fatal(err)
	}
	pgOrder, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	var pgDistinct int
	if err := conn.QueryRow(ctx, "SELECT count(DISTINCT s::jsonb) FROM unnest($1::text[]) AS t(s)", texts).Scan(&pgDistinct); err != nil {
		t.Fatal(err)
	}

	for i, format := range []int16{0, 1} {
		vals := make([]value, len(texts))
		for j, s := range texts {
			vals[j] = parse(s, format)
		}
		slices.SortStableFunc(vals, func(a, b value) int { return c16.compare(a, b) })
		for j := range vals {
			want := parse(pgOrder[j], 0)
			if c16.compare(vals[j], want) != 0 {
				t.Fatalf("format %d: position %d: PostgreSQL sorts %s there, the merge %s (around: %q)", format, j, pgOrder[j], vals[j].b,
					pgOrder[max(0, j-2):min(len(pgOrder), j+3)])
			}
		}
		keys := map[string]bool{}
		for _, v := range vals {
			keys[string(c16.appendKey(nil, v))] = true
		}
		if len(keys) != pgDistinct {
			t.Errorf("format %d: %d distinct jsonb values by the merge's keys, %d by PostgreSQL", i, len(keys), pgDistinct)
		}
	}
	t.Logf("%d jsonb values, %d distinct, sorted and compared like PostgreSQL", len(texts), pgDistinct)
}
