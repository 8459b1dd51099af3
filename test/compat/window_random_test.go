package compat

import (
	"context"
	"fmt"
	"math/rand"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestWindowsRandomAcrossShards generates window queries over users —
// numbering, value and running functions, several windows, partitions,
// calls inside expressions, another ORDER BY, LIMIT/OFFSET, GROUP BY — and
// checks each against PostgreSQL in every protocol mode: the same answer,
// or 0A000 (refused), never a different answer. Orders end with the
// unique id so that PostgreSQL's own answer is deterministic.
func TestWindowsRandomAcrossShards(t *testing.T) {
	// A longer exploration: WINDOW_STATEMENTS=2000 go test -run TestWindowsRandomAcrossShards ./test/compat/
	runGenerated(t, "windows_random_reference", "WINDOW_STATEMENTS", randomWindowQuery)
}

// runGenerated runs 150 statements from gen (seeds 1, 2, …; the
// environment variable envVar asks for more) against PostgreSQL and
// through the proxy in every protocol mode: each must answer the same or
// be refused with 0A000 (the refusal reasons are logged), and at least
// half must be answered, or the generator no longer exercises the merge.
func runGenerated(t *testing.T, refDB, envVar string, gen func(*rand.Rand) string) {
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	_, ref, sharded := startLoaded(t, ctx, refDB)
	statements := int64(150)
	if n, err := strconv.ParseInt(os.Getenv(envVar), 10, 64); err == nil && n > 0 {
		statements = n
	}
	answered, refused := 0, 0
	reasons := map[string]int{} // refusal messages (without the shard list) and how often
	for seed := int64(1); seed <= statements; seed++ {
		q := gen(rand.New(rand.NewSource(seed)))
		for _, mode := range Modes {
			want := Run(ctx, ref, q, nil, mode)
			if want.Code != "" {
				t.Fatalf("seed %d: the generator made a statement PostgreSQL refuses (%s %s): %s", seed, want.Code, want.Message, q)
			}
			got := Run(ctx, sharded, q, nil, mode)
			if got.Code == "0A000" {
				refused++
				reasons[strings.SplitN(got.Message, " (", 2)[0]]++
				break
			}
			if d := Diff(want, got, true); d != "" {
				t.Fatalf("seed %d, %s: %s\n%s", seed, mode, q, d)
			}
			if mode == Modes[len(Modes)-1] {
				answered++
			}
		}
	}
	t.Logf("%d statements: %d answered like PostgreSQL in every mode, %d refused with 0A000", statements, answered, refused)
	for r, n := range reasons {
		t.Logf("refused %d×: %s", n, r)
	}
	if int64(answered) < statements/2 {
		t.Fatalf("only %d of %d generated statements were answered: the generator no longer exercises the merge", answered, statements)
	}
}

func randomWindowQuery(rng *rand.Rand) string {
	pick := func(xs ...string) string { return xs[rng.Intn(len(xs))] }
	grouped := rng.Intn(5) == 0
	if grouped {
		// Over groups the proxy aggregates: numbering and value functions of one aggregate.
		agg := pick("count(*)", "sum(karma)", "max(id)", "min(created_at)")
		order := pick("level", "level DESC", "count(*) DESC, level", "sum(karma) NULLS FIRST, level")
		var cols []string
		for n := 1 + rng.Intn(3); n > 0; n-- {
			cols = append(cols, pick(
				"rank() OVER (ORDER BY "+order+")",
				"row_number() OVER (ORDER BY "+order+")",
				"dense_rank() OVER (ORDER BY count(*), level)",
				"lag("+agg+") OVER (ORDER BY "+order+")",
				"lead("+agg+", 2) OVER (ORDER BY level)",
				"first_value("+agg+") OVER (ORDER BY "+order+")",
				"ntile(3) OVER (ORDER BY level DESC)",
			))
		}
		q := "SELECT level, " + agg + " AS a, " + strings.Join(cols, ", ") + " FROM users"
		if rng.Intn(2) == 0 {
			q += fmt.Sprintf(" WHERE id %% %d <> 0", 2+rng.Intn(5))
		}
		q += " GROUP BY level"
		if rng.Intn(3) == 0 {
			q += " HAVING count(*) > 5"
		}
		return q + " ORDER BY " + pick("level", "a DESC NULLS LAST, level", "2, 1") + limitClause(rng)
	}
	partition := pick("", "", "PARTITION BY level ", "PARTITION BY active ", "PARTITION BY country_code ")
	order := func() string {
		return pick("id", "id DESC", "karma NULLS FIRST, id", "karma DESC NULLS LAST, id", "created_at, id", "level, id DESC", "name COLLATE \"C\", id")
	}
	window := func() string { return "OVER (" + partition + "ORDER BY " + order() + ")" }
	call := func() string {
		switch rng.Intn(12) {
		case 0:
			return "row_number() " + window()
		case 1:
			return "rank() " + window()
		case 2:
			return "dense_rank() OVER (" + partition + "ORDER BY level)"
		case 3:
			return fmt.Sprintf("lag(%s, %d) %s", pick("id", "name", "karma", "birthday"), 1+rng.Intn(3), window())
		case 4:
			return fmt.Sprintf("lead(%s, %d, %s) %s", pick("id", "level"), 1+rng.Intn(3), pick("0", "-1", "level * 10"), window())
		case 5:
			return "first_value(name) " + window()
		case 6:
			return "sum(level) " + window()
		case 7:
			return "count(*) OVER (" + partition + "ORDER BY level)"
		case 8:
			return fmt.Sprintf("ntile(%d) %s", 2+rng.Intn(4), window())
		case 9:
			return "max(karma) " + window()
		case 10:
			return "avg(level) " + window()
		default:
			return "percent_rank() " + window()
		}
	}
	var cols []string
	for n := 1 + rng.Intn(3); n > 0; n-- {
		c := call()
		switch rng.Intn(4) {
		case 0:
			c = "coalesce((" + c + ")::text, 'none') || '/' || level"
		case 1:
			c += " AS w" + fmt.Sprint(len(cols))
		}
		cols = append(cols, c)
	}
	q := "SELECT id, level, " + strings.Join(cols, ", ") + " FROM users"
	if rng.Intn(2) == 0 {
		q += fmt.Sprintf(" WHERE id < %d", 20+rng.Intn(200))
	}
	switch rng.Intn(3) {
	case 0:
		return q + " ORDER BY id" + limitClause(rng)
	case 1:
		return q + " ORDER BY " + order() + limitClause(rng)
	default:
		return q + " ORDER BY level DESC, 3 DESC, id" + limitClause(rng)
	}
}

func limitClause(rng *rand.Rand) string {
	switch rng.Intn(3) {
	case 0:
		return fmt.Sprintf(" LIMIT %d", 1+rng.Intn(20))
	case 1:
		return fmt.Sprintf(" LIMIT %d OFFSET %d", 1+rng.Intn(20), rng.Intn(10))
	}
	return ""
}
