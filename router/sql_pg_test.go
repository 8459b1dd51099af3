package router_test

import (
	"context"
	"encoding/hex"
	"math"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/shardproxy/shardproxy/router"
	"github.com/shardproxy/shardproxy/test/pgcluster"
	"github.com/shardproxy/shardproxy/topology"
)

// TestRangeFilterSelectsWhatTheRouterRoutes checks on a real server that
// the SQL filter a move publishes selects exactly the keys the router puts
// in the moving spans (int, text and uuid keys; spans touching both ends of
// the hash space and one in the middle), and that it is a valid
// publication row filter.
func TestRangeFilterSelectsWhatTheRouterRoutes(t *testing.T) {
	c := pgcluster.StartT(t, pgcluster.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, c.Shards[0].Primary.DSN("postgres"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	spans := []topology.Span{
		{Lo: math.MinInt64, Hi: math.MinInt64 / 2},
		{Lo: -1 << 40, Hi: 1 << 60},
		{Lo: math.MaxInt64 / 4 * 3, Hi: math.MaxInt64},
	}
	in := func(h int64) bool {
		for _, s := range spans {
			if s.Lo <= h && h <= s.Hi {
				return true
			}
		}
		return false
	}
	if _, err := conn.Exec(ctx, `CREATE TABLE k_int (k bigint PRIMARY KEY); CREATE TABLE k_text (k text PRIMARY KEY); CREATE TABLE k_uuid (k uuid PRIMARY KEY);
		INSERT INTO k_int SELECT g * 7919 - 5000000 FROM generate_series(1, 3000) g;
		INSERT INTO k_text SELECT 'key-' || g FROM generate_series(1, 3000) g;
		INSERT INTO k_uuid SELECT md5(g::text)::uuid FROM generate_series(1, 3000) g`); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		table string
		kt    topology.KeyType
		hash  func(s string) int64
	}{
		{"k_int", topology.Int, func(s string) int64 {
			v, _ := strconv.ParseInt(s, 10, 64)
			return router.HashInt8(v)
		}},
		{"k_text", topology.Text, router.HashText},
		{"k_uuid", topology.UUID, func(s string) int64 {
			var u [16]byte
			b, _ := hex.DecodeString(strings.ReplaceAll(s, "-", ""))
			copy(u[:], b)
			return router.HashUUID(u)
		}},
	} {
		filter, err := router.RangeFilter(topology.Hash, tc.kt, `"k"`, spans)
		if err != nil {
			t.Fatal(err)
		}
		rows, err := conn.Query(ctx, "SELECT k::text, "+filter+" FROM "+tc.table+" t")
		if err != nil {
			t.Fatalf("%s: %v\n%s", tc.table, err, filter)
		}
		var key string
		var selected bool
		var n, picked int
		_, err = pgx.ForEachRow(rows, []any{&key, &selected}, func() error {
			n++
			if selected {
				picked++
			}
			if want := in(tc.hash(key)); selected != want {
				t.Errorf("%s key %s: filter says %v, the router's hash %d says %v", tc.table, key, selected, tc.hash(key), want)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		if n != 3000 || picked == 0 || picked == n {
			t.Errorf("%s: %d of %d keys selected; the spans should cut the keys", tc.table, picked, n)
		}
		if _, err := conn.Exec(ctx, "CREATE PUBLICATION p_"+tc.table+" FOR TABLE "+tc.table+" WHERE ("+filter+")"); err != nil {
			t.Errorf("%s: not a valid row filter: %v", tc.table, err)
		}
	}
	if f, _ := router.RangeFilter(topology.Hash, topology.Int, "k", nil); f != "false" {
		t.Errorf("no spans: %q", f)
	}
	if f, _ := router.RangeFilter(topology.Hash, topology.Int, "k", []topology.Span{{Lo: math.MinInt64, Hi: math.MaxInt64}}); f != "(true)" {
		t.Errorf("whole space: %q", f)
	}
	if _, err := router.RangeFilter(topology.RangeScheme, topology.Text, "k", spans); err == nil {
		t.Error("text range distributions have no int span filter, want an error")
	}
}
