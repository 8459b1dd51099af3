package compat

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/shardproxy/shardproxy/planner/plan"
)

// TestAggregateExpressionsAcrossShards covers what the corpus cannot:
// expressions over aggregates evaluated in several batches, through a
// cursor and a row-limited portal, and EXPLAIN showing the step.
func TestAggregateExpressionsAcrossShards(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	_, ref, sharded := startLoaded(t, ctx, "aggexpr_reference")

	// More groups than one evaluation statement carries.
	many := "SELECT user_id, post_id, count(*) * 2 + user_id AS x, round(stddev_pop(post_author_id), 3), variance(post_author_id) FROM likes GROUP BY user_id, post_id ORDER BY user_id, post_id"
	for _, mode := range Modes {
		want := Run(ctx, ref, many, nil, mode)
		got := Run(ctx, sharded, many, nil, mode)
		if d := Diff(want, got, true); d != "" {
			t.Fatalf("%s: %s", mode, d)
		}
		if len(got.Rows) <= plan.EvalBatchRows {
			t.Fatalf("%d groups: the statement must need more than one batch of %d", len(got.Rows), plan.EvalBatchRows)
		}
	}

	// An untyped parameter takes the type PostgreSQL inferred for the
	// whole statement ($1 numeric from WHERE), not the one the evaluated
	// expression alone would imply (bigint: "10.5" would not parse).
	typed := "SELECT level, count(*) FROM users WHERE karma > $1 GROUP BY level HAVING sum(karma) > $1 * count(*) ORDER BY level"
	for _, mode := range []Mode{ExtendedText, ExtendedBinary} {
		want := Run(ctx, ref, typed, []string{"10.5"}, mode)
		got := Run(ctx, sharded, typed, []string{"10.5"}, mode)
		if want.Code != "" || len(want.Rows) == 0 {
			t.Fatalf("reference: %s %s", want.Code, want.Message)
		}
		if d := Diff(want, got, true); d != "" {
			t.Fatalf("%s: %s", mode, d)
		}
	}

	// A cursor over an evaluated aggregate, inside a transaction that
	// changed a row first: the evaluation sees the transaction's state.
	cursorScript := []string{
		"BEGIN",
		"UPDATE users SET karma = karma + 5000 WHERE id = 7",
		"DECLARE c CURSOR FOR SELECT level, round(avg(karma), 2), stddev(karma), count(*) * 10 FROM users GROUP BY level ORDER BY level",
		"FETCH 3 FROM c",
		"FETCH ALL FROM c",
		"CLOSE c",
		"ROLLBACK",
	}
	for _, sql := range cursorScript {
		want := Run(ctx, ref, sql, nil, Simple)
		got := Run(ctx, sharded, sql, nil, Simple)
		if d := Diff(want, got, true); d != "" {
			t.Fatalf("%s: %s", sql, d)
		}
	}

	// A portal read a few rows per Execute (PortalSuspended between).
	portalSQL := "SELECT level, round(avg(karma), 1), stddev_pop(flags) FROM users WHERE level > $1 GROUP BY level ORDER BY level"
	wantRows := Run(ctx, ref, portalSQL, []string{"1"}, ExtendedText).Rows
	conn := connect(t, ctx, fmt.Sprintf("postgres://postgres@%s/postgres?sslmode=disable", sharded.Conn().RemoteAddr()))
	fe := conn.Frontend()
	fe.Send(&pgproto3.Parse{Query: portalSQL})
	fe.Send(&pgproto3.Bind{Parameters: [][]byte{[]byte("1")}})
	fe.Send(&pgproto3.Execute{MaxRows: 2})
	fe.Send(&pgproto3.Execute{MaxRows: 2})
	fe.Send(&pgproto3.Execute{})
	fe.Send(&pgproto3.Sync{})
	if err := fe.Flush(); err != nil {
		t.Fatal(err)
	}
	var rows, kinds []string
	for done := false; !done; {
		msg, err := fe.Receive()
		if err != nil {
			t.Fatal(err)
		}
		switch m := msg.(type) {
		case *pgproto3.DataRow:
			vals := make([]string, len(m.Values))
			for i, v := range m.Values {
				vals[i] = fmt.Sprintf("%q", v)
				if v == nil {
					vals[i] = "NULL"
				}
			}
			rows = append(rows, strings.Join(vals, ","))
		case *pgproto3.PortalSuspended:
			kinds = append(kinds, fmt.Sprintf("suspended@%d", len(rows)))
		case *pgproto3.CommandComplete:
			kinds = append(kinds, string(m.CommandTag))
		case *pgproto3.ErrorResponse:
			t.Fatalf("portal: %s %s", m.Code, m.Message)
		case *pgproto3.ReadyForQuery:
			done = true
		}
	}
	if strings.Join(rows, "\n") != strings.Join(wantRows, "\n") {
		t.Fatalf("portal rows (%v):\n%s\nwant:\n%s", kinds, strings.Join(rows, "\n"), strings.Join(wantRows, "\n"))
	}
	if want := fmt.Sprintf("suspended@2 suspended@4 SELECT %d", len(wantRows)-4); strings.Join(kinds, " ") != want {
		t.Fatalf("portal messages %v, want %s", kinds, want)
	}

	// EXPLAIN names the step and its expression.
	ex := Run(ctx, sharded, "EXPLAIN SELECT round(avg(karma), 1) FROM users", nil, Simple)
	if ex.Code != "" || !strings.Contains(strings.Join(ex.Rows, "\n"), "Evaluate") || !strings.Contains(strings.Join(ex.Rows, "\n"), "round(v.c1, 1)") {
		t.Fatalf("EXPLAIN: %s %v", ex.Code, ex.Rows)
	}

	// Float variance is refused whatever the protocol, before any row.
	for _, mode := range Modes {
		if o := Run(ctx, sharded, "SELECT level, stddev(rating) FROM users GROUP BY level", nil, mode); o.Code != Refused {
			t.Fatalf("%s: float stddev: %s %s", mode, o.Code, o.Message)
		}
	}
}
