// Package socialapp is the reference application for shardproxy: a small
// social network (users, follows, posts, comments, likes, and a countries
// reference table) with a JSON HTTP API, a seeder and a load generator.
//
// It is written the way a team that plans to shard by user would write it,
// and runs unchanged on one PostgreSQL server and through shardproxy: plain
// SQL, no hints, no proxy-specific code; its only setting is the DSN.
//
// # Schema and sharding
//
// Every table except countries carries the user it belongs to as the first
// column of its primary key, so all rows of one user (and the likes and
// comments on that user's posts) live on one shard:
//
//	users     PK (id)                                  key id
//	emails    PK (email)                               key email (own distribution)
//	follows   PK (follower_id, followee_id)            key follower_id
//	posts     PK (author_id, id)                       key author_id
//	comments  PK (post_author_id, id)                  key post_author_id
//	likes     PK (post_author_id, post_id, user_id)    key post_author_id
//	countries PK (code)                                reference (copy on every shard)
//
// Following the Citus rule, every primary key and unique constraint contains
// the shard key, and foreign keys exist only between rows that are on the
// same shard (same key) or point at the reference table. References that
// cross shards (follows.followee_id, comments.author_id, likes.user_id) are
// checked by the application before it writes, not by a constraint.
//
// A unique users.email cannot be enforced per shard, because two users with
// the same address may hash to different shards. Instead the emails table
// (PK email) is sharded by the address itself, like a Vitess lookup vindex:
// sign-up inserts the user and its emails row in one transaction, so a
// duplicate address fails the whole sign-up with 23505 (HTTP 409). Through a
// proxy that transaction spans two shards and commits with two-phase commit.
// users.email is a plain, non-unique copy for display.
//
// users.name is declared COLLATE "C" so that ORDER BY name and LIKE 'ab%'
// use byte order on every server whatever its default collation: a proxy
// merging per-shard sorted streams then gets the same order as one server.
//
// sharding.yaml in this directory is the intended topology.Spec.
//
// # Determinism
//
// Every list has a total order (ties broken by the primary key) so a result
// through a proxy equals the result on one server row for row: timelines and
// post lists are ordered by (created_at, author_id, id) descending, trending
// by like_count descending then that order, search by (name, id).
//
// # Idempotent writes
//
// Follow, unfollow, like and unlike are idempotent: repeating one returns 200
// with "changed": false instead of 409, so a client may retry after a lost
// reply (e.g. during a proxy failover) without an error or a double count.
// A like and its like_count increment commit in one transaction.
//
// # Concurrency
//
// Store and the HTTP handler are safe for concurrent use.
package socialapp
