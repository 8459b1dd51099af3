package socialapp

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Errors the Store returns, wrapped with a message that names the object;
// test with errors.Is. The HTTP layer maps them to 404, 409 and 400.
var (
	ErrNotFound = errors.New("not found")
	ErrConflict = errors.New("conflict")
	ErrInvalid  = errors.New("invalid")
)

// Limits on inputs.
const (
	DefaultLimit = 20
	MaxLimit     = 100
	MaxNameLen   = 100
	MaxBodyLen   = 5000
)

// User is a row of users.
type User struct {
	ID          int64     `json:"id"`
	Name        string    `json:"name"`
	Email       string    `json:"email"`
	CountryCode *string   `json:"country_code"`
	CreatedAt   time.Time `json:"created_at"`
}

// Profile is a user with its counters.
type Profile struct {
	User
	Followers     int64 `json:"followers"`
	Following     int64 `json:"following"`
	Posts         int64 `json:"posts"`
	LikesReceived int64 `json:"likes_received"`
}

// Post is a row of posts.
type Post struct {
	AuthorID  int64     `json:"author_id"`
	ID        int64     `json:"id"`
	Body      string    `json:"body"`
	CreatedAt time.Time `json:"created_at"`
	LikeCount int64     `json:"like_count"`
}

// Comment is a row of comments.
type Comment struct {
	PostAuthorID int64     `json:"post_author_id"`
	PostID       int64     `json:"post_id"`
	ID           int64     `json:"id"`
	AuthorID     int64     `json:"author_id"`
	Body         string    `json:"body"`
	CreatedAt    time.Time `json:"created_at"`
}

// Stats are totals, for the load generator and the demo.
type Stats struct {
	Users     int64 `json:"users"`
	Posts     int64 `json:"posts"`
	MinUserID int64 `json:"min_user_id"`
	MaxUserID int64 `json:"max_user_id"`
}

// Cursor is a keyset pagination position in a newest-first post list: the
// next page holds the posts strictly older than it in the order
// (created_at, author_id, id) descending.
type Cursor struct {
	CreatedAt time.Time
	AuthorID  int64
	ID        int64
}

// String encodes the cursor as "<unix microseconds>.<author_id>.<id>"
// (PostgreSQL timestamps have microsecond precision, so it round-trips).
func (c Cursor) String() string {
	return fmt.Sprintf("%d.%d.%d", c.CreatedAt.UnixMicro(), c.AuthorID, c.ID)
}

// ParseCursor reads what Cursor.String wrote.
func ParseCursor(s string) (Cursor, error) {
	parts := strings.Split(s, ".")
	if len(parts) != 3 {
		return Cursor{}, fmt.Errorf("%w: cursor %q is not <micros>.<author_id>.<id>", ErrInvalid, s)
	}
	var n [3]int64
	for i, p := range parts {
		v, err := strconv.ParseInt(p, 10, 64)
		if err != nil {
			return Cursor{}, fmt.Errorf("%w: cursor %q is not <micros>.<author_id>.<id>", ErrInvalid, s)
		}
		n[i] = v
	}
	return Cursor{CreatedAt: time.UnixMicro(n[0]).UTC(), AuthorID: n[1], ID: n[2]}, nil
}

// Page selects one page of a newest-first list: at most Limit posts (0 means
// DefaultLimit), older than Before when it is set.
type Page struct {
	Limit  int
	Before *Cursor
}

func (p Page) limit() (int, error) {
	return checkLimit(p.Limit)
}

func checkLimit(n int) (int, error) {
	if n == 0 {
		return DefaultLimit, nil
	}
	if n < 1 || n > MaxLimit {
		return 0, fmt.Errorf("%w: limit must be between 1 and %d, got %d", ErrInvalid, MaxLimit, n)
	}
	return n, nil
}

// NextCursor returns the cursor after the last post when the page is full
// (more may follow), else nil.
func NextCursor(posts []Post, limit int) *Cursor {
	if len(posts) == 0 || len(posts) < limit {
		return nil
	}
	last := posts[len(posts)-1]
	return &Cursor{CreatedAt: last.CreatedAt, AuthorID: last.AuthorID, ID: last.ID}
}

// Store runs the app's queries on a pgx pool. Safe for concurrent use.
type Store struct {
	pool *pgxpool.Pool
}

// Open connects a pool to dsn (a libpq URL or key=value string; pgxpool
// settings such as pool_max_conns may be given in it) and checks it with a
// ping.
func Open(ctx context.Context, dsn string) (*Store, error) {
	pool, err := pgxpool.New(ctx, dsn)
	if err != nil {
		return nil, fmt.Errorf("socialapp: %w", err)
	}
	if err := pool.Ping(ctx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("socialapp: %w", err)
	}
	return &Store{pool: pool}, nil
}

// Close closes the pool.
func (s *Store) Close() { s.pool.Close() }

// Pool returns the underlying pool (for the seeder and tests).
func (s *Store) Pool() *pgxpool.Pool { return s.pool }

// Ping checks the database.
func (s *Store) Ping(ctx context.Context) error { return s.pool.Ping(ctx) }

func pgCode(err error) (code, constraint string) {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return pe.Code, pe.ConstraintName
	}
	return "", ""
}

func checkText(what, s string, max int) error {
	if strings.TrimSpace(s) == "" {
		return fmt.Errorf("%w: %s must not be empty", ErrInvalid, what)
	}
	if !utf8.ValidString(s) || strings.ContainsRune(s, 0) {
		return fmt.Errorf("%w: %s must be valid UTF-8 without NUL", ErrInvalid, what)
	}
	if utf8.RuneCountInString(s) > max {
		return fmt.Errorf("%w: %s is longer than %d characters", ErrInvalid, what, max)
	}
	return nil
}

// CreateUser signs a user up. The email is trimmed and lower-cased; an
// address already registered is ErrConflict. countryCode may be empty (no
// country); an unknown code is ErrInvalid.
func (s *Store) CreateUser(ctx context.Context, name, email, countryCode string) (User, error) {
	name = strings.TrimSpace(name)
	email = strings.ToLower(strings.TrimSpace(email))
	if err := checkText("name", name, MaxNameLen); err != nil {
		return User{}, err
	}
	if err := checkText("email", email, 254); err != nil {
		return User{}, err
	}
	if at := strings.IndexByte(email, '@'); at < 1 || at == len(email)-1 {
		return User{}, fmt.Errorf("%w: email %q is not an address", ErrInvalid, email)
	}
	u := User{Name: name, Email: email}
	if countryCode != "" {
		cc := strings.ToUpper(countryCode)
		u.CountryCode = &cc
	}
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if err := tx.QueryRow(ctx,
			`INSERT INTO users (name, email, country_code) VALUES ($1, $2, $3) RETURNING id, created_at`,
			u.Name, u.Email, u.CountryCode).Scan(&u.ID, &u.CreatedAt); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, `INSERT INTO emails (email, user_id) VALUES ($1, $2)`, u.Email, u.ID)
		return err
	})
	switch code, _ := pgCode(err); {
	case err == nil:
	case code == "23505":
		return User{}, fmt.Errorf("%w: email %s is already registered", ErrConflict, u.Email)
	case code == "23503":
		return User{}, fmt.Errorf("%w: unknown country_code %q", ErrInvalid, *u.CountryCode)
	default:
		return User{}, fmt.Errorf("create user: %w", err)
	}
	u.CreatedAt = u.CreatedAt.UTC()
	return u, nil
}

// GetUser returns one user, or ErrNotFound.
func (s *Store) GetUser(ctx context.Context, id int64) (User, error) {
	var u User
	err := s.pool.QueryRow(ctx,
		`SELECT id, name, email, country_code, created_at FROM users WHERE id = $1`, id).
		Scan(&u.ID, &u.Name, &u.Email, &u.CountryCode, &u.CreatedAt)
	if errors.Is(err, pgx.ErrNoRows) {
		return User{}, fmt.Errorf("user %d: %w", id, ErrNotFound)
	}
	if err != nil {
		return User{}, fmt.Errorf("get user: %w", err)
	}
	u.CreatedAt = u.CreatedAt.UTC()
	return u, nil
}

// userExists returns ErrNotFound when the user does not exist.
func (s *Store) userExists(ctx context.Context, id int64) error {
	var one int
	err := s.pool.QueryRow(ctx, `SELECT 1 FROM users WHERE id = $1`, id).Scan(&one)
	if errors.Is(err, pgx.ErrNoRows) {
		return fmt.Errorf("user %d: %w", id, ErrNotFound)
	}
	if err != nil {
		return fmt.Errorf("check user: %w", err)
	}
	return nil
}

// Profile returns a user with its counters. Followers is counted over every
// shard (follows are stored with the follower); the other counters are
// single-shard.
func (s *Store) Profile(ctx context.Context, id int64) (Profile, error) {
	u, err := s.GetUser(ctx, id)
	if err != nil {
		return Profile{}, err
	}
	p := Profile{User: u}
	if err := s.pool.QueryRow(ctx, `SELECT count(*) FROM follows WHERE follower_id = $1`, id).Scan(&p.Following); err != nil {
		return Profile{}, fmt.Errorf("profile: following: %w", err)
	}
	if err := s.pool.QueryRow(ctx, `SELECT count(*) FROM follows WHERE followee_id = $1`, id).Scan(&p.Followers); err != nil {
		return Profile{}, fmt.Errorf("profile: followers: %w", err)
	}
	var likes *int64
	if err := s.pool.QueryRow(ctx, `SELECT count(*), sum(like_count) FROM posts WHERE author_id = $1`, id).Scan(&p.Posts, &likes); err != nil {
		return Profile{}, fmt.Errorf("profile: posts: %w", err)
	}
	if likes != nil {
		p.LikesReceived = *likes
	}
	return p, nil
}

// Follow makes follower follow followee. It reports whether anything
// changed (false: already following). Following oneself is ErrInvalid; an
// unknown user is ErrNotFound.
func (s *Store) Follow(ctx context.Context, follower, followee int64) (bool, error) {
	if follower == followee {
		return false, fmt.Errorf("%w: a user cannot follow themselves", ErrInvalid)
	}
	// followee_id has no foreign key (it lives on another shard): check first.
	if err := s.userExists(ctx, followee); err != nil {
		return false, err
	}
	tag, err := s.pool.Exec(ctx,
		`INSERT INTO follows (follower_id, followee_id) VALUES ($1, $2) ON CONFLICT DO NOTHING`, follower, followee)
	if code, _ := pgCode(err); code == "23503" {
		return false, fmt.Errorf("user %d: %w", follower, ErrNotFound)
	}
	if err != nil {
		return false, fmt.Errorf("follow: %w", err)
	}
	return tag.RowsAffected() == 1, nil
}

// Unfollow removes the follow; it reports whether one existed. When none
// did and either user does not exist, it returns ErrNotFound.
func (s *Store) Unfollow(ctx context.Context, follower, followee int64) (bool, error) {
	tag, err := s.pool.Exec(ctx, `DELETE FROM follows WHERE follower_id = $1 AND followee_id = $2`, follower, followee)
	if err != nil {
		return false, fmt.Errorf("unfollow: %w", err)
	}
	if tag.RowsAffected() == 1 {
		return true, nil
	}
	for _, id := range []int64{follower, followee} {
		if err := s.userExists(ctx, id); err != nil {
			return false, err
		}
	}
	return false, nil
}

// CreatePost adds a post by author, or returns ErrNotFound for an unknown
// author.
func (s *Store) CreatePost(ctx context.Context, author int64, body string) (Post, error) {
	if err := checkText("body", body, MaxBodyLen); err != nil {
		return Post{}, err
	}
	p := Post{AuthorID: author, Body: body}
	err := s.pool.QueryRow(ctx,
		`INSERT INTO posts (author_id, body) VALUES ($1, $2) RETURNING id, created_at`, author, body).
		Scan(&p.ID, &p.CreatedAt)
	if code, _ := pgCode(err); code == "23503" {
		return Post{}, fmt.Errorf("user %d: %w", author, ErrNotFound)
	}
	if err != nil {
		return Post{}, fmt.Errorf("create post: %w", err)
	}
	p.CreatedAt = p.CreatedAt.UTC()
	return p, nil
}

const postColumns = `author_id, id, body, created_at, like_count`

func scanPosts(rows pgx.Rows) ([]Post, error) {
	posts := []Post{}
	for rows.Next() {
		var p Post
		if err := rows.Scan(&p.AuthorID, &p.ID, &p.Body, &p.CreatedAt, &p.LikeCount); err != nil {
			rows.Close()
			return nil, err
		}
		p.CreatedAt = p.CreatedAt.UTC()
		posts = append(posts, p)
	}
	return posts, rows.Err()
}

// GetPost returns one post, or ErrNotFound.
func (s *Store) GetPost(ctx context.Context, author, id int64) (Post, error) {
	rows, err := s.pool.Query(ctx, `SELECT `+postColumns+` FROM posts WHERE author_id = $1 AND id = $2`, author, id)
	if err != nil {
		return Post{}, fmt.Errorf("get post: %w", err)
	}
	posts, err := scanPosts(rows)
	if err != nil {
		return Post{}, fmt.Errorf("get post: %w", err)
	}
	if len(posts) == 0 {
		return Post{}, fmt.Errorf("post %d/%d: %w", author, id, ErrNotFound)
	}
	return posts[0], nil
}

// CreateComment adds a comment by author on the post (postAuthor, postID).
// An unknown post or author is ErrNotFound.
func (s *Store) CreateComment(ctx context.Context, postAuthor, postID, author int64, body string) (Comment, error) {
	if err := checkText("body", body, MaxBodyLen); err != nil {
		return Comment{}, err
	}
	if err := s.userExists(ctx, author); err != nil {
		return Comment{}, err
	}
	c := Comment{PostAuthorID: postAuthor, PostID: postID, AuthorID: author, Body: body}
	err := s.pool.QueryRow(ctx,
		`INSERT INTO comments (post_author_id, post_id, author_id, body) VALUES ($1, $2, $3, $4) RETURNING id, created_at`,
		postAuthor, postID, author, body).Scan(&c.ID, &c.CreatedAt)
	if code, _ := pgCode(err); code == "23503" {
		return Comment{}, fmt.Errorf("post %d/%d: %w", postAuthor, postID, ErrNotFound)
	}
	if err != nil {
		return Comment{}, fmt.Errorf("create comment: %w", err)
	}
	c.CreatedAt = c.CreatedAt.UTC()
	return c, nil
}

// Comments returns the first limit comments of a post, oldest first.
func (s *Store) Comments(ctx context.Context, postAuthor, postID int64, limit int) ([]Comment, error) {
	limit, err := checkLimit(limit)
	if err != nil {
		return nil, err
	}
	rows, err := s.pool.Query(ctx,
		`SELECT post_author_id, post_id, id, author_id, body, created_at FROM comments
WHERE post_author_id = $1 AND post_id = $2 ORDER BY created_at, id LIMIT $3`, postAuthor, postID, limit)
	if err != nil {
		return nil, fmt.Errorf("comments: %w", err)
	}
	comments := []Comment{}
	for rows.Next() {
		var c Comment
		if err := rows.Scan(&c.PostAuthorID, &c.PostID, &c.ID, &c.AuthorID, &c.Body, &c.CreatedAt); err != nil {
			rows.Close()
			return nil, fmt.Errorf("comments: %w", err)
		}
		c.CreatedAt = c.CreatedAt.UTC()
		comments = append(comments, c)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("comments: %w", err)
	}
	return comments, nil
}

// Like records that user likes the post and increments its like_count in
// the same transaction. It reports whether anything changed (false: already
// liked) and the post's like_count afterwards. An unknown user or post is
// ErrNotFound.
func (s *Store) Like(ctx context.Context, postAuthor, postID, user int64) (changed bool, likeCount int64, err error) {
	// likes.user_id has no foreign key (users live on other shards): check first.
	if err := s.userExists(ctx, user); err != nil {
		return false, 0, err
	}
	err = pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx,
			`INSERT INTO likes (post_author_id, post_id, user_id) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING`,
			postAuthor, postID, user)
		if err != nil {
			return err
		}
		changed = tag.RowsAffected() == 1
		if changed {
			return tx.QueryRow(ctx,
				`UPDATE posts SET like_count = like_count + 1 WHERE author_id = $1 AND id = $2 RETURNING like_count`,
				postAuthor, postID).Scan(&likeCount)
		}
		return tx.QueryRow(ctx, `SELECT like_count FROM posts WHERE author_id = $1 AND id = $2`,
			postAuthor, postID).Scan(&likeCount)
	})
	if code, _ := pgCode(err); code == "23503" || errors.Is(err, pgx.ErrNoRows) {
		return false, 0, fmt.Errorf("post %d/%d: %w", postAuthor, postID, ErrNotFound)
	}
	if err != nil {
		return false, 0, fmt.Errorf("like: %w", err)
	}
	return changed, likeCount, nil
}

// Unlike removes the like and decrements like_count in one transaction. It
// reports whether a like existed and the like_count afterwards. An unknown
// post is ErrNotFound, and so is an unknown user when no like existed.
func (s *Store) Unlike(ctx context.Context, postAuthor, postID, user int64) (changed bool, likeCount int64, err error) {
	err = pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx,
			`DELETE FROM likes WHERE post_author_id = $1 AND post_id = $2 AND user_id = $3`, postAuthor, postID, user)
		if err != nil {
			return err
		}
		changed = tag.RowsAffected() == 1
		if changed {
			return tx.QueryRow(ctx,
				`UPDATE posts SET like_count = like_count - 1 WHERE author_id = $1 AND id = $2 RETURNING like_count`,
				postAuthor, postID).Scan(&likeCount)
		}
		return tx.QueryRow(ctx, `SELECT like_count FROM posts WHERE author_id = $1 AND id = $2`,
			postAuthor, postID).Scan(&likeCount)
	})
	if errors.Is(err, pgx.ErrNoRows) {
		return false, 0, fmt.Errorf("post %d/%d: %w", postAuthor, postID, ErrNotFound)
	}
	if err != nil {
		return false, 0, fmt.Errorf("unlike: %w", err)
	}
	if !changed {
		if err := s.userExists(ctx, user); err != nil {
			return false, 0, err
		}
	}
	return changed, likeCount, nil
}

// UserPosts returns one page of a user's posts, newest first. An unknown
// user is ErrNotFound.
func (s *Store) UserPosts(ctx context.Context, author int64, page Page) ([]Post, error) {
	limit, err := page.limit()
	if err != nil {
		return nil, err
	}
	var rows pgx.Rows
	if page.Before == nil {
		rows, err = s.pool.Query(ctx, `SELECT `+postColumns+` FROM posts WHERE author_id = $1
ORDER BY created_at DESC, author_id DESC, id DESC LIMIT $2`, author, limit)
	} else {
		b := page.Before
		rows, err = s.pool.Query(ctx, `SELECT `+postColumns+` FROM posts WHERE author_id = $1
AND (created_at, author_id, id) < ($2, $3, $4)
ORDER BY created_at DESC, author_id DESC, id DESC LIMIT $5`, author, b.CreatedAt, b.AuthorID, b.ID, limit)
	}
	if err != nil {
		return nil, fmt.Errorf("user posts: %w", err)
	}
	posts, err := scanPosts(rows)
	if err != nil {
		return nil, fmt.Errorf("user posts: %w", err)
	}
	if len(posts) == 0 {
		if err := s.userExists(ctx, author); err != nil {
			return nil, err
		}
	}
	return posts, nil
}

// Following returns the ids of the users user follows, ascending.
func (s *Store) Following(ctx context.Context, user int64) ([]int64, error) {
	rows, err := s.pool.Query(ctx, `SELECT followee_id FROM follows WHERE follower_id = $1 ORDER BY followee_id`, user)
	if err != nil {
		return nil, fmt.Errorf("following: %w", err)
	}
	ids, err := pgx.CollectRows(rows, pgx.RowTo[int64])
	if err != nil {
		return nil, fmt.Errorf("following: %w", err)
	}
	return ids, nil
}

// Timeline returns one page of the posts of the users user follows, newest
// first: the followee list is read first (one shard), then their posts (the
// shards owning them) with ORDER BY ... LIMIT. An unknown user is
// ErrNotFound.
func (s *Store) Timeline(ctx context.Context, user int64, page Page) ([]Post, error) {
	limit, err := page.limit()
	if err != nil {
		return nil, err
	}
	followees, err := s.Following(ctx, user)
	if err != nil {
		return nil, err
	}
	if len(followees) == 0 {
		if err := s.userExists(ctx, user); err != nil {
			return nil, err
		}
		return []Post{}, nil
	}
	var rows pgx.Rows
	if page.Before == nil {
		rows, err = s.pool.Query(ctx, `SELECT `+postColumns+` FROM posts WHERE author_id = ANY($1)
ORDER BY created_at DESC, author_id DESC, id DESC LIMIT $2`, followees, limit)
	} else {
		b := page.Before
		rows, err = s.pool.Query(ctx, `SELECT `+postColumns+` FROM posts WHERE author_id = ANY($1)
AND (created_at, author_id, id) < ($2, $3, $4)
ORDER BY created_at DESC, author_id DESC, id DESC LIMIT $5`, followees, b.CreatedAt, b.AuthorID, b.ID, limit)
	}
	if err != nil {
		return nil, fmt.Errorf("timeline: %w", err)
	}
	posts, err := scanPosts(rows)
	if err != nil {
		return nil, fmt.Errorf("timeline: %w", err)
	}
	return posts, nil
}

// Trending returns the most liked posts created at or after since, over all
// users: like_count descending, ties newest first. Posts without likes are
// not trending.
func (s *Store) Trending(ctx context.Context, since time.Time, limit int) ([]Post, error) {
	limit, err := checkLimit(limit)
	if err != nil {
		return nil, err
	}
	rows, err := s.pool.Query(ctx, `SELECT `+postColumns+` FROM posts WHERE created_at >= $1 AND like_count > 0
ORDER BY like_count DESC, created_at DESC, author_id DESC, id DESC LIMIT $2`, since, limit)
	if err != nil {
		return nil, fmt.Errorf("trending: %w", err)
	}
	posts, err := scanPosts(rows)
	if err != nil {
		return nil, fmt.Errorf("trending: %w", err)
	}
	return posts, nil
}

// escapeLike makes s match literally in a LIKE pattern (escape character \).
func escapeLike(s string) string {
	r := strings.NewReplacer(`\`, `\\`, `%`, `\%`, `_`, `\_`)
	return r.Replace(s)
}

// SearchUsers returns users whose name starts with prefix (case-sensitive,
// byte order), ordered by name then id.
func (s *Store) SearchUsers(ctx context.Context, prefix string, limit int) ([]User, error) {
	if err := checkText("prefix", prefix, MaxNameLen); err != nil {
		return nil, err
	}
	limit, err := checkLimit(limit)
	if err != nil {
		return nil, err
	}
	rows, err := s.pool.Query(ctx, `SELECT id, name, email, country_code, created_at FROM users
WHERE name LIKE $1 ORDER BY name, id LIMIT $2`, escapeLike(prefix)+"%", limit)
	if err != nil {
		return nil, fmt.Errorf("search users: %w", err)
	}
	users := []User{}
	for rows.Next() {
		var u User
		if err := rows.Scan(&u.ID, &u.Name, &u.Email, &u.CountryCode, &u.CreatedAt); err != nil {
			rows.Close()
			return nil, fmt.Errorf("search users: %w", err)
		}
		u.CreatedAt = u.CreatedAt.UTC()
		users = append(users, u)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("search users: %w", err)
	}
	return users, nil
}

// Stats returns totals over all shards.
func (s *Store) Stats(ctx context.Context) (Stats, error) {
	var st Stats
	var lo, hi *int64
	if err := s.pool.QueryRow(ctx, `SELECT count(*), min(id), max(id) FROM users`).Scan(&st.Users, &lo, &hi); err != nil {
		return Stats{}, fmt.Errorf("stats: %w", err)
	}
	if lo != nil {
		st.MinUserID, st.MaxUserID = *lo, *hi
	}
	if err := s.pool.QueryRow(ctx, `SELECT count(*) FROM posts`).Scan(&st.Posts); err != nil {
		return Stats{}, fmt.Errorf("stats: %w", err)
	}
	return st, nil
}
