package compat

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
)

// BenchmarkPullOutTimeline: the timeline query of a social app — the
// latest posts of the users someone follows — whose IN subquery (follows,
// distributed by follower) runs first through the proxy over 4 shards
// (plan.PullOut: one shard for the followees, then the posts of those
// authors on their shards, merged) vs the same statement on one
// PostgreSQL holding all the data (the corpus data set), both in the
// extended protocol from one client, one after the other in one run.
//
//	go test ./test/compat -run '^$' -bench PullOutTimeline -benchtime 3000x
func BenchmarkPullOutTimeline(b *testing.B) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	_, ref, sharded := startLoaded(b, ctx, "pullout_reference")
	const timeline = "SELECT * FROM posts WHERE author_id IN (SELECT followee_id FROM follows WHERE follower_id = $1) ORDER BY created_at DESC, author_id, id LIMIT 20"
	for _, side := range []struct {
		name string
		conn *pgconn.PgConn
	}{{"postgres", ref}, {"proxy", sharded}} {
		b.Run(side.name, func(b *testing.B) {
			rows := 0
			for i := 0; i < b.N; i++ {
				follower := []byte(strconv.Itoa(1 + i%numUsers))
				res := side.conn.ExecParams(ctx, timeline, [][]byte{follower}, nil, nil, nil).Read()
				if res.Err != nil {
					b.Fatal(res.Err)
				}
				rows += len(res.Rows)
			}
			b.ReportMetric(float64(rows)/float64(b.N), "rows/op")
		})
	}
}
