// Package pgcluster starts real PostgreSQL clusters from the installed server
// binaries: N primaries, each with M streaming replicas, on free loopback
// ports, as the postgres OS user when running as root, optionally under a
// cgroup CPU quota. It is a regular package (not only for tests) because
// `shardproxy dev` runs the same code.
//
// Every server a Cluster starts is stopped by Cluster.Stop; StartT registers
// that with t.Cleanup so servers stop also when a test fails. Servers are
// started with a parent-death signal so they do not outlive a killed process.
package pgcluster
