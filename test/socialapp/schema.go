package socialapp

import (
	"context"
	"fmt"
	"strings"
)

// schemaStatements create the schema. Each is idempotent (IF NOT EXISTS, ON
// CONFLICT DO NOTHING) and runs on its own, outside a transaction, so a proxy
// can broadcast each DDL statement to every shard.
var schemaStatements = []string{
	`CREATE TABLE IF NOT EXISTS countries (
	code text PRIMARY KEY,
	name text NOT NULL
)`,
	`CREATE TABLE IF NOT EXISTS users (
	id bigserial PRIMARY KEY,
	name text COLLATE "C" NOT NULL,
	email text NOT NULL,
	country_code text REFERENCES countries (code),
	created_at timestamptz NOT NULL DEFAULT now()
)`,
	`CREATE TABLE IF NOT EXISTS emails (
	email text PRIMARY KEY,
	user_id bigint NOT NULL
)`,
	`CREATE TABLE IF NOT EXISTS follows (
	follower_id bigint NOT NULL REFERENCES users (id),
	followee_id bigint NOT NULL,
	created_at timestamptz NOT NULL DEFAULT now(),
	PRIMARY KEY (follower_id, followee_id)
)`,
	`CREATE TABLE IF NOT EXISTS posts (
	author_id bigint NOT NULL REFERENCES users (id),
	id bigserial NOT NULL,
	body text NOT NULL,
	created_at timestamptz NOT NULL DEFAULT now(),
	like_count bigint NOT NULL DEFAULT 0,
	PRIMARY KEY (author_id, id)
)`,
	`CREATE TABLE IF NOT EXISTS comments (
	post_author_id bigint NOT NULL,
	post_id bigint NOT NULL,
	id bigserial NOT NULL,
	author_id bigint NOT NULL,
	body text NOT NULL,
	created_at timestamptz NOT NULL DEFAULT now(),
	PRIMARY KEY (post_author_id, id),
	FOREIGN KEY (post_author_id, post_id) REFERENCES posts (author_id, id)
)`,
	`CREATE TABLE IF NOT EXISTS likes (
	post_author_id bigint NOT NULL,
	post_id bigint NOT NULL,
	user_id bigint NOT NULL,
	created_at timestamptz NOT NULL DEFAULT now(),
	PRIMARY KEY (post_author_id, post_id, user_id),
	FOREIGN KEY (post_author_id, post_id) REFERENCES posts (author_id, id)
)`,
	`CREATE INDEX IF NOT EXISTS users_name_idx ON users (name, id)`,
	`CREATE INDEX IF NOT EXISTS follows_followee_idx ON follows (followee_id)`,
	`CREATE INDEX IF NOT EXISTS posts_author_created_idx ON posts (author_id, created_at DESC, id DESC)`,
	`CREATE INDEX IF NOT EXISTS posts_created_idx ON posts (created_at)`,
	`CREATE INDEX IF NOT EXISTS comments_post_idx ON comments (post_author_id, post_id, id)`,
}

// Countries are the rows of the countries reference table.
var Countries = [][2]string{
	{"AR", "Argentina"}, {"AU", "Australia"}, {"BR", "Brazil"}, {"CA", "Canada"},
	{"CN", "China"}, {"DE", "Germany"}, {"EG", "Egypt"}, {"ES", "Spain"},
	{"FR", "France"}, {"GB", "United Kingdom"}, {"IN", "India"}, {"IT", "Italy"},
	{"JP", "Japan"}, {"KE", "Kenya"}, {"KR", "South Korea"}, {"MX", "Mexico"},
	{"NG", "Nigeria"}, {"NL", "Netherlands"}, {"PL", "Poland"}, {"SE", "Sweden"},
	{"US", "United States"}, {"ZA", "South Africa"},
}

// AppTables are the tables the app writes, children first (the order to
// empty them in).
var AppTables = []string{"likes", "comments", "posts", "follows", "emails", "users"}

// Migrate creates the schema and fills the countries table. It is
// idempotent: running it again on a migrated database changes nothing.
func (s *Store) Migrate(ctx context.Context) error {
	for _, stmt := range schemaStatements {
		if _, err := s.pool.Exec(ctx, stmt); err != nil {
			return fmt.Errorf("migrate: %s: %w", firstLine(stmt), err)
		}
	}
	var b strings.Builder
	b.WriteString("INSERT INTO countries (code, name) VALUES ")
	args := make([]any, 0, 2*len(Countries))
	for i, c := range Countries {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "($%d, $%d)", 2*i+1, 2*i+2)
		args = append(args, c[0], c[1])
	}
	b.WriteString(" ON CONFLICT (code) DO NOTHING")
	if _, err := s.pool.Exec(ctx, b.String(), args...); err != nil {
		return fmt.Errorf("migrate: countries: %w", err)
	}
	return nil
}

// Reset deletes every row the app wrote (countries stay) and restarts the
// id sequences, so a test starts from an empty, known state. One TRUNCATE
// statement, which a proxy broadcasts to every shard.
func (s *Store) Reset(ctx context.Context) error {
	_, err := s.pool.Exec(ctx, "TRUNCATE "+strings.Join(AppTables, ", ")+" RESTART IDENTITY")
	if err != nil {
		return fmt.Errorf("reset: %w", err)
	}
	return nil
}

func firstLine(s string) string {
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i]
	}
	return s
}
