package compat

import (
	"fmt"
	"math/rand"
	"strconv"
	"strings"
	"testing"
)

// TestAggregatesRandomAcrossShards generates aggregate queries over users
// and posts — plain, DISTINCT and ordered aggregates, expressions over
// them, GROUP BY on columns and expressions, HAVING, ORDER BY on
// aggregates, LIMIT/OFFSET, DISTINCT — and checks each against
// PostgreSQL in every protocol mode: the same answer or 0A000, never a
// different answer. AGG_STATEMENTS=N runs N statements instead of 150.
func TestAggregatesRandomAcrossShards(t *testing.T) {
	runGenerated(t, "aggregates_random_reference", "AGG_STATEMENTS", randomAggregateQuery)
}

func randomAggregateQuery(rng *rand.Rand) string {
	pick := func(xs ...string) string { return xs[rng.Intn(len(xs))] }
	groups := [][]string{nil, {"level"}, {"active"}, {"country_code"}, {"level", "active"}, {"level % 3"}, {"date_trunc('month', created_at)"}}
	g := groups[rng.Intn(len(groups))]
	aggs := []string{
		"count(*)", "count(karma)", "sum(karma)", "avg(level)", "min(name COLLATE \"C\")", "max(created_at)",
		"count(DISTINCT country_code)", "sum(DISTINCT level)", "avg(DISTINCT flags)", "count(DISTINCT active)",
		"bool_and(active)", "bool_or(level > 5)", "string_agg(name, ',' ORDER BY id)", "array_agg(id ORDER BY id DESC)",
		"jsonb_agg(id ORDER BY id)", "sum(karma) / nullif(count(*), 0)", "round(avg(karma), 2)", "max(id) - min(id)",
		"count(*) FILTER (WHERE active)", "stddev_pop(level)", "variance(karma)",
	}
	var cols []string
	cols = append(cols, g...)
	for n := 1 + rng.Intn(4); n > 0; n-- {
		cols = append(cols, aggs[rng.Intn(len(aggs))]+" AS a"+strconv.Itoa(len(cols)))
	}
	q := "SELECT " + strings.Join(cols, ", ") + " FROM users"
	if rng.Intn(2) == 0 {
		q += " WHERE " + pick("id % 3 <> 0", "karma > 0", "level < 7", "country_code IS NOT NULL", fmt.Sprintf("id < %d", 50+rng.Intn(250)))
	}
	if len(g) > 0 {
		q += " GROUP BY " + strings.Join(g, ", ")
		if rng.Intn(3) == 0 {
			q += " HAVING " + pick("count(*) > 3", "sum(level) >= 10", "max(karma) > 0 OR min(karma) < -100", "count(DISTINCT country_code) > 1")
		}
	}
	// A total order over the output: every column, positions.
	var order []string
	for i := range cols {
		order = append(order, strconv.Itoa(i+1)+pick("", " DESC")+pick("", " NULLS FIRST", " NULLS LAST"))
	}
	rng.Shuffle(len(order), func(i, j int) { order[i], order[j] = order[j], order[i] })
	if len(g) > 0 {
		q += " ORDER BY " + strings.Join(order, ", ")
		switch rng.Intn(3) {
		case 0:
			q += fmt.Sprintf(" LIMIT %d", 1+rng.Intn(8))
		case 1:
			q += fmt.Sprintf(" LIMIT %d OFFSET %d", 1+rng.Intn(8), rng.Intn(4))
		}
	}
	return q
}
