package apptest

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/shardproxy/shardproxy/test/socialapp"
)

// RunSuite migrates the database at dsn, empties the app's tables, serves
// the API with httptest and drives every endpoint: sign-up, profiles and
// counters, follows, posts and pagination, timelines, comments, likes,
// trending, search, errors and concurrent likes and follows. Failures are
// reported on t; the returned transcript lets a caller compare two runs.
func RunSuite(t *testing.T, dsn string) *Transcript {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	store, err := socialapp.Open(ctx, dsn)
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	t.Cleanup(store.Close)
	if err := store.Migrate(ctx); err != nil {
		t.Fatalf("migrate: %v", err)
	}
	if err := store.Migrate(ctx); err != nil {
		t.Fatalf("migrate again (must be idempotent): %v", err)
	}
	if err := store.Reset(ctx); err != nil {
		t.Fatalf("reset: %v", err)
	}
	srv := httptest.NewServer(socialapp.NewAPI(store, nil))
	t.Cleanup(srv.Close)
	s := &suite{ctx: ctx, store: store, url: srv.URL, names: names{}, users: map[string]socialapp.User{}}
	for _, sec := range []struct {
		name string
		f    func(*testing.T)
	}{
		{"Health", s.health},
		{"SignUp", s.signUp},
		{"Follow", s.follow},
		{"Posts", s.posts},
		{"Timeline", s.timeline},
		{"Comments", s.comments},
		{"Likes", s.likes},
		{"Trending", s.trending},
		{"Search", s.search},
		{"Profiles", s.profiles},
		{"Concurrency", s.concurrency},
		{"Consistency", s.consistency},
	} {
		if !t.Run(sec.name, sec.f) {
			t.Logf("transcript so far:\n%s", s.tr.String())
			break // later sections build on this one
		}
	}
	return &s.tr
}

type suite struct {
	ctx   context.Context
	store *socialapp.Store
	url   string
	names names
	tr    Transcript
	users map[string]socialapp.User
	made  []socialapp.Post // every post created through the API, in creation order
	// postName names posts per author: "bob#1", "bob#2", ...
	postCount map[string]int
	oldPost   socialapp.Post
}

// call sends a request, records it, checks the status and decodes the
// reply into out (if not nil).
func (s *suite) call(t *testing.T, method, path string, in any, want int, out any) {
	t.Helper()
	status, data := s.send(t, method, path, in)
	s.tr.Exchanges = append(s.tr.Exchanges, Exchange{Method: method, Path: s.names.normPath(path), Status: status, Body: s.names.normBody(data)})
	if status != want {
		t.Fatalf("%s %s: status %d, want %d; body %s", method, path, status, want, data)
	}
	if out != nil {
		if err := json.Unmarshal(data, out); err != nil {
			t.Fatalf("%s %s: decode %s: %v", method, path, data, err)
		}
	}
}

// callErr is call for an expected error: it also checks the body is
// {"error": "..."} mentioning substr.
func (s *suite) callErr(t *testing.T, method, path string, in any, want int, substr string) {
	t.Helper()
	var e struct {
		Error string `json:"error"`
	}
	s.call(t, method, path, in, want, &e)
	if e.Error == "" || !strings.Contains(e.Error, substr) {
		t.Errorf("%s %s: error %q, want one mentioning %q", method, path, e.Error, substr)
	}
}

// send performs a request without recording it; it fails the test on a
// transport error, so call it only from the test's goroutine.
func (s *suite) send(t *testing.T, method, path string, in any) (int, []byte) {
	t.Helper()
	status, data, err := s.do(method, path, in)
	if err != nil {
		t.Fatal(err)
	}
	return status, data
}

// do performs a request without recording it. Safe for concurrent use.
func (s *suite) do(method, path string, in any) (int, []byte, error) {
	var body io.Reader
	switch v := in.(type) {
	case nil:
	case rawBody:
		body = strings.NewReader(string(v))
	default:
		b, err := json.Marshal(v)
		if err != nil {
			return 0, nil, err
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(s.ctx, method, s.url+path, body)
	if err != nil {
		return 0, nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, nil, fmt.Errorf("%s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, nil, fmt.Errorf("%s %s: read body: %w", method, path, err)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
		return 0, nil, fmt.Errorf("%s %s: Content-Type %q", method, path, ct)
	}
	return resp.StatusCode, data, nil
}

// rawBody is sent as is (for malformed JSON tests).
type rawBody string

func (s *suite) id(name string) int64 { return s.users[name].ID }

func (s *suite) signUpUser(t *testing.T, key, name, email, country string) socialapp.User {
	t.Helper()
	var u socialapp.User
	s.call(t, "POST", "/users", socialapp.NewUserRequest{Name: name, Email: email, CountryCode: country}, 201, &u)
	if u.ID < 1 || u.Name != strings.TrimSpace(name) || u.Email != strings.ToLower(email) || u.CreatedAt.IsZero() {
		t.Fatalf("sign-up returned %+v", u)
	}
	if country == "" && u.CountryCode != nil || country != "" && (u.CountryCode == nil || *u.CountryCode != strings.ToUpper(country)) {
		t.Fatalf("sign-up country %v, want %q", u.CountryCode, country)
	}
	s.users[key] = u
	s.names.set("user", u.ID, key)
	return u
}

func (s *suite) health(t *testing.T) {
	var h map[string]string
	s.call(t, "GET", "/healthz", nil, 200, &h)
	if h["status"] != "ok" {
		t.Errorf("healthz: %v", h)
	}
	s.callErr(t, "GET", "/no/such/endpoint", nil, 404, "no such endpoint")
}

func (s *suite) signUp(t *testing.T) {
	s.signUpUser(t, "alice", "Alice Adams", "alice@example.com", "US")
	s.signUpUser(t, "bob", "Bob Baker", "bob@example.com", "de")
	s.signUpUser(t, "carol", "Carol Costa", "carol@example.com", "")
	s.signUpUser(t, "dave", "Dave Dubois", "Dave@Example.com", "FR")
	s.signUpUser(t, "alfred", "Alfred Adams", "alfred@example.com", "GB")
	s.signUpUser(t, "zedone", "Zed_one", "zed1@example.com", "SE")
	s.signUpUser(t, "zedd", "Zedd", "zedd@example.com", "SE")
	s.signUpUser(t, "eve", "  Eve Evans  ", "eve@example.com", "KE")

	// Email addresses are unique across the whole database, case-insensitively.
	s.callErr(t, "POST", "/users", socialapp.NewUserRequest{Name: "Alice Clone", Email: "ALICE@example.com"}, 409, "already registered")
	s.callErr(t, "POST", "/users", socialapp.NewUserRequest{Name: "Dave Clone", Email: "dave@example.com", CountryCode: "US"}, 409, "already registered")
	// The failed sign-ups left no user behind (users and emails commit together).
	var list socialapp.UsersList
	s.call(t, "GET", "/users?prefix=Alice+C", nil, 200, &list)
	if len(list.Users) != 0 {
		t.Errorf("a failed sign-up left users behind: %+v", list.Users)
	}
	s.callErr(t, "POST", "/users", socialapp.NewUserRequest{Name: "", Email: "x@example.com"}, 400, "name")
	s.callErr(t, "POST", "/users", socialapp.NewUserRequest{Name: "X", Email: "not-an-address"}, 400, "email")
	s.callErr(t, "POST", "/users", socialapp.NewUserRequest{Name: "X", Email: "x@example.com", CountryCode: "XX"}, 400, "country")
	s.callErr(t, "POST", "/users", socialapp.NewUserRequest{Name: strings.Repeat("n", socialapp.MaxNameLen+1), Email: "x@example.com"}, 400, "name")
	s.callErr(t, "POST", "/users", rawBody(`{"name": "X", "email": `), 400, "request body")
	s.callErr(t, "POST", "/users", rawBody(`{"name": "X", "email": "x@example.com", "admin": true}`), 400, "request body")
	// An address rejected above is still free.
	s.signUpUser(t, "xavier", "Xavier Xu", "x@example.com", "CN")

	var p socialapp.Profile
	s.call(t, "GET", fmt.Sprintf("/users/%d", s.id("alice")), nil, 200, &p)
	if p.ID != s.id("alice") || p.Name != "Alice Adams" || p.Followers != 0 || p.Following != 0 || p.Posts != 0 || p.LikesReceived != 0 {
		t.Errorf("new profile: %+v", p)
	}
	s.callErr(t, "GET", "/users/999999999", nil, 404, "not found")
	s.callErr(t, "GET", "/users/abc", nil, 400, "positive integer")
	s.callErr(t, "GET", "/users/0", nil, 400, "positive integer")
}

func (s *suite) followPath(a, b string) string {
	return fmt.Sprintf("/users/%d/follow/%d", s.id(a), s.id(b))
}

func (s *suite) expectChanged(t *testing.T, method, path string, want bool) {
	t.Helper()
	var c socialapp.ChangedBody
	s.call(t, method, path, nil, 200, &c)
	if c.Changed != want {
		t.Errorf("%s %s: changed %v, want %v", method, path, c.Changed, want)
	}
}

func (s *suite) follow(t *testing.T) {
	for _, f := range [][2]string{{"alice", "bob"}, {"alice", "carol"}, {"bob", "alice"}, {"carol", "bob"}, {"eve", "bob"}} {
		s.expectChanged(t, "POST", s.followPath(f[0], f[1]), true)
	}
	s.expectChanged(t, "POST", s.followPath("alice", "bob"), false) // idempotent
	s.callErr(t, "POST", s.followPath("alice", "alice"), nil, 400, "themselves")
	s.callErr(t, "POST", fmt.Sprintf("/users/%d/follow/999999999", s.id("alice")), nil, 404, "999999999")
	s.callErr(t, "POST", fmt.Sprintf("/users/999999999/follow/%d", s.id("alice")), nil, 404, "999999999")
	s.callErr(t, "POST", fmt.Sprintf("/users/%d/follow/x", s.id("alice")), nil, 400, "other")

	s.expectChanged(t, "POST", s.followPath("eve", "dave"), true)
	s.expectChanged(t, "DELETE", s.followPath("eve", "dave"), true)
	s.expectChanged(t, "DELETE", s.followPath("eve", "dave"), false)
	s.expectChanged(t, "DELETE", s.followPath("eve", "bob"), true)
	s.expectChanged(t, "DELETE", s.followPath("dave", "bob"), false)
	s.callErr(t, "DELETE", fmt.Sprintf("/users/%d/follow/999999999", s.id("dave")), nil, 404, "999999999")

	s.checkProfile(t, "bob", 2, 1, 0, 0)
	s.checkProfile(t, "alice", 1, 2, 0, 0)
	s.checkProfile(t, "eve", 0, 0, 0, 0)
}

func (s *suite) checkProfile(t *testing.T, who string, followers, following, posts, likes int64) socialapp.Profile {
	t.Helper()
	var p socialapp.Profile
	s.call(t, "GET", fmt.Sprintf("/users/%d", s.id(who)), nil, 200, &p)
	got := [4]int64{p.Followers, p.Following, p.Posts, p.LikesReceived}
	if want := [4]int64{followers, following, posts, likes}; got != want {
		t.Errorf("profile of %s: followers, following, posts, likes_received = %v, want %v", who, got, want)
	}
	return p
}

func (s *suite) createPost(t *testing.T, author, body string) socialapp.Post {
	t.Helper()
	var p socialapp.Post
	s.call(t, "POST", fmt.Sprintf("/users/%d/posts", s.id(author)), socialapp.NewPostRequest{Body: body}, 201, &p)
	if p.AuthorID != s.id(author) || p.ID < 1 || p.Body != body || p.LikeCount != 0 || p.CreatedAt.IsZero() {
		t.Fatalf("created post %+v", p)
	}
	if s.postCount == nil {
		s.postCount = map[string]int{}
	}
	s.postCount[author]++
	s.names.set("post", p.ID, fmt.Sprintf("%s#%d", author, s.postCount[author]))
	s.made = append(s.made, p)
	return p
}

// newestFirst sorts posts the way every list of the app does.
func newestFirst(posts []socialapp.Post) {
	slices.SortFunc(posts, func(a, b socialapp.Post) int {
		if c := b.CreatedAt.Compare(a.CreatedAt); c != 0 {
			return c
		}
		if a.AuthorID != b.AuthorID {
			return cmpInt(b.AuthorID, a.AuthorID)
		}
		return cmpInt(b.ID, a.ID)
	})
}

func cmpInt(a, b int64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// expectedPosts returns the suite's posts by the given authors, newest first,
// with like counts from likes.
func (s *suite) expectedPosts(authors ...string) []socialapp.Post {
	var out []socialapp.Post
	for _, p := range s.made {
		for _, a := range authors {
			if p.AuthorID == s.id(a) {
				out = append(out, p)
			}
		}
	}
	newestFirst(out)
	return out
}

func postKeys(posts []socialapp.Post) []string {
	keys := make([]string, len(posts))
	for i, p := range posts {
		keys[i] = fmt.Sprintf("%d/%d", p.AuthorID, p.ID)
	}
	return keys
}

// pages reads a whole list with the given page size, checking each page.
func (s *suite) pages(t *testing.T, base string, limit int) []socialapp.Post {
	t.Helper()
	var all []socialapp.Post
	path := fmt.Sprintf("%s?limit=%d", base, limit)
	for i := 0; ; i++ {
		if i > 100 {
			t.Fatalf("%s: more than 100 pages", base)
		}
		var pg socialapp.PostsPage
		s.call(t, "GET", path, nil, 200, &pg)
		if len(pg.Posts) > limit {
			t.Fatalf("%s: %d posts on a page of %d", path, len(pg.Posts), limit)
		}
		all = append(all, pg.Posts...)
		if pg.NextBefore == nil {
			if len(pg.Posts) == limit {
				t.Errorf("%s: a full page without next_before", path)
			}
			return all
		}
		path = fmt.Sprintf("%s?limit=%d&before=%s", base, limit, *pg.NextBefore)
	}
}

func (s *suite) posts(t *testing.T) {
	for i := 1; i <= 5; i++ {
		s.createPost(t, "bob", fmt.Sprintf("bob's post number %d", i))
	}
	for i := 1; i <= 3; i++ {
		s.createPost(t, "carol", fmt.Sprintf("carol says %d", i))
	}
	s.createPost(t, "alice", "hello from alice")
	s.createPost(t, "dave", "dave's only post: ünïcödé ✓ and 'quotes' \"too\"")

	s.callErr(t, "POST", fmt.Sprintf("/users/%d/posts", s.id("bob")), socialapp.NewPostRequest{Body: "  "}, 400, "body")
	s.callErr(t, "POST", fmt.Sprintf("/users/%d/posts", s.id("bob")), socialapp.NewPostRequest{Body: strings.Repeat("x", socialapp.MaxBodyLen+1)}, 400, "body")
	s.callErr(t, "POST", "/users/999999999/posts", socialapp.NewPostRequest{Body: "ghost"}, 404, "999999999")

	bob := fmt.Sprintf("/users/%d/posts", s.id("bob"))
	for _, limit := range []int{2, 5, 100} {
		got := s.pages(t, bob, limit)
		if want := s.expectedPosts("bob"); !slices.Equal(postKeys(got), postKeys(want)) {
			t.Errorf("bob's posts with limit %d: %v, want %v", limit, postKeys(got), postKeys(want))
		}
	}
	var pg socialapp.PostsPage
	s.call(t, "GET", bob, nil, 200, &pg) // default limit
	if len(pg.Posts) != 5 || pg.NextBefore != nil {
		t.Errorf("bob's posts, default limit: %d posts, next %v", len(pg.Posts), pg.NextBefore)
	}
	s.call(t, "GET", fmt.Sprintf("/users/%d/posts", s.id("eve")), nil, 200, &pg)
	if len(pg.Posts) != 0 || pg.NextBefore != nil || pg.Posts == nil {
		t.Errorf("eve's posts: %+v (want an empty list)", pg)
	}
	s.callErr(t, "GET", bob+"?limit=0", nil, 400, "limit")
	s.callErr(t, "GET", bob+"?limit=101", nil, 400, "limit")
	s.callErr(t, "GET", bob+"?limit=x", nil, 400, "limit")
	s.callErr(t, "GET", bob+"?before=yesterday", nil, 400, "cursor")
	s.callErr(t, "GET", "/users/999999999/posts", nil, 404, "999999999")
	var full socialapp.PostWithComments
	first := s.made[0]
	s.call(t, "GET", fmt.Sprintf("/posts/%d/%d", first.AuthorID, first.ID), nil, 200, &full)
	if full.Post.Body != first.Body || !full.Post.CreatedAt.Equal(first.CreatedAt) || len(full.Comments) != 0 {
		t.Errorf("GET post: %+v, want %+v and no comments", full, first)
	}
	// A post id exists only under its author.
	s.callErr(t, "GET", fmt.Sprintf("/posts/%d/%d", s.id("carol"), first.ID), nil, 404, "not found")
	s.checkProfile(t, "bob", 2, 1, 5, 0)
}

func (s *suite) timeline(t *testing.T) {
	alice := fmt.Sprintf("/users/%d/timeline", s.id("alice"))
	for _, limit := range []int{3, 8, 20} {
		got := s.pages(t, alice, limit)
		if want := s.expectedPosts("bob", "carol"); !slices.Equal(postKeys(got), postKeys(want)) {
			t.Errorf("alice's timeline with limit %d: %v, want %v", limit, postKeys(got), postKeys(want))
		}
	}
	got := s.pages(t, fmt.Sprintf("/users/%d/timeline", s.id("bob")), 20)
	if want := s.expectedPosts("alice"); !slices.Equal(postKeys(got), postKeys(want)) {
		t.Errorf("bob's timeline: %v, want %v", postKeys(got), postKeys(want))
	}
	got = s.pages(t, fmt.Sprintf("/users/%d/timeline", s.id("dave")), 20)
	if len(got) != 0 {
		t.Errorf("dave follows nobody but sees %v", postKeys(got))
	}
	s.callErr(t, "GET", "/users/999999999/timeline", nil, 404, "999999999")
	s.callErr(t, "GET", alice+"?limit=1000", nil, 400, "limit")

	// Unfollowing removes a user's posts from the timeline.
	s.expectChanged(t, "DELETE", s.followPath("alice", "carol"), true)
	got = s.pages(t, alice, 4)
	if want := s.expectedPosts("bob"); !slices.Equal(postKeys(got), postKeys(want)) {
		t.Errorf("alice's timeline after unfollowing carol: %v, want %v", postKeys(got), postKeys(want))
	}
	s.expectChanged(t, "POST", s.followPath("alice", "carol"), true)
}

func (s *suite) comments(t *testing.T) {
	p := s.made[0] // bob#1
	path := fmt.Sprintf("/posts/%d/%d/comments", p.AuthorID, p.ID)
	var want []socialapp.Comment
	for i, who := range []string{"carol", "alice", "carol"} {
		var c socialapp.Comment
		body := fmt.Sprintf("comment %d by %s", i+1, who)
		s.call(t, "POST", path, socialapp.NewCommentRequest{AuthorID: s.id(who), Body: body}, 201, &c)
		if c.PostAuthorID != p.AuthorID || c.PostID != p.ID || c.AuthorID != s.id(who) || c.Body != body || c.ID < 1 {
			t.Fatalf("created comment %+v", c)
		}
		s.names.set("comment", c.ID, fmt.Sprint(i+1))
		want = append(want, c)
	}
	var full socialapp.PostWithComments
	s.call(t, "GET", fmt.Sprintf("/posts/%d/%d", p.AuthorID, p.ID), nil, 200, &full)
	if len(full.Comments) != len(want) {
		t.Fatalf("post has %d comments, want %d", len(full.Comments), len(want))
	}
	for i := range want {
		if full.Comments[i].ID != want[i].ID || full.Comments[i].Body != want[i].Body {
			t.Errorf("comment %d: %+v, want %+v", i, full.Comments[i], want[i])
		}
	}
	s.callErr(t, "POST", fmt.Sprintf("/posts/%d/999999999/comments", p.AuthorID), socialapp.NewCommentRequest{AuthorID: s.id("alice"), Body: "x"}, 404, "999999999")
	s.callErr(t, "POST", path, socialapp.NewCommentRequest{AuthorID: 999999999, Body: "x"}, 404, "999999999")
	s.callErr(t, "POST", path, socialapp.NewCommentRequest{AuthorID: s.id("alice"), Body: ""}, 400, "body")
	s.callErr(t, "POST", path, socialapp.NewCommentRequest{Body: "no author"}, 400, "author_id")
}

func (s *suite) likePath(p socialapp.Post, who string) string {
	return fmt.Sprintf("/posts/%d/%d/likes/%d", p.AuthorID, p.ID, s.id(who))
}

func (s *suite) expectLike(t *testing.T, method string, p socialapp.Post, who string, changed bool, count int64) {
	t.Helper()
	var c socialapp.ChangedBody
	s.call(t, method, s.likePath(p, who), nil, 200, &c)
	if c.Changed != changed || c.LikeCount == nil || *c.LikeCount != count {
		t.Errorf("%s like of %s by %s: %+v, want changed %v like_count %d", method, s.names.get("post", p.ID), who, c, changed, count)
	}
}

// setLikes records the like count the suite expects for a post.
func (s *suite) setLikes(p socialapp.Post, n int64) {
	for i := range s.made {
		if s.made[i].AuthorID == p.AuthorID && s.made[i].ID == p.ID {
			s.made[i].LikeCount = n
		}
	}
}

func (s *suite) likes(t *testing.T) {
	bob1, bob2, bob3, carol1 := s.made[0], s.made[1], s.made[2], s.made[5]
	s.expectLike(t, "POST", bob1, "alice", true, 1)
	s.expectLike(t, "POST", bob1, "alice", false, 1) // idempotent
	s.expectLike(t, "POST", bob1, "carol", true, 2)
	s.expectLike(t, "POST", bob1, "bob", true, 3) // liking one's own post is allowed
	s.expectLike(t, "DELETE", bob1, "bob", true, 2)
	s.expectLike(t, "DELETE", bob1, "bob", false, 2)
	s.expectLike(t, "POST", bob2, "dave", true, 1)
	for _, who := range []string{"alice", "carol", "dave", "eve"} {
		s.expectLike(t, "POST", bob3, who, true, 0+int64(slices.Index([]string{"alice", "carol", "dave", "eve"}, who))+1)
	}
	s.expectLike(t, "POST", carol1, "alice", true, 1)
	s.expectLike(t, "POST", carol1, "bob", true, 2)
	s.setLikes(bob1, 2)
	s.setLikes(bob2, 1)
	s.setLikes(bob3, 4)
	s.setLikes(carol1, 2)

	s.callErr(t, "POST", fmt.Sprintf("/posts/%d/999999999/likes/%d", bob1.AuthorID, s.id("alice")), nil, 404, "999999999")
	s.callErr(t, "POST", fmt.Sprintf("/posts/%d/%d/likes/999999999", bob1.AuthorID, bob1.ID), nil, 404, "999999999")
	s.callErr(t, "DELETE", fmt.Sprintf("/posts/%d/999999999/likes/%d", bob1.AuthorID, s.id("alice")), nil, 404, "999999999")
	s.callErr(t, "DELETE", fmt.Sprintf("/posts/%d/%d/likes/999999999", bob1.AuthorID, bob1.ID), nil, 404, "999999999")
	s.callErr(t, "POST", fmt.Sprintf("/posts/%d/%d/likes/0", bob1.AuthorID, bob1.ID), nil, 400, "user")

	var full socialapp.PostWithComments
	s.call(t, "GET", fmt.Sprintf("/posts/%d/%d", bob3.AuthorID, bob3.ID), nil, 200, &full)
	if full.Post.LikeCount != 4 {
		t.Errorf("bob#3 like_count %d, want 4", full.Post.LikeCount)
	}
	s.checkProfile(t, "bob", 2, 1, 5, 7)
	s.checkProfile(t, "carol", 1, 1, 3, 2)
	// Lists carry the like counts too.
	got := s.pages(t, fmt.Sprintf("/users/%d/posts", s.id("bob")), 10)
	want := s.expectedPosts("bob")
	for i := range got {
		if i < len(want) && got[i].LikeCount != want[i].LikeCount {
			t.Errorf("bob's posts[%d] like_count %d, want %d", i, got[i].LikeCount, want[i].LikeCount)
		}
	}
}

// trendingOrder sorts by like_count desc, then newest first.
func trendingOrder(posts []socialapp.Post) {
	newestFirst(posts)
	slices.SortStableFunc(posts, func(a, b socialapp.Post) int { return cmpInt(b.LikeCount, a.LikeCount) })
}

func (s *suite) trending(t *testing.T) {
	// An old post with many likes is outside a 24-hour window. The app has
	// no API to backdate a post, so write it with plain SQL.
	var old socialapp.Post
	old.AuthorID, old.Body = s.id("eve"), "an old but popular post"
	err := s.store.Pool().QueryRow(s.ctx, `INSERT INTO posts (author_id, body, created_at) VALUES ($1, $2, now() - interval '48 hours') RETURNING id, created_at`,
		old.AuthorID, old.Body).Scan(&old.ID, &old.CreatedAt)
	if err != nil {
		t.Fatalf("insert old post: %v", err)
	}
	s.names.set("post", old.ID, "eve#old")
	for i, who := range []string{"alice", "bob", "carol", "dave", "alfred"} {
		s.expectLike(t, "POST", old, who, true, int64(i+1))
	}
	old.LikeCount = 5
	s.oldPost = old

	var want []socialapp.Post
	for _, p := range s.made {
		if p.LikeCount > 0 {
			want = append(want, p)
		}
	}
	trendingOrder(want)
	var pg socialapp.PostsPage
	s.call(t, "GET", "/trending", nil, 200, &pg)
	if !slices.Equal(postKeys(pg.Posts), postKeys(want)) {
		t.Errorf("trending: %v, want %v", postKeys(pg.Posts), postKeys(want))
	}
	for i := range pg.Posts {
		if i < len(want) && pg.Posts[i].LikeCount != want[i].LikeCount {
			t.Errorf("trending[%d] like_count %d, want %d", i, pg.Posts[i].LikeCount, want[i].LikeCount)
		}
	}
	s.call(t, "GET", "/trending?hours=24&limit=2", nil, 200, &pg)
	if !slices.Equal(postKeys(pg.Posts), postKeys(want[:2])) {
		t.Errorf("trending limit 2: %v, want %v", postKeys(pg.Posts), postKeys(want[:2]))
	}
	wantWide := append([]socialapp.Post{old}, want...)
	trendingOrder(wantWide)
	s.call(t, "GET", "/trending?hours=72", nil, 200, &pg)
	if !slices.Equal(postKeys(pg.Posts), postKeys(wantWide)) {
		t.Errorf("trending 72h: %v, want %v", postKeys(pg.Posts), postKeys(wantWide))
	}
	s.callErr(t, "GET", "/trending?hours=0", nil, 400, "hours")
	s.callErr(t, "GET", "/trending?limit=0", nil, 400, "limit")
}

func (s *suite) search(t *testing.T) {
	check := func(prefix string, limit int, want ...string) {
		t.Helper()
		var list socialapp.UsersList
		path := "/users?prefix=" + urlEscape(prefix)
		if limit > 0 {
			path += fmt.Sprintf("&limit=%d", limit)
		}
		s.call(t, "GET", path, nil, 200, &list)
		var got []string
		for _, u := range list.Users {
			got = append(got, u.Name)
		}
		if !slices.Equal(got, want) {
			t.Errorf("search %q limit %d: %q, want %q", prefix, limit, got, want)
		}
	}
	check("Al", 0, "Alfred Adams", "Alice Adams")
	check("Al", 1, "Alfred Adams")
	check("Alice", 0, "Alice Adams")
	check("al", 0)                     // case-sensitive
	check("Zed_", 0, "Zed_one")        // _ is literal
	check("Zed", 0, "Zed_one", "Zedd") // byte order: '_' (0x5F) < 'd' (0x64)
	check("%", 0)                      // % is literal
	check("Eve", 0, "Eve Evans")       // names are trimmed at sign-up
	check("Q", 0)
	s.callErr(t, "GET", "/users", nil, 400, "prefix")
	s.callErr(t, "GET", "/users?prefix=A&limit=0", nil, 400, "limit")
}

func urlEscape(s string) string {
	var b strings.Builder
	for _, c := range []byte(s) {
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' {
			b.WriteByte(c)
		} else {
			fmt.Fprintf(&b, "%%%02X", c)
		}
	}
	return b.String()
}

func (s *suite) profiles(t *testing.T) {
	s.checkProfile(t, "alice", 1, 2, 1, 0)
	s.checkProfile(t, "bob", 2, 1, 5, 7)
	s.checkProfile(t, "carol", 1, 1, 3, 2)
	s.checkProfile(t, "dave", 0, 0, 1, 0)
	s.checkProfile(t, "eve", 0, 0, 1, 5)
	var st socialapp.Stats
	s.call(t, "GET", "/stats", nil, 200, &st)
	if st.Users != int64(len(s.users)) || st.Posts != int64(len(s.made)+1) {
		t.Errorf("stats %+v, want %d users and %d posts", st, len(s.users), len(s.made)+1)
	}
}

func (s *suite) concurrency(t *testing.T) {
	const fans = 16
	var names []string
	for i := 0; i < fans; i++ {
		key := fmt.Sprintf("fan%02d", i)
		s.signUpUser(t, key, fmt.Sprintf("Fan %02d", i), key+"@example.com", "")
		names = append(names, key)
	}
	target := s.createPost(t, "dave", "like me, everyone")

	// Every fan likes the post three times and follows dave twice, all at once.
	var wg sync.WaitGroup
	errs := make(chan string, fans*5)
	for _, f := range names {
		for i := 0; i < 3; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if st, body, err := s.do("POST", s.likePath(target, f), nil); err != nil || st != 200 {
					errs <- fmt.Sprintf("like by %s: %d %s %v", f, st, body, err)
				}
			}()
		}
		for i := 0; i < 2; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if st, body, err := s.do("POST", s.followPath(f, "dave"), nil); err != nil || st != 200 {
					errs <- fmt.Sprintf("follow by %s: %d %s %v", f, st, body, err)
				}
			}()
		}
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Error(e)
	}
	var full socialapp.PostWithComments
	s.call(t, "GET", fmt.Sprintf("/posts/%d/%d", target.AuthorID, target.ID), nil, 200, &full)
	if full.Post.LikeCount != fans {
		t.Errorf("after %d fans liked 3 times each at once, like_count = %d", fans, full.Post.LikeCount)
	}
	// Half the fans unlike twice at once, while the other half like again.
	errs = make(chan string, fans*2)
	for i, f := range names {
		for j := 0; j < 2; j++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				method := "POST"
				if i%2 == 0 {
					method = "DELETE"
				}
				if st, body, err := s.do(method, s.likePath(target, f), nil); err != nil || st != 200 {
					errs <- fmt.Sprintf("%s like by %s: %d %s %v", method, f, st, body, err)
				}
			}()
		}
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Error(e)
	}
	s.call(t, "GET", fmt.Sprintf("/posts/%d/%d", target.AuthorID, target.ID), nil, 200, &full)
	if full.Post.LikeCount != fans/2 {
		t.Errorf("after half the fans unliked, like_count = %d, want %d", full.Post.LikeCount, fans/2)
	}
	s.setLikes(target, fans/2)
	s.checkProfile(t, "dave", fans, 0, 2, fans/2)
}

// consistency checks invariants directly in the database: every post's
// like_count equals its number of likes rows, and every emails row points at
// a user with that address.
func (s *suite) consistency(t *testing.T) {
	counts := map[[2]int64]int64{}
	rows, err := s.store.Pool().Query(s.ctx, `SELECT post_author_id, post_id, count(*) FROM likes GROUP BY post_author_id, post_id`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var a, id, n int64
		if err := rows.Scan(&a, &id, &n); err != nil {
			t.Fatal(err)
		}
		counts[[2]int64{a, id}] = n
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	rows, err = s.store.Pool().Query(s.ctx, `SELECT author_id, id, like_count FROM posts`)
	if err != nil {
		t.Fatal(err)
	}
	nposts := 0
	for rows.Next() {
		var a, id, n int64
		if err := rows.Scan(&a, &id, &n); err != nil {
			t.Fatal(err)
		}
		nposts++
		if counts[[2]int64{a, id}] != n {
			t.Errorf("post %d/%d: like_count %d but %d likes rows", a, id, n, counts[[2]int64{a, id}])
		}
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	if nposts != len(s.made)+1 {
		t.Errorf("%d posts in the database, want %d", nposts, len(s.made)+1)
	}
	for key, u := range s.users {
		var id int64
		if err := s.store.Pool().QueryRow(s.ctx, `SELECT user_id FROM emails WHERE email = $1`, u.Email).Scan(&id); err != nil || id != u.ID {
			t.Errorf("emails row of %s (%s): user_id %d, err %v; want %d", key, u.Email, id, err, u.ID)
		}
	}
	var n int64
	if err := s.store.Pool().QueryRow(s.ctx, `SELECT count(*) FROM emails`).Scan(&n); err != nil || n != int64(len(s.users)) {
		t.Errorf("%d emails rows (err %v), want %d", n, err, len(s.users))
	}
}
