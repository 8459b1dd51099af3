// Package e2e runs end-to-end suites: real PostgreSQL servers from
// test/pgcluster, a real shardproxy in front of them, real drivers (pgx) as
// clients. Tests assert what a user would check: rows, errors and SQLSTATEs,
// and what the servers saw (pg_stat_activity).
package e2e
