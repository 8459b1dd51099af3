// Package compat is the differential compatibility suite for cross-shard
// queries: a corpus of SQL statements over a social-app schema (users,
// follows, posts, comments, likes, emails, and the countries reference
// table) with deterministic data, run against one plain PostgreSQL
// database holding all the data and through shardproxy over 4 shards, in
// the simple protocol and the extended protocol with text and with binary
// results. Results are compared exactly: column names, type OIDs and
// modifiers, format codes, command tags, and the rows (in order when the
// statement has a top-level ORDER BY, as multisets otherwise). Errors are
// compared by SQLSTATE.
//
// Every case is either equal on both sides or an expected refusal with
// SQLSTATE 0A000 listed in the corpus (Case.Expect, with a note saying
// why); a case that answers differently — other rows, other columns, a
// refusal that is not listed, or a listed refusal that now succeeds —
// fails the suite.
//
// docs/compatibility.md is generated from the corpus: run
// `go test ./test/compat -run TestCompatibilityDoc -update` after changing
// the corpus; TestCompatibilityDoc fails while the document is stale.
//
// The suite needs the PostgreSQL server binaries (test/pgcluster) and
// starts one 4-shard cluster and one in-process proxy; the reference
// database lives on the first shard's server under its own name.
package compat
