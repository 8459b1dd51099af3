package compat

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
)

// TestJsonbAggAcrossShards: jsonb_agg over rows of several shards gives
// PostgreSQL's answer. With ORDER BY inside the aggregate the text must be
// identical (every element type of users, whole rows, NULLs, FILTER, GROUP
// BY, descending keys); without it PostgreSQL leaves the order open, so
// each array must hold the same elements.
func TestJsonbAggAcrossShards(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	_, ref, sharded := startLoaded(t, ctx, "jsonbagg_reference")

	exact := []string{
		"SELECT jsonb_agg(id ORDER BY id) FROM users WHERE level = 0",
		"SELECT jsonb_agg(u ORDER BY id) FROM users u WHERE id < 40",
		"SELECT jsonb_agg(birthday ORDER BY id DESC) FILTER (WHERE active) FROM users",
		"SELECT level, jsonb_agg(name ORDER BY id) FROM users GROUP BY level ORDER BY level",
		"SELECT country_code, jsonb_agg(karma ORDER BY id NULLS FIRST), count(*) FROM users GROUP BY country_code ORDER BY country_code NULLS FIRST",
		"SELECT jsonb_agg(jsonb_build_object('id', id, 'tags', ARRAY[level, flags]) ORDER BY id) FROM users WHERE id % 7 = 0",
		"SELECT jsonb_agg(id ORDER BY id) FROM users WHERE id < 0",
		"SELECT author_id, jsonb_agg(body ORDER BY id) FROM posts WHERE author_id < 5 GROUP BY author_id ORDER BY author_id",
	}
	for _, q := range exact {
		for _, mode := range Modes {
			want := Run(ctx, ref, q, nil, mode)
			if want.Code != "" {
				t.Fatalf("reference %q: %s %s", q, want.Code, want.Message)
			}
			got := Run(ctx, sharded, q, nil, mode)
			if d := Diff(want, got, true); d != "" {
				t.Fatalf("%s %q: %s", mode, q, d)
			}
		}
	}

	unordered := []string{
		"SELECT jsonb_agg(id) FROM users",
		"SELECT level, jsonb_agg(external_id) FROM users GROUP BY level ORDER BY level",
		"SELECT jsonb_agg(p) FILTER (WHERE like_count > 40) FROM posts p",
		"SELECT jsonb_agg(session_len) FROM users WHERE level = 2",
	}
	for _, q := range unordered {
		for _, format := range []int16{0, 1} {
			want, got := elementSets(t, ctx, ref, q, format), elementSets(t, ctx, sharded, q, format)
			if want != got {
				t.Fatalf("format %d %q: elements differ\nPostgreSQL: %.600s\nshardproxy: %.600s", format, q, want, got)
			}
		}
	}
}

// elementSets runs q with results in format and renders its rows with the
// elements of every JSON array value sorted.
func elementSets(t *testing.T, ctx context.Context, conn *pgconn.PgConn, q string, format int16) string {
	t.Helper()
	res := conn.ExecParams(ctx, q, nil, nil, nil, []int16{format}).Read()
	if res.Err != nil {
		t.Fatalf("%q: %v", q, res.Err)
	}
	var out []string
	for _, r := range res.Rows {
		var cols []string
		for i, v := range r {
			if v == nil {
				cols = append(cols, "NULL")
				continue
			}
			if res.FieldDescriptions[i].DataTypeOID != 3802 {
				cols = append(cols, fmt.Sprintf("%x", v))
				continue
			}
			if format == 1 { // binary jsonb: a version byte, then the text
				v = v[1:]
			}
			var elems []json.RawMessage
			if err := json.Unmarshal(v, &elems); err != nil {
				t.Fatalf("%q: %s is not a JSON array: %v", q, v, err)
			}
			texts := make([]string, len(elems))
			for i, e := range elems {
				texts[i] = string(e)
			}
			sort.Strings(texts)
			cols = append(cols, fmt.Sprint(len(texts), texts))
		}
		out = append(out, fmt.Sprint(cols))
	}
	return fmt.Sprint(out)
}
