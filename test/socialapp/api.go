package socialapp

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"time"
)

// MaxRequestBody bounds a JSON request body.
const MaxRequestBody = 64 << 10

// DefaultTrendingHours is the window of GET /trending without ?hours.
const DefaultTrendingHours = 24

// API serves the JSON HTTP API over a Store:
//
//	GET    /healthz                               200 {"status":"ok"}
//	POST   /users                                 {"name","email","country_code"} → 201 user; 409 email taken
//	GET    /users?prefix=ab&limit=n               users whose name starts with prefix, by name
//	GET    /users/{id}                            profile with followers, following, posts, likes_received
//	POST   /users/{id}/follow/{other}             200 {"changed":bool}
//	DELETE /users/{id}/follow/{other}             200 {"changed":bool}
//	POST   /users/{id}/posts                      {"body"} → 201 post
//	GET    /users/{id}/posts?limit&before         {"posts":[...],"next_before":cursor|null}
//	GET    /users/{id}/timeline?limit&before      same shape, posts of followed users
//	GET    /posts/{author}/{id}                   {"post":..., "comments":[first 50]}
//	POST   /posts/{author}/{id}/comments          {"author_id","body"} → 201 comment
//	POST   /posts/{author}/{id}/likes/{user}      200 {"changed":bool,"like_count":n}
//	DELETE /posts/{author}/{id}/likes/{user}      200 {"changed":bool,"like_count":n}
//	GET    /trending?hours=24&limit=n             most liked posts of the last hours, all users
//	GET    /stats                                 {"users","posts","min_user_id","max_user_id"}
//
// Errors are {"error": message} with 400 (bad input), 404 (unknown user or
// post), 409 (email taken), 500 (anything else; details go to the log).
// Follow/unfollow and like/unlike are idempotent (see the package doc).
type API struct {
	store *Store
	log   *slog.Logger
	mux   *http.ServeMux
	now   func() time.Time
}

// NewAPI returns the handler. log may be nil (discard).
func NewAPI(store *Store, log *slog.Logger) *API {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	a := &API{store: store, log: log, mux: http.NewServeMux(), now: time.Now}
	h := func(pattern string, f func(*http.Request) (int, any, error)) {
		a.mux.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) { a.serve(w, r, f) })
	}
	h("GET /healthz", a.healthz)
	h("POST /users", a.createUser)
	h("GET /users", a.searchUsers)
	h("GET /users/{id}", a.profile)
	h("POST /users/{id}/follow/{other}", a.follow)
	h("DELETE /users/{id}/follow/{other}", a.unfollow)
	h("POST /users/{id}/posts", a.createPost)
	h("GET /users/{id}/posts", a.userPosts)
	h("GET /users/{id}/timeline", a.timeline)
	h("GET /posts/{author}/{id}", a.getPost)
	h("POST /posts/{author}/{id}/comments", a.createComment)
	h("POST /posts/{author}/{id}/likes/{user}", a.like)
	h("DELETE /posts/{author}/{id}/likes/{user}", a.unlike)
	h("GET /trending", a.trending)
	h("GET /stats", a.stats)
	a.mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusNotFound, errorBody{Error: "no such endpoint: " + r.Method + " " + r.URL.Path})
	})
	return a
}

// ServeHTTP implements http.Handler.
func (a *API) ServeHTTP(w http.ResponseWriter, r *http.Request) { a.mux.ServeHTTP(w, r) }

type errorBody struct {
	Error string `json:"error"`
}

// ChangedBody is the reply of follow, unfollow, like and unlike.
type ChangedBody struct {
	Changed   bool   `json:"changed"`
	LikeCount *int64 `json:"like_count,omitempty"`
}

// PostsPage is the reply of the post lists.
type PostsPage struct {
	Posts      []Post  `json:"posts"`
	NextBefore *string `json:"next_before"`
}

// PostWithComments is the reply of GET /posts/{author}/{id}.
type PostWithComments struct {
	Post     Post      `json:"post"`
	Comments []Comment `json:"comments"`
}

// UsersList is the reply of GET /users.
type UsersList struct {
	Users []User `json:"users"`
}

// NewUserRequest is the body of POST /users.
type NewUserRequest struct {
	Name        string `json:"name"`
	Email       string `json:"email"`
	CountryCode string `json:"country_code"`
}

// NewPostRequest is the body of POST /users/{id}/posts.
type NewPostRequest struct {
	Body string `json:"body"`
}

// NewCommentRequest is the body of POST /posts/{author}/{id}/comments.
type NewCommentRequest struct {
	AuthorID int64  `json:"author_id"`
	Body     string `json:"body"`
}

func (a *API) serve(w http.ResponseWriter, r *http.Request, f func(*http.Request) (int, any, error)) {
	status, body, err := f(r)
	if err != nil {
		status = statusOf(err)
		msg := err.Error()
		if status == http.StatusInternalServerError {
			a.log.Error("request failed", "method", r.Method, "path", r.URL.Path, "err", err)
			msg = "internal error"
			if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
				status, msg = http.StatusServiceUnavailable, "request timed out or was cancelled"
			}
		}
		body = errorBody{Error: msg}
	}
	writeJSON(w, status, body)
}

func statusOf(err error) int {
	switch {
	case errors.Is(err, ErrNotFound):
		return http.StatusNotFound
	case errors.Is(err, ErrConflict):
		return http.StatusConflict
	case errors.Is(err, ErrInvalid):
		return http.StatusBadRequest
	}
	return http.StatusInternalServerError
}

func writeJSON(w http.ResponseWriter, status int, body any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	_ = enc.Encode(body) // the client may be gone; nothing to do then
}

func pathID(r *http.Request, name string) (int64, error) {
	s := r.PathValue(name)
	v, err := strconv.ParseInt(s, 10, 64)
	if err != nil || v < 1 {
		return 0, fmt.Errorf("%w: %s %q is not a positive integer", ErrInvalid, name, s)
	}
	return v, nil
}

func pathIDs(r *http.Request, names ...string) ([]int64, error) {
	ids := make([]int64, len(names))
	for i, n := range names {
		v, err := pathID(r, n)
		if err != nil {
			return nil, err
		}
		ids[i] = v
	}
	return ids, nil
}

func queryInt(r *http.Request, name string, def int) (int, error) {
	s := r.URL.Query().Get(name)
	if s == "" {
		return def, nil
	}
	v, err := strconv.Atoi(s)
	if err != nil {
		return 0, fmt.Errorf("%w: %s %q is not an integer", ErrInvalid, name, s)
	}
	return v, nil
}

func decodeBody(r *http.Request, v any) error {
	dec := json.NewDecoder(http.MaxBytesReader(nil, r.Body, MaxRequestBody))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("%w: request body: %v", ErrInvalid, err)
	}
	return nil
}

func (a *API) page(r *http.Request) (Page, error) {
	limit, err := queryInt(r, "limit", DefaultLimit)
	if err != nil {
		return Page{}, err
	}
	if limit < 1 || limit > MaxLimit {
		return Page{}, fmt.Errorf("%w: limit must be between 1 and %d, got %d", ErrInvalid, MaxLimit, limit)
	}
	p := Page{Limit: limit}
	if s := r.URL.Query().Get("before"); s != "" {
		c, err := ParseCursor(s)
		if err != nil {
			return Page{}, err
		}
		p.Before = &c
	}
	return p, nil
}

func postsPage(posts []Post, limit int) PostsPage {
	pp := PostsPage{Posts: posts}
	if c := NextCursor(posts, limit); c != nil {
		s := c.String()
		pp.NextBefore = &s
	}
	return pp
}

func (a *API) healthz(r *http.Request) (int, any, error) {
	if err := a.store.Ping(r.Context()); err != nil {
		return 0, nil, fmt.Errorf("healthz: %w", err)
	}
	return http.StatusOK, map[string]string{"status": "ok"}, nil
}

func (a *API) createUser(r *http.Request) (int, any, error) {
	var req NewUserRequest
	if err := decodeBody(r, &req); err != nil {
		return 0, nil, err
	}
	u, err := a.store.CreateUser(r.Context(), req.Name, req.Email, req.CountryCode)
	if err != nil {
		return 0, nil, err
	}
	return http.StatusCreated, u, nil
}

func (a *API) searchUsers(r *http.Request) (int, any, error) {
	limit, err := queryInt(r, "limit", DefaultLimit)
	if err != nil {
		return 0, nil, err
	}
	if limit == 0 {
		limit = -1 // explicit 0 is out of range, not "default"
	}
	users, err := a.store.SearchUsers(r.Context(), r.URL.Query().Get("prefix"), limit)
	if err != nil {
		return 0, nil, err
	}
	return http.StatusOK, UsersList{Users: users}, nil
}

func (a *API) profile(r *http.Request) (int, any, error) {
	id, err := pathID(r, "id")
	if err != nil {
		return 0, nil, err
	}
	p, err := a.store.Profile(r.Context(), id)
	if err != nil {
		return 0, nil, err
	}
	return http.StatusOK, p, nil
}

func (a *API) follow(r *http.Request) (int, any, error) {
	ids, err := pathIDs(r, "id", "other")
	if err != nil {
		return 0, nil, err
	}
	changed, err := a.store.Follow(r.Context(), ids[0], ids[1])
	if err != nil {
		return 0, nil, err
	}
	return http.StatusOK, ChangedBody{Changed: changed}, nil
}

func (a *API) unfollow(r *http.Request) (int, any, error) {
	ids, err := pathIDs(r, "id", "other")
	if err != nil {
		return 0, nil, err
	}
	changed, err := a.store.Unfollow(r.Context(), ids[0], ids[1])
	if err != nil {
		return 0, nil, err
	}
	return http.StatusOK, ChangedBody{Changed: changed}, nil
}

func (a *API) createPost(r *http.Request) (int, any, error) {
	id, err := pathID(r, "id")
	if err != nil {
		return 0, nil, err
	}
	var req NewPostRequest
	if err := decodeBody(r, &req); err != nil {
		return 0, nil, err
	}
	p, err := a.store.CreatePost(r.Context(), id, req.Body)
	if err != nil {
		return 0, nil, err
	}
	return http.StatusCreated, p, nil
}

func (a *API) userPosts(r *http.Request) (int, any, error) {
	id, err := pathID(r, "id")
	if err != nil {
		return 0, nil, err
	}
	page, err := a.page(r)
	if err != nil {
		return 0, nil, err
	}
	posts, err := a.store.UserPosts(r.Context(), id, page)
	if err != nil {
		return 0, nil, err
	}
	return http.StatusOK, postsPage(posts, page.Limit), nil
}

func (a *API) timeline(r *http.Request) (int, any, error) {
	id, err := pathID(r, "id")
	if err != nil {
		return 0, nil, err
	}
	page, err := a.page(r)
	if err != nil {
		return 0, nil, err
	}
	posts, err := a.store.Timeline(r.Context(), id, page)
	if err != nil {
		return 0, nil, err
	}
	return http.StatusOK, postsPage(posts, page.Limit), nil
}

func (a *API) getPost(r *http.Request) (int, any, error) {
	ids, err := pathIDs(r, "author", "id")
	if err != nil {
		return 0, nil, err
	}
	p, err := a.store.GetPost(r.Context(), ids[0], ids[1])
	if err != nil {
		return 0, nil, err
	}
	comments, err := a.store.Comments(r.Context(), ids[0], ids[1], 50)
	if err != nil {
		return 0, nil, err
	}
	return http.StatusOK, PostWithComments{Post: p, Comments: comments}, nil
}

func (a *API) createComment(r *http.Request) (int, any, error) {
	ids, err := pathIDs(r, "author", "id")
	if err != nil {
		return 0, nil, err
	}
	var req NewCommentRequest
	if err := decodeBody(r, &req); err != nil {
		return 0, nil, err
	}
	if req.AuthorID < 1 {
		return 0, nil, fmt.Errorf("%w: author_id must be a positive integer", ErrInvalid)
	}
	c, err := a.store.CreateComment(r.Context(), ids[0], ids[1], req.AuthorID, req.Body)
	if err != nil {
		return 0, nil, err
	}
	return http.StatusCreated, c, nil
}

func (a *API) like(r *http.Request) (int, any, error) {
	ids, err := pathIDs(r, "author", "id", "user")
	if err != nil {
		return 0, nil, err
	}
	changed, n, err := a.store.Like(r.Context(), ids[0], ids[1], ids[2])
	if err != nil {
		return 0, nil, err
	}
	return http.StatusOK, ChangedBody{Changed: changed, LikeCount: &n}, nil
}

func (a *API) unlike(r *http.Request) (int, any, error) {
	ids, err := pathIDs(r, "author", "id", "user")
	if err != nil {
		return 0, nil, err
	}
	changed, n, err := a.store.Unlike(r.Context(), ids[0], ids[1], ids[2])
	if err != nil {
		return 0, nil, err
	}
	return http.StatusOK, ChangedBody{Changed: changed, LikeCount: &n}, nil
}

func (a *API) trending(r *http.Request) (int, any, error) {
	hours, err := queryInt(r, "hours", DefaultTrendingHours)
	if err != nil {
		return 0, nil, err
	}
	if hours < 1 || hours > 24*365 {
		return 0, nil, fmt.Errorf("%w: hours must be between 1 and %d, got %d", ErrInvalid, 24*365, hours)
	}
	limit, err := queryInt(r, "limit", DefaultLimit)
	if err != nil {
		return 0, nil, err
	}
	if limit == 0 {
		limit = -1
	}
	since := a.now().Add(-time.Duration(hours) * time.Hour)
	posts, err := a.store.Trending(r.Context(), since, limit)
	if err != nil {
		return 0, nil, err
	}
	return http.StatusOK, PostsPage{Posts: posts}, nil
}

func (a *API) stats(r *http.Request) (int, any, error) {
	st, err := a.store.Stats(r.Context())
	if err != nil {
		return 0, nil, err
	}
	return http.StatusOK, st, nil
}
