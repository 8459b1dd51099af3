// Package pgcluster starts real PostgreSQL clusters from the installed server
// binaries: N primaries, each with M streaming replicas, on free loopback
// ports, as the postgres OS user when running as root, optionally under a
// cgroup CPU quota. It is a regular package (not only for tests) because
// `shardproxy dev` runs the same code.
//
// # Use
//
//	c := pgcluster.StartT(t, pgcluster.Options{Shards: 2, Replicas: 1})
//	conn, _ := pgx.Connect(ctx, c.Shards[0].Primary.DSN("postgres"))
//	...
//	c.WaitReplicasCaughtUp(ctx) // everything committed so far is on every replica
//
// Every server a Cluster starts is stopped by Cluster.Stop; StartT registers
// that with t.Cleanup (and logs the server logs' tails when the test failed)
// so servers stop also when a test fails.
//
// # Servers
//
// Each server is `postgres -D <dir>` run directly as a child process (no
// pg_ctl), in its own process group (a terminal's Ctrl-C reaches only the Go
// process, which can then stop servers in order), with a parent-death signal
// (SIGQUIT, an immediate shutdown) so servers do not outlive a killed Go
// process. The parent-death signal is tied to the forking OS thread, so all
// children are forked from one locked thread that never exits. Its output
// goes to <dir>/postgres.log.
//
// Settings pgcluster manages live in <dir>/pgcluster.conf, included from
// postgresql.conf and rewritten at every start: listen address, port, socket
// directory (the data dir, or a short temp dir when that path is too long for
// a socket), wal_level=logical, max_connections=600,
// max_prepared_transactions=100, replication settings, and, for temporary
// clusters only, fsync/full_page_writes/synchronous_commit off. Options.Settings
// is applied last and overrides them; ALTER SYSTEM still overrides all.
// pg_hba.conf is rewritten too: trust on local sockets; trust or, with
// Options.Password, scram-sha-256 for TCP from loopback and this host's
// addresses.
//
// Instances can be stopped, started, restarted, killed (SIGKILL to every
// server process: a crash) and, for replicas, promoted, to test failures.
// Cluster.RunTool runs the installed programs (pg_rewind …) as the servers'
// OS user, for repairs an operator does by hand. pg_rewind with
// --source-server fails on a Unix socket inside the source's data
// directory: give such a test a DataDir long enough that the sockets go to
// a temp dir (see socketDir).
//
// Replicas are pg_basebackup copies of their primary streaming through a
// physical slot named pgcluster_<shard>_replica<n> (created if missing
// whenever the replica starts), with primary_conninfo in pgcluster.conf so it
// follows the primary's port.
//
// # Data directories
//
// Layout under the root (Options.DataDir, or a temp dir removed by Stop):
// <root>/shard0/primary, <root>/shard0/replica1, ..., <root>/cluster.json
// (ports last used, persistent clusters only). A persistent root is locked
// for the cluster's lifetime (one cluster per directory); existing data
// directories are reused, not re-initialised, and get their recorded ports
// back when those are free. A primary directory that exists but was not
// completely initialised by pgcluster is refused, never wiped; an incomplete
// replica is taken again from its primary.
//
// # Ports and CPU
//
// Automatic ports come from 61000 up; each is checked with net.Listen and
// locked (flock in $TMPDIR/pgcluster-ports) until Stop, so parallel test
// binaries never pick the same one. A port taken by someone else between
// check and bind is replaced during Start.
//
// Options.CPUQuota puts each server (postmaster and every process it forks)
// in its own cgroup v1 group /sys/fs/cgroup/cpu/shardproxy-<pid>-<n>/<instance>
// with cpu.cfs_quota_us = quota × cpu.cfs_period_us (100000); groups are
// removed on Stop, and stale ones of dead processes on the next Start.
//
// # Concurrency
//
// Cluster and Instance methods are safe for concurrent use; Start, Stop,
// Restart and Kill of one instance are serialised. Instance fields are fixed
// once Start returns.
package pgcluster
