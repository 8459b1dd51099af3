// Package apptest is the social app's HTTP test suite as a library, so the
// same scenario runs against plain PostgreSQL (test/socialapp's own tests)
// and through shardproxy (test/e2e), and the two runs can be compared.
//
//	tr := apptest.RunSuite(t, dsn)          // plain PostgreSQL
//	tr2 := apptest.RunSuite(t, proxyDSN)    // through the proxy
//	if d := tr.Diff(tr2); d != "" { t.Error(d) }
//
// RunSuite empties the app's tables (TRUNCATE ... RESTART IDENTITY) before
// it starts: point it only at a database for tests.
package apptest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"regexp"
	"strconv"
	"strings"
)

// Exchange is one recorded request and its reply, normalised: ids of users,
// posts and comments the suite created are replaced by symbolic names
// ("user:alice", "post:bob#1", "comment:1"), timestamps by "<time>" and
// pagination cursors by "<cursor>", so runs on different servers (with
// different sequences and clocks) produce equal transcripts when the app
// behaves the same.
type Exchange struct {
	Method string
	Path   string
	Status int
	Body   string // normalised JSON
}

// Transcript is the ordered list of exchanges of one suite run. Requests
// the suite makes concurrently are not recorded (their order is not
// deterministic); their outcome is, through the reads that follow.
type Transcript struct {
	Exchanges []Exchange
}

// String renders one exchange per line.
func (t *Transcript) String() string {
	var b strings.Builder
	for _, e := range t.Exchanges {
		fmt.Fprintf(&b, "%s %s -> %d %s\n", e.Method, e.Path, e.Status, e.Body)
	}
	return b.String()
}

// Diff returns "" when both transcripts are equal, else a description of
// the first difference.
func (t *Transcript) Diff(o *Transcript) string {
	n := min(len(t.Exchanges), len(o.Exchanges))
	for i := 0; i < n; i++ {
		a, b := t.Exchanges[i], o.Exchanges[i]
		if a != b {
			return fmt.Sprintf("exchange %d differs:\n  %s %s -> %d %s\n  %s %s -> %d %s",
				i, a.Method, a.Path, a.Status, a.Body, b.Method, b.Path, b.Status, b.Body)
		}
	}
	if len(t.Exchanges) != len(o.Exchanges) {
		return fmt.Sprintf("transcripts have %d and %d exchanges", len(t.Exchanges), len(o.Exchanges))
	}
	return ""
}

// names maps real ids to symbolic names, per kind ("user", "post",
// "comment").
type names map[string]map[int64]string

func (n names) set(kind string, id int64, name string) {
	if n[kind] == nil {
		n[kind] = map[int64]string{}
	}
	n[kind][id] = kind + ":" + name
}

func (n names) get(kind string, id int64) string {
	if s, ok := n[kind][id]; ok {
		return s
	}
	return strconv.FormatInt(id, 10) // not created by the suite (e.g. a 404 probe): stable as is
}

var pathIDKinds = map[string][]string{
	"users":   {"user"},
	"follow":  {"user"},
	"posts":   {"user", "post"},
	"likes":   {"user"},
	"comment": {"comment"},
}

var cursorParam = regexp.MustCompile(`before=[^&]*`)

// normPath replaces ids in a request path: the segment(s) after "users",
// "follow", "likes" are users, the two after "posts" are a post's author and
// id.
func (n names) normPath(path string) string {
	path = cursorParam.ReplaceAllString(path, "before=<cursor>")
	q := ""
	if i := strings.IndexByte(path, '?'); i >= 0 {
		path, q = path[:i], path[i:]
	}
	segs := strings.Split(path, "/")
	var pending []string
	for i, s := range segs {
		if id, err := strconv.ParseInt(s, 10, 64); err == nil && len(pending) > 0 {
			segs[i] = "{" + n.get(pending[0], id) + "}"
			pending = pending[1:]
			continue
		}
		pending = pathIDKinds[s]
	}
	return strings.Join(segs, "/") + q
}

// normBody parses a JSON reply and rewrites ids, times and cursors.
func (n names) normBody(data []byte) string {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return "<not JSON: " + strings.TrimSpace(string(data)) + ">"
	}
	v = n.walk(v)
	out, _ := json.Marshal(v)
	return string(out)
}

var keyKinds = map[string]string{
	"author_id": "user", "user_id": "user", "post_author_id": "user", "follower_id": "user",
	"followee_id": "user", "min_user_id": "user", "max_user_id": "user", "post_id": "post",
}

func (n names) walk(v any) any {
	switch x := v.(type) {
	case []any:
		for i := range x {
			x[i] = n.walk(x[i])
		}
		return x
	case map[string]any:
		idKind := ""
		switch {
		case x["post_author_id"] != nil:
			idKind = "comment"
		case x["like_count"] != nil:
			idKind = "post"
		case x["email"] != nil:
			idKind = "user"
		}
		for k, val := range x {
			num, isNum := val.(json.Number)
			switch {
			case k == "created_at":
				x[k] = "<time>"
			case k == "next_before" && val != nil:
				x[k] = "<cursor>"
			case isNum && k == "id" && idKind != "":
				if id, err := num.Int64(); err == nil {
					x[k] = n.get(idKind, id)
				}
			case isNum && keyKinds[k] != "":
				if id, err := num.Int64(); err == nil {
					x[k] = n.get(keyKinds[k], id)
				}
			default:
				x[k] = n.walk(val)
			}
		}
		return x
	}
	return v
}
