package socialapp

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"text/tabwriter"
	"time"
)

// Op is one kind of request the load generator makes.
type Op string

// The operations, and their share of the default mix (percent).
const (
	OpTimeline  Op = "timeline"   // 40
	OpProfile   Op = "profile"    // 15
	OpUserPosts Op = "user_posts" // 10
	OpTrending  Op = "trending"   // 5
	OpSearch    Op = "search"     // 5
	OpLike      Op = "like"       // 9
	OpUnlike    Op = "unlike"     // 2
	OpPost      Op = "post"       // 6
	OpComment   Op = "comment"    // 4
	OpFollow    Op = "follow"     // 3
	OpUnfollow  Op = "unfollow"   // 1
)

// DefaultMix is a read-mostly mix: 75% reads, 25% writes.
var DefaultMix = map[Op]int{
	OpTimeline: 40, OpProfile: 15, OpUserPosts: 10, OpTrending: 5, OpSearch: 5,
	OpLike: 9, OpUnlike: 2, OpPost: 6, OpComment: 4, OpFollow: 3, OpUnfollow: 1,
}

// Client is what the load generator drives: the Store directly
// (StoreClient) or the HTTP API (HTTPClient). Errors wrapping ErrNotFound
// are counted as "not found", not as errors (random ids may have gaps).
type Client interface {
	Stats(ctx context.Context) (Stats, error)
	Timeline(ctx context.Context, user int64, limit int) ([]Post, error)
	Profile(ctx context.Context, user int64) error
	UserPosts(ctx context.Context, user int64, limit int) ([]Post, error)
	Trending(ctx context.Context, hours, limit int) error
	Search(ctx context.Context, prefix string, limit int) error
	Like(ctx context.Context, author, id, user int64) error
	Unlike(ctx context.Context, author, id, user int64) error
	Post(ctx context.Context, author int64, body string) (Post, error)
	Comment(ctx context.Context, author, id, user int64, body string) error
	Follow(ctx context.Context, user, other int64) error
	Unfollow(ctx context.Context, user, other int64) error
}

// StoreClient drives a Store directly.
type StoreClient struct{ S *Store }

var _ Client = StoreClient{}

func (c StoreClient) Stats(ctx context.Context) (Stats, error) { return c.S.Stats(ctx) }
func (c StoreClient) Timeline(ctx context.Context, u int64, limit int) ([]Post, error) {
	return c.S.Timeline(ctx, u, Page{Limit: limit})
}
func (c StoreClient) Profile(ctx context.Context, u int64) error {
	_, err := c.S.Profile(ctx, u)
	return err
}
func (c StoreClient) UserPosts(ctx context.Context, u int64, limit int) ([]Post, error) {
	return c.S.UserPosts(ctx, u, Page{Limit: limit})
}
func (c StoreClient) Trending(ctx context.Context, hours, limit int) error {
	_, err := c.S.Trending(ctx, time.Now().Add(-time.Duration(hours)*time.Hour), limit)
	return err
}
func (c StoreClient) Search(ctx context.Context, prefix string, limit int) error {
	_, err := c.S.SearchUsers(ctx, prefix, limit)
	return err
}
func (c StoreClient) Like(ctx context.Context, a, id, u int64) error {
	_, _, err := c.S.Like(ctx, a, id, u)
	return err
}
func (c StoreClient) Unlike(ctx context.Context, a, id, u int64) error {
	_, _, err := c.S.Unlike(ctx, a, id, u)
	return err
}
func (c StoreClient) Post(ctx context.Context, a int64, body string) (Post, error) {
	return c.S.CreatePost(ctx, a, body)
}
func (c StoreClient) Comment(ctx context.Context, a, id, u int64, body string) error {
	_, err := c.S.CreateComment(ctx, a, id, u, body)
	return err
}
func (c StoreClient) Follow(ctx context.Context, u, o int64) error {
	_, err := c.S.Follow(ctx, u, o)
	return err
}
func (c StoreClient) Unfollow(ctx context.Context, u, o int64) error {
	_, err := c.S.Unfollow(ctx, u, o)
	return err
}

// HTTPClient drives the HTTP API at BaseURL (e.g. "http://127.0.0.1:8080").
type HTTPClient struct {
	BaseURL string
	HTTP    *http.Client // nil = a client with keep-alive and 100 idle connections per host
}

var _ Client = (*HTTPClient)(nil)

// StatusError is a non-2xx reply of the HTTP API.
type StatusError struct {
	Status  int
	Message string
}

func (e *StatusError) Error() string { return fmt.Sprintf("HTTP %d: %s", e.Status, e.Message) }

// Unwrap maps 404/409/400 to ErrNotFound/ErrConflict/ErrInvalid.
func (e *StatusError) Unwrap() error {
	switch e.Status {
	case http.StatusNotFound:
		return ErrNotFound
	case http.StatusConflict:
		return ErrConflict
	case http.StatusBadRequest:
		return ErrInvalid
	}
	return nil
}

var defaultHTTP = &http.Client{Transport: &http.Transport{MaxIdleConns: 1000, MaxIdleConnsPerHost: 100}, Timeout: 30 * time.Second}

// Do sends one request with an optional JSON body and decodes a 2xx JSON
// reply into out (if not nil).
func (c *HTTPClient) Do(ctx context.Context, method, path string, in, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, strings.TrimRight(c.BaseURL, "/")+path, body)
	if err != nil {
		return err
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	hc := c.HTTP
	if hc == nil {
		hc = defaultHTTP
	}
	resp, err := hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if resp.StatusCode/100 != 2 {
		var e errorBody
		_ = json.Unmarshal(data, &e)
		return &StatusError{Status: resp.StatusCode, Message: e.Error}
	}
	if out != nil {
		return json.Unmarshal(data, out)
	}
	return nil
}

func (c *HTTPClient) Stats(ctx context.Context) (Stats, error) {
	var s Stats
	err := c.Do(ctx, "GET", "/stats", nil, &s)
	return s, err
}
func (c *HTTPClient) Timeline(ctx context.Context, u int64, limit int) ([]Post, error) {
	var p PostsPage
	err := c.Do(ctx, "GET", fmt.Sprintf("/users/%d/timeline?limit=%d", u, limit), nil, &p)
	return p.Posts, err
}
func (c *HTTPClient) Profile(ctx context.Context, u int64) error {
	return c.Do(ctx, "GET", fmt.Sprintf("/users/%d", u), nil, nil)
}
func (c *HTTPClient) UserPosts(ctx context.Context, u int64, limit int) ([]Post, error) {
	var p PostsPage
	err := c.Do(ctx, "GET", fmt.Sprintf("/users/%d/posts?limit=%d", u, limit), nil, &p)
	return p.Posts, err
}
func (c *HTTPClient) Trending(ctx context.Context, hours, limit int) error {
	return c.Do(ctx, "GET", fmt.Sprintf("/trending?hours=%d&limit=%d", hours, limit), nil, nil)
}
func (c *HTTPClient) Search(ctx context.Context, prefix string, limit int) error {
	return c.Do(ctx, "GET", fmt.Sprintf("/users?prefix=%s&limit=%d", urlQueryEscape(prefix), limit), nil, nil)
}
func (c *HTTPClient) Like(ctx context.Context, a, id, u int64) error {
	return c.Do(ctx, "POST", fmt.Sprintf("/posts/%d/%d/likes/%d", a, id, u), nil, nil)
}
func (c *HTTPClient) Unlike(ctx context.Context, a, id, u int64) error {
	return c.Do(ctx, "DELETE", fmt.Sprintf("/posts/%d/%d/likes/%d", a, id, u), nil, nil)
}
func (c *HTTPClient) Post(ctx context.Context, a int64, body string) (Post, error) {
	var p Post
	err := c.Do(ctx, "POST", fmt.Sprintf("/users/%d/posts", a), NewPostRequest{Body: body}, &p)
	return p, err
}
func (c *HTTPClient) Comment(ctx context.Context, a, id, u int64, body string) error {
	return c.Do(ctx, "POST", fmt.Sprintf("/posts/%d/%d/comments", a, id), NewCommentRequest{AuthorID: u, Body: body}, nil)
}
func (c *HTTPClient) Follow(ctx context.Context, u, o int64) error {
	return c.Do(ctx, "POST", fmt.Sprintf("/users/%d/follow/%d", u, o), nil, nil)
}
func (c *HTTPClient) Unfollow(ctx context.Context, u, o int64) error {
	return c.Do(ctx, "DELETE", fmt.Sprintf("/users/%d/follow/%d", u, o), nil, nil)
}

func urlQueryEscape(s string) string {
	var b strings.Builder
	for _, c := range []byte(s) {
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.' {
			b.WriteByte(c)
		} else {
			fmt.Fprintf(&b, "%%%02X", c)
		}
	}
	return b.String()
}

// LoadOptions configure Load.
type LoadOptions struct {
	// Users is the number of simulated users acting at once (goroutines,
	// each a closed loop unless Rate limits them). Default 10.
	Users int
	// Duration of the run (default 10s).
	Duration time.Duration
	// Rate is the target total requests per second (0 = as fast as the
	// users can go). A request that finds every user busy is not sent and
	// counted as Missed.
	Rate float64
	// Mix maps operations to weights (nil = DefaultMix).
	Mix map[Op]int
	// Seed for the random choices (0 = random).
	Seed uint64
}

// OpStats are the results for one operation.
type OpStats struct {
	Count, Errors, NotFound int64
	P50, P95, P99, Max      time.Duration
}

// LoadReport is what Load measured. Latencies cover successful and failed
// requests alike.
type LoadReport struct {
	Elapsed    time.Duration
	Requests   int64
	Errors     int64
	NotFound   int64
	Missed     int64
	Throughput float64 // requests per second
	P50        time.Duration
	P95        time.Duration
	P99        time.Duration
	Max        time.Duration
	ByOp       map[Op]OpStats
	// FirstErrors holds up to 10 error messages, to explain Errors.
	FirstErrors []string
}

// String formats the report as a small table.
func (r LoadReport) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%d requests in %s: %.1f req/s, %d errors, %d not found, %d missed\n",
		r.Requests, r.Elapsed.Round(time.Millisecond), r.Throughput, r.Errors, r.NotFound, r.Missed)
	fmt.Fprintf(&b, "latency p50 %s  p95 %s  p99 %s  max %s\n", fmtDur(r.P50), fmtDur(r.P95), fmtDur(r.P99), fmtDur(r.Max))
	tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "op\tcount\terrors\t404\tp50\tp95\tp99\tmax\t")
	ops := make([]Op, 0, len(r.ByOp))
	for op := range r.ByOp {
		ops = append(ops, op)
	}
	slices.Sort(ops)
	for _, op := range ops {
		s := r.ByOp[op]
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%s\t%s\t%s\t%s\t\n", op, s.Count, s.Errors, s.NotFound,
			fmtDur(s.P50), fmtDur(s.P95), fmtDur(s.P99), fmtDur(s.Max))
	}
	tw.Flush()
	for _, e := range r.FirstErrors {
		fmt.Fprintf(&b, "error: %s\n", e)
	}
	return b.String()
}

func fmtDur(d time.Duration) string {
	return fmt.Sprintf("%.2fms", float64(d)/float64(time.Millisecond))
}

type sample struct {
	op  Op
	d   time.Duration
	err int8 // 0 ok, 1 not found, 2 error
}

// Load runs the mix against c for o.Duration (or until ctx ends) and
// reports throughput, latency percentiles and errors. It needs at least two
// users in the database (it reads their id range with Stats).
func Load(ctx context.Context, c Client, o LoadOptions) (LoadReport, error) {
	if o.Users <= 0 {
		o.Users = 10
	}
	if o.Duration <= 0 {
		o.Duration = 10 * time.Second
	}
	mix := o.Mix
	if mix == nil {
		mix = DefaultMix
	}
	var ops []Op
	for op, w := range mix {
		for i := 0; i < w; i++ {
			ops = append(ops, op)
		}
	}
	slices.Sort(ops) // map order is random; keep runs with one Seed reproducible
	if len(ops) == 0 {
		return LoadReport{}, errors.New("load: empty mix")
	}
	if o.Seed == 0 {
		o.Seed = uint64(time.Now().UnixNano())
	}
	st, err := c.Stats(ctx)
	if err != nil {
		return LoadReport{}, fmt.Errorf("load: stats: %w", err)
	}
	if st.Users < 2 {
		return LoadReport{}, fmt.Errorf("load: need at least 2 users, found %d (run seed first)", st.Users)
	}
	ctx, cancel := context.WithTimeout(ctx, o.Duration)
	defer cancel()

	var tokens chan struct{}
	var missed atomic.Int64
	if o.Rate > 0 {
		tokens = make(chan struct{}, o.Users)
		go func() {
			start := time.Now()
			sent := 0
			tick := time.NewTicker(time.Millisecond)
			defer tick.Stop()
			for {
				select {
				case <-ctx.Done():
					return
				case now := <-tick.C:
					due := int(now.Sub(start).Seconds() * o.Rate)
					for ; sent < due; sent++ {
						select {
						case tokens <- struct{}{}:
						default:
							missed.Add(1)
						}
					}
				}
			}
		}()
	}

	var mu sync.Mutex
	var all []sample
	var firstErrors []string
	var wg sync.WaitGroup
	start := time.Now()
	for w := 0; w < o.Users; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			v := &vuser{c: c, r: rand.New(rand.NewPCG(o.Seed, uint64(w))), st: st}
			v.me = v.randomUser()
			var mine []sample
			var errs []string
			for {
				if tokens != nil {
					select {
					case <-ctx.Done():
					case <-tokens:
					}
				}
				if ctx.Err() != nil {
					break
				}
				op := ops[v.r.IntN(len(ops))]
				t0 := time.Now()
				err := v.do(ctx, op)
				d := time.Since(t0)
				if ctx.Err() != nil && err != nil {
					break // cut off by the end of the run, not a failure
				}
				s := sample{op: op, d: d}
				switch {
				case err == nil:
				case errors.Is(err, ErrNotFound):
					s.err = 1
				default:
					s.err = 2
					if len(errs) < 10 {
						errs = append(errs, fmt.Sprintf("%s: %v", op, err))
					}
				}
				mine = append(mine, s)
			}
			mu.Lock()
			all = append(all, mine...)
			for _, e := range errs {
				if len(firstErrors) < 10 {
					firstErrors = append(firstErrors, e)
				}
			}
			mu.Unlock()
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	rep := LoadReport{Elapsed: elapsed, Missed: missed.Load(), ByOp: map[Op]OpStats{}, FirstErrors: firstErrors}
	byOp := map[Op][]time.Duration{}
	var lat []time.Duration
	for _, s := range all {
		rep.Requests++
		os := rep.ByOp[s.op]
		os.Count++
		switch s.err {
		case 1:
			rep.NotFound++
			os.NotFound++
		case 2:
			rep.Errors++
			os.Errors++
		}
		rep.ByOp[s.op] = os
		lat = append(lat, s.d)
		byOp[s.op] = append(byOp[s.op], s.d)
	}
	rep.Throughput = float64(rep.Requests) / elapsed.Seconds()
	rep.P50, rep.P95, rep.P99, rep.Max = percentiles(lat)
	for op, l := range byOp {
		os := rep.ByOp[op]
		os.P50, os.P95, os.P99, os.Max = percentiles(l)
		rep.ByOp[op] = os
	}
	return rep, nil
}

func percentiles(l []time.Duration) (p50, p95, p99, maxD time.Duration) {
	if len(l) == 0 {
		return
	}
	slices.Sort(l)
	at := func(q float64) time.Duration {
		i := int(q*float64(len(l))+0.5) - 1
		return l[max(0, min(i, len(l)-1))]
	}
	return at(0.50), at(0.95), at(0.99), l[len(l)-1]
}

// vuser is one simulated user: it acts as one account (me) and remembers
// posts it has seen, to like and comment on them.
type vuser struct {
	c    Client
	r    *rand.Rand
	st   Stats
	me   int64
	seen []Post // recently seen posts, at most 50
}

func (v *vuser) randomUser() int64 {
	return v.st.MinUserID + v.r.Int64N(v.st.MaxUserID-v.st.MinUserID+1)
}

func (v *vuser) other() int64 {
	for {
		if u := v.randomUser(); u != v.me {
			return u
		}
	}
}

func (v *vuser) remember(posts []Post) {
	v.seen = append(v.seen, posts...)
	if len(v.seen) > 50 {
		v.seen = v.seen[len(v.seen)-50:]
	}
}

func (v *vuser) do(ctx context.Context, op Op) error {
	// Occasionally switch accounts, so a long run touches many users.
	if v.r.IntN(20) == 0 {
		v.me, v.seen = v.randomUser(), v.seen[:0]
	}
	if (op == OpLike || op == OpUnlike || op == OpComment) && len(v.seen) == 0 {
		op = OpTimeline // nothing seen yet to react to: read first
	}
	switch op {
	case OpTimeline:
		posts, err := v.c.Timeline(ctx, v.me, 20)
		v.remember(posts)
		return err
	case OpProfile:
		return v.c.Profile(ctx, v.other())
	case OpUserPosts:
		posts, err := v.c.UserPosts(ctx, v.other(), 20)
		v.remember(posts)
		return err
	case OpTrending:
		return v.c.Trending(ctx, 24, 20)
	case OpSearch:
		return v.c.Search(ctx, firstNames[v.r.IntN(len(firstNames))][:2], 20)
	case OpLike:
		p := v.seen[v.r.IntN(len(v.seen))]
		return v.c.Like(ctx, p.AuthorID, p.ID, v.me)
	case OpUnlike:
		p := v.seen[v.r.IntN(len(v.seen))]
		return v.c.Unlike(ctx, p.AuthorID, p.ID, v.me)
	case OpComment:
		p := v.seen[v.r.IntN(len(v.seen))]
		return v.c.Comment(ctx, p.AuthorID, p.ID, v.me, sentence(v.r, 3+v.r.IntN(10)))
	case OpPost:
		_, err := v.c.Post(ctx, v.me, sentence(v.r, 5+v.r.IntN(20)))
		return err
	case OpFollow:
		return v.c.Follow(ctx, v.me, v.other())
	case OpUnfollow:
		return v.c.Unfollow(ctx, v.me, v.other())
	}
	return fmt.Errorf("unknown op %q", op)
}
