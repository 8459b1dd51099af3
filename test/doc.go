// Package test holds end-to-end and compatibility suites that run real
// PostgreSQL servers (through test/pgcluster) behind a real shardproxy, and the
// architecture test that keeps package imports pointing the way DESIGN.md says.
package test
