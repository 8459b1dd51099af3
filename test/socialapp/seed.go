package socialapp

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
)

// SeedOptions say how much data Seed writes. Zero values take defaults.
type SeedOptions struct {
	Users int // users to create (default 10000)
	Posts int // posts to create (default 10 per user)
	// FollowsPerUser is the average number of users each user follows
	// (default 10, capped at Users-1); popular users get more followers.
	FollowsPerUser int
	// LikesPerPost is the average like count of a post (default 2); a few
	// posts get many more, like on a real site.
	LikesPerPost float64
	// Comments to create (default Posts/5).
	Comments int
	// BatchRows is the number of rows per multi-row INSERT (default 500).
	BatchRows int
	// Workers is the number of concurrent connections used (default 4).
	Workers int
	// Seed makes the generated data reproducible (0 = random).
	Seed uint64
	// Progress, if set, is called after each batch with the stage name
	// ("users", "follows", "posts", "comments"), rows done and rows total of
	// that stage. Calls may come from several goroutines, but never
	// concurrently.
	Progress func(stage string, done, total int)
}

// SeedResult counts what Seed wrote.
type SeedResult struct {
	Users, Follows, Posts, Likes, Comments int
	Elapsed                                time.Duration
	// AnalyzeErr is set when the final ANALYZE failed (the data is
	// complete; the planner statistics are just stale until autovacuum).
	AnalyzeErr error
}

var firstNames = []string{"Ada", "Alan", "Alice", "Amara", "Ana", "Arjun", "Ben", "Bruno", "Carla", "Chen",
	"Chloe", "Daniel", "Diego", "Elena", "Emma", "Farah", "Felix", "Grace", "Hana", "Hugo", "Ines", "Ivan",
	"Jamal", "Julia", "Kenji", "Lara", "Leo", "Lina", "Marco", "Maya", "Mei", "Nadia", "Noah", "Olga",
	"Omar", "Priya", "Rafael", "Sara", "Sofia", "Tariq", "Theo", "Yuki", "Zoe"}

var lastNames = []string{"Adams", "Baker", "Costa", "Dubois", "Evans", "Fischer", "Garcia", "Haddad",
	"Ivanova", "Jensen", "Kim", "Lopez", "Müller", "Nakamura", "Okafor", "Patel", "Quinn", "Rossi",
	"Silva", "Tanaka", "Usman", "Varga", "Wang", "Xu", "Yilmaz", "Zhang"}

var words = strings.Fields(`the a of to and in is it that for on with as at this was but be have from
not by are or we an they you all one so what there their if about more when up out new just time people
coffee today weekend city train music book film code postgres shard proxy cat dog rain sun morning night`)

// sentence returns n random words.
func sentence(r *rand.Rand, n int) string {
	var b strings.Builder
	for i := 0; i < n; i++ {
		if i > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(words[r.IntN(len(words))])
	}
	return b.String()
}

// valuesList returns "($1, $2), ($3, $4)" for rows×cols parameters.
func valuesList(rows, cols int) string {
	var b strings.Builder
	n := 1
	for i := 0; i < rows; i++ {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteByte('(')
		for j := 0; j < cols; j++ {
			if j > 0 {
				b.WriteString(", ")
			}
			b.WriteByte('$')
			b.WriteString(strconv.Itoa(n))
			n++
		}
		b.WriteByte(')')
	}
	return b.String()
}

// skewed returns an index in [0, n) where small indexes are much more
// likely (a rough power law: a few celebrities, a long tail).
func skewed(r *rand.Rand, n int) int {
	f := r.Float64()
	return int(float64(n) * f * f * f)
}

// progress serialises Progress calls.
type progress struct {
	mu    sync.Mutex
	f     func(string, int, int)
	stage string
	done  int
	total int
}

func (p *progress) start(stage string, total int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.stage, p.done, p.total = stage, 0, total
	if p.f != nil {
		p.f(stage, 0, total)
	}
}

func (p *progress) add(n int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.done += n
	if p.f != nil {
		p.f(p.stage, p.done, p.total)
	}
}

// parallel runs f(i) for i in [0, n) on workers goroutines and returns the
// first error (the others then stop early).
func parallel(ctx context.Context, workers, n int, f func(ctx context.Context, i int) error) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var next atomic.Int64
	var first error
	var once sync.Once
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= n || ctx.Err() != nil {
					return
				}
				if err := f(ctx, i); err != nil {
					once.Do(func() { first = err; cancel() })
					return
				}
			}
		}()
	}
	wg.Wait()
	if first == nil && ctx.Err() != nil {
		return ctx.Err()
	}
	return first
}

// Seed fills a migrated database with generated users, follows, posts,
// likes and comments using batched multi-row INSERTs (each batch keyed so a
// proxy can split it by shard). It adds to whatever is there: emails carry
// a per-run tag so a second run does not collide with the first.
func (s *Store) Seed(ctx context.Context, o SeedOptions) (SeedResult, error) {
	start := time.Now()
	if o.Users <= 0 {
		o.Users = 10000
	}
	if o.Posts < 0 {
		o.Posts = 0
	} else if o.Posts == 0 {
		o.Posts = 10 * o.Users
	}
	if o.FollowsPerUser == 0 {
		o.FollowsPerUser = 10
	}
	if o.FollowsPerUser > o.Users-1 {
		o.FollowsPerUser = o.Users - 1
	}
	if o.LikesPerPost == 0 {
		o.LikesPerPost = 2
	}
	if o.Comments == 0 {
		o.Comments = o.Posts / 5
	}
	if o.BatchRows <= 0 {
		o.BatchRows = 500
	}
	if o.Workers <= 0 {
		o.Workers = 4
	}
	if o.Seed == 0 {
		o.Seed = uint64(time.Now().UnixNano())
	}
	tag := strconv.FormatUint(o.Seed%(1<<40), 36)
	prog := &progress{f: o.Progress}
	var res SeedResult
	now := time.Now()

	// Users and their emails rows, one transaction per batch.
	userIDs := make([]int64, o.Users)
	nb := (o.Users + o.BatchRows - 1) / o.BatchRows
	prog.start("users", o.Users)
	err := parallel(ctx, o.Workers, nb, func(ctx context.Context, b int) error {
		r := rand.New(rand.NewPCG(o.Seed, uint64(b)))
		lo, hi := b*o.BatchRows, min((b+1)*o.BatchRows, o.Users)
		args := make([]any, 0, 4*(hi-lo))
		for i := lo; i < hi; i++ {
			first, last := firstNames[r.IntN(len(firstNames))], lastNames[r.IntN(len(lastNames))]
			email := strings.ToLower(fmt.Sprintf("%s.%s.%d.%s@example.com", first, asciiOnly(last), i, tag))
			country := Countries[r.IntN(len(Countries))][0]
			created := now.Add(-time.Duration(r.Int64N(int64(365 * 24 * time.Hour))))
			args = append(args, first+" "+last, email, country, created)
		}
		return pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
			rows, err := tx.Query(ctx, `INSERT INTO users (name, email, country_code, created_at) VALUES `+
				valuesList(hi-lo, 4)+` RETURNING id, email`, args...)
			if err != nil {
				return err
			}
			eargs := make([]any, 0, 2*(hi-lo))
			for rows.Next() {
				var id int64
				var email string
				if err := rows.Scan(&id, &email); err != nil {
					rows.Close()
					return err
				}
				// The email carries the user's index: put ids back in order.
				i, err := emailIndex(email)
				if err != nil || i < lo || i >= hi {
					rows.Close()
					return fmt.Errorf("unexpected email %q returned", email)
				}
				userIDs[i] = id
				eargs = append(eargs, email, id)
			}
			if err := rows.Err(); err != nil {
				return err
			}
			if len(eargs) != 2*(hi-lo) {
				return fmt.Errorf("insert users returned %d rows, want %d", len(eargs)/2, hi-lo)
			}
			_, err = tx.Exec(ctx, `INSERT INTO emails (email, user_id) VALUES `+valuesList(hi-lo, 2), eargs...)
			if err == nil {
				prog.add(hi - lo)
			}
			return err
		})
	})
	if err != nil {
		return res, fmt.Errorf("seed users: %w", err)
	}
	res.Users = o.Users

	// Follows: every user follows about FollowsPerUser others, popular
	// (low-index) users more often.
	follows, err := s.seedFollows(ctx, o, userIDs, prog)
	res.Follows = follows
	if err != nil {
		return res, fmt.Errorf("seed follows: %w", err)
	}

	// Posts with their like_count, then exactly that many likes per post.
	var postsMu sync.Mutex
	postKeys := make([][2]int64, 0, o.Posts)
	var likes atomic.Int64
	nb = (o.Posts + o.BatchRows - 1) / o.BatchRows
	prog.start("posts", o.Posts)
	err = parallel(ctx, o.Workers, nb, func(ctx context.Context, b int) error {
		r := rand.New(rand.NewPCG(o.Seed^0x9e3779b97f4a7c15, uint64(b)))
		lo, hi := b*o.BatchRows, min((b+1)*o.BatchRows, o.Posts)
		args := make([]any, 0, 4*(hi-lo))
		for i := lo; i < hi; i++ {
			author := userIDs[skewedAuthor(r, o.Users)]
			created := now.Add(-time.Duration(r.Int64N(int64(7 * 24 * time.Hour))))
			args = append(args, author, sentence(r, 5+r.IntN(20)), created, likeCount(r, o.LikesPerPost, o.Users))
		}
		rows, err := s.pool.Query(ctx, `INSERT INTO posts (author_id, body, created_at, like_count) VALUES `+
			valuesList(hi-lo, 4)+` RETURNING author_id, id, like_count`, args...)
		if err != nil {
			return err
		}
		type pk struct{ author, id, n int64 }
		var got []pk
		for rows.Next() {
			var p pk
			if err := rows.Scan(&p.author, &p.id, &p.n); err != nil {
				rows.Close()
				return err
			}
			got = append(got, p)
		}
		if err := rows.Err(); err != nil {
			return err
		}
		postsMu.Lock()
		for _, p := range got {
			postKeys = append(postKeys, [2]int64{p.author, p.id})
		}
		postsMu.Unlock()
		// Likes for this batch's posts, in batches of BatchRows rows.
		largs := make([]any, 0, 3*o.BatchRows)
		flush := func() error {
			if len(largs) == 0 {
				return nil
			}
			_, err := s.pool.Exec(ctx, `INSERT INTO likes (post_author_id, post_id, user_id) VALUES `+
				valuesList(len(largs)/3, 3), largs...)
			likes.Add(int64(len(largs) / 3))
			largs = largs[:0]
			return err
		}
		for _, p := range got {
			for _, u := range distinctUsers(r, int(p.n), userIDs) {
				largs = append(largs, p.author, p.id, u)
				if len(largs) == 3*o.BatchRows {
					if err := flush(); err != nil {
						return err
					}
				}
			}
		}
		if err := flush(); err != nil {
			return err
		}
		prog.add(hi - lo)
		return nil
	})
	res.Posts, res.Likes = len(postKeys), int(likes.Load())
	if err != nil {
		return res, fmt.Errorf("seed posts: %w", err)
	}

	// Comments on random posts by random users.
	if len(postKeys) > 0 {
		nb = (o.Comments + o.BatchRows - 1) / o.BatchRows
		prog.start("comments", o.Comments)
		err = parallel(ctx, o.Workers, nb, func(ctx context.Context, b int) error {
			r := rand.New(rand.NewPCG(o.Seed^0x5851f42d4c957f2d, uint64(b)))
			lo, hi := b*o.BatchRows, min((b+1)*o.BatchRows, o.Comments)
			args := make([]any, 0, 4*(hi-lo))
			for i := lo; i < hi; i++ {
				p := postKeys[r.IntN(len(postKeys))]
				args = append(args, p[0], p[1], userIDs[r.IntN(len(userIDs))], sentence(r, 3+r.IntN(12)))
			}
			_, err := s.pool.Exec(ctx, `INSERT INTO comments (post_author_id, post_id, author_id, body) VALUES `+
				valuesList(hi-lo, 4), args...)
			if err == nil {
				prog.add(hi - lo)
			}
			return err
		})
		if err != nil {
			return res, fmt.Errorf("seed comments: %w", err)
		}
		res.Comments = o.Comments
	}
	// Fresh statistics, so the first queries after seeding use the indexes.
	if _, err := s.pool.Exec(ctx, "ANALYZE "+strings.Join(AppTables, ", ")); err != nil {
		res.AnalyzeErr = err
	}
	res.Elapsed = time.Since(start)
	return res, nil
}

func (s *Store) seedFollows(ctx context.Context, o SeedOptions, userIDs []int64, prog *progress) (int, error) {
	if o.FollowsPerUser <= 0 {
		return 0, nil
	}
	perBatch := max(1, o.BatchRows/o.FollowsPerUser) // followers per batch
	nb := (o.Users + perBatch - 1) / perBatch
	var total atomic.Int64
	prog.start("follows", o.Users*o.FollowsPerUser)
	err := parallel(ctx, o.Workers, nb, func(ctx context.Context, b int) error {
		r := rand.New(rand.NewPCG(o.Seed^0x2545f4914f6cdd1d, uint64(b)))
		lo, hi := b*perBatch, min((b+1)*perBatch, o.Users)
		var args []any
		for i := lo; i < hi; i++ {
			seen := map[int]bool{i: true}
			for len(seen) <= o.FollowsPerUser {
				j := skewed(r, o.Users)
				if r.IntN(2) == 0 {
					j = r.IntN(o.Users) // half uniform, half skewed to popular users
				}
				if seen[j] {
					continue
				}
				seen[j] = true
				args = append(args, userIDs[i], userIDs[j])
			}
		}
		if len(args) == 0 {
			return nil
		}
		tag, err := s.pool.Exec(ctx, `INSERT INTO follows (follower_id, followee_id) VALUES `+
			valuesList(len(args)/2, 2)+` ON CONFLICT DO NOTHING`, args...)
		if err != nil {
			return err
		}
		total.Add(tag.RowsAffected())
		prog.add(len(args) / 2)
		return nil
	})
	return int(total.Load()), err
}

// skewedAuthor picks a user index: 30% of posts come from the most active
// 5% of users, the rest uniformly.
func skewedAuthor(r *rand.Rand, n int) int {
	if r.IntN(10) < 3 {
		return r.IntN(max(1, n/20))
	}
	return r.IntN(n)
}

// likeCount draws a like count with the given mean: mostly small, a heavy
// tail, at most users.
func likeCount(r *rand.Rand, mean float64, users int) int64 {
	// Exponential with the mean, and 1% of posts go viral (20× the mean).
	v := r.ExpFloat64() * mean
	if r.IntN(100) == 0 {
		v *= 20
	}
	return int64(min(int(v), users))
}

// distinctUsers returns n distinct user ids.
func distinctUsers(r *rand.Rand, n int, ids []int64) []int64 {
	if n >= len(ids) {
		return append([]int64(nil), ids...)
	}
	seen := make(map[int]bool, n)
	out := make([]int64, 0, n)
	for len(out) < n {
		j := r.IntN(len(ids))
		if !seen[j] {
			seen[j] = true
			out = append(out, ids[j])
		}
	}
	return out
}

func asciiOnly(s string) string {
	return strings.Map(func(r rune) rune {
		if r > 127 {
			return 'u'
		}
		return r
	}, s)
}

// emailIndex reads the user index out of a seeded email
// "<first>.<last>.<index>.<tag>@example.com".
func emailIndex(email string) (int, error) {
	parts := strings.Split(email, ".")
	if len(parts) < 5 {
		return 0, errors.New("not a seeded email")
	}
	return strconv.Atoi(parts[2])
}
