package compat

import (
	"context"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5/pgconn"
)

// schema creates the suite's tables. It follows test/socialapp (same
// tables, keys and colocation, so socialapp.ShardingSpec shards it) with
// more column types on users, posts and countries, so the merge sees every
// common type.
var schema = []string{
	`CREATE TABLE countries (
	code text PRIMARY KEY,
	name text NOT NULL,
	continent text NOT NULL,
	population bigint
)`,
	`CREATE TABLE users (
	id bigint PRIMARY KEY,
	name text NOT NULL,
	email varchar(80) NOT NULL,
	country_code text,
	karma numeric(10,2),
	rating double precision,
	active boolean NOT NULL,
	birthday date,
	wake_up time,
	last_login timestamp,
	created_at timestamptz NOT NULL,
	session_len interval,
	external_id uuid NOT NULL,
	avatar bytea,
	level integer NOT NULL,
	flags smallint NOT NULL
)`,
	`CREATE TABLE emails (
	email text PRIMARY KEY,
	user_id bigint NOT NULL
)`,
	`CREATE TABLE follows (
	follower_id bigint NOT NULL,
	followee_id bigint NOT NULL,
	created_at timestamptz NOT NULL,
	PRIMARY KEY (follower_id, followee_id)
)`,
	`CREATE TABLE posts (
	author_id bigint NOT NULL,
	id bigint NOT NULL,
	body text NOT NULL,
	created_at timestamptz NOT NULL,
	like_count bigint NOT NULL DEFAULT 0,
	score real,
	PRIMARY KEY (author_id, id)
)`,
	`CREATE TABLE comments (
	post_author_id bigint NOT NULL,
	post_id bigint NOT NULL,
	id bigint NOT NULL,
	author_id bigint NOT NULL,
	body text NOT NULL,
	created_at timestamptz NOT NULL,
	PRIMARY KEY (post_author_id, id)
)`,
	`CREATE TABLE likes (
	post_author_id bigint NOT NULL,
	post_id bigint NOT NULL,
	user_id bigint NOT NULL,
	created_at timestamptz NOT NULL,
	PRIMARY KEY (post_author_id, post_id, user_id)
)`,
}

// tableData is one table's rows in COPY text format.
type tableData struct {
	table string
	rows  []string
}

// rng is a small deterministic generator (the data must be the same on
// every run and on both sides).
type rng uint64

func (r *rng) intn(n int) int {
	*r = *r*6364136223846793005 + 1442695040888963407
	return int((uint64(*r) >> 33) % uint64(n))
}

// numUsers is the number of users; timestamps count seconds from
// 2024-01-01 00:00:00 UTC.
const numUsers = 300

var countryRows = [][3]string{
	{"AR", "Argentina", "Americas"}, {"AU", "Australia", "Oceania"}, {"BR", "Brazil", "Americas"},
	{"CA", "Canada", "Americas"}, {"CN", "China", "Asia"}, {"DE", "Germany", "Europe"},
	{"EG", "Egypt", "Africa"}, {"ES", "Spain", "Europe"}, {"FR", "France", "Europe"},
	{"GB", "United Kingdom", "Europe"}, {"IN", "India", "Asia"}, {"IT", "Italy", "Europe"},
	{"JP", "Japan", "Asia"}, {"KE", "Kenya", "Africa"}, {"MX", "Mexico", "Americas"},
	{"NL", "Netherlands", "Europe"}, {"PL", "Poland", "Europe"}, {"SE", "Sweden", "Europe"},
	{"US", "United States", "Americas"}, {"ZA", "South Africa", "Africa"},
}

var words = []string{"hello", "world", "shard", "postgres", "merge", "coffee", "Zebra", "apple",
	"Éclair", "naïve", "tea", "sunset", "rain", "code", "proxy", "", "42", "a b", "quote'd", "back\\slash"}

// copyText escapes s for COPY text format.
func copyText(s string) string {
	r := strings.NewReplacer("\\", "\\\\", "\t", "\\t", "\n", "\\n", "\r", "\\r")
	return r.Replace(s)
}

// ts is a timestamp as seconds after epoch (see timestampColumns).
func ts(sec int) string {
	return fmt.Sprintf("%d", sec)
}

// generate builds the data set.
func generate() []tableData {
	var r rng = 20260101
	var out []tableData
	countries := tableData{table: "countries"}
	for i, c := range countryRows {
		pop := fmt.Sprint(1_000_000 * (i*7%13 + 1))
		if i%6 == 5 {
			pop = `\N`
		}
		countries.rows = append(countries.rows, strings.Join([]string{c[0], c[1], c[2], pop}, "\t"))
	}
	out = append(out, countries)

	users := tableData{table: "users"}
	emails := tableData{table: "emails"}
	follows := tableData{table: "follows"}
	posts := tableData{table: "posts"}
	comments := tableData{table: "comments"}
	likes := tableData{table: "likes"}
	type post struct{ author, id int }
	var allPosts []post
	postID, commentID := 0, 0
	for id := 1; id <= numUsers; id++ {
		name := fmt.Sprintf("%s_%03d", words[r.intn(len(words))], (id*37)%numUsers)
		if id%17 == 0 {
			name = "Dup Name" // ties on name
		}
		email := fmt.Sprintf("user%d@example.%s", id, []string{"com", "org", "net"}[id%3])
		country := `\N`
		if id%9 != 0 {
			country = countryRows[r.intn(len(countryRows))][0]
		}
		karma := `\N`
		if id%11 != 0 {
			karma = fmt.Sprintf("%d.%02d", r.intn(20000)-5000, r.intn(100))
		}
		rating := `\N`
		if id%13 != 0 {
			rating = fmt.Sprintf("%d.%d", r.intn(5), r.intn(1000))
		}
		active := []string{"t", "f"}[r.intn(4)/3]
		birthday := `\N`
		if id%7 != 0 {
			birthday = fmt.Sprintf("%04d-%02d-%02d", 1950+r.intn(55), 1+r.intn(12), 1+r.intn(28))
		}
		wake := fmt.Sprintf("%02d:%02d:%02d", r.intn(24), r.intn(60), r.intn(60))
		lastLogin := `\N`
		if id%5 != 0 {
			lastLogin = fmt.Sprintf("2025-%02d-%02d %02d:%02d:%02d.%03d", 1+r.intn(12), 1+r.intn(28), r.intn(24), r.intn(60), r.intn(60), r.intn(1000))
		}
		created := ts(id*3600 + r.intn(3600))
		session := `\N`
		if id%4 != 0 {
			session = fmt.Sprintf("%d days %02d:%02d:%02d", r.intn(40), r.intn(24), r.intn(60), r.intn(60))
			if id%10 == 1 {
				session = fmt.Sprintf("%d mons %d days", 1+r.intn(3), r.intn(30))
			}
		}
		ext := fmt.Sprintf("%08x-%04x-4%03x-8%03x-%012x", r.intn(1<<30)*3+id, r.intn(1<<16), r.intn(1<<12), r.intn(1<<12), id*7919)
		avatar := `\N`
		if id%3 != 0 {
			avatar = fmt.Sprintf(`\\x%02x%02x%02x`, r.intn(256), r.intn(256), id%256)
		}
		level := fmt.Sprint(r.intn(10))
		flags := fmt.Sprint(r.intn(200) - 100)
		users.rows = append(users.rows, strings.Join([]string{fmt.Sprint(id), copyText(name), email, country, karma, rating, active,
			birthday, wake, lastLogin, created, session, ext, avatar, level, flags}, "\t"))
		emails.rows = append(emails.rows, email+"\t"+fmt.Sprint(id))

		nf := r.intn(10)
		seen := map[int]bool{}
		for j := 0; j < nf; j++ {
			f := 1 + r.intn(numUsers)
			if f == id || seen[f] {
				continue
			}
			seen[f] = true
			follows.rows = append(follows.rows, fmt.Sprintf("%d\t%d\t%s", id, f, ts(id*3600+j*60+r.intn(60))))
		}
		np := r.intn(8)
		for j := 0; j < np; j++ {
			postID++
			body := words[r.intn(len(words))] + " " + words[r.intn(len(words))]
			if j%3 == 2 {
				body = strings.Repeat(words[r.intn(len(words))], 1+r.intn(3))
			}
			score := `\N`
			if postID%5 != 0 {
				score = fmt.Sprintf("%d.5", r.intn(100))
			}
			posts.rows = append(posts.rows, fmt.Sprintf("%d\t%d\t%s\t%s\t%d\t%s", id, postID, copyText(body), ts(400000+postID*600+r.intn(600)), r.intn(50), score))
			allPosts = append(allPosts, post{id, postID})
		}
	}
	for _, p := range allPosts {
		nc := r.intn(5)
		for j := 0; j < nc; j++ {
			commentID++
			comments.rows = append(comments.rows, fmt.Sprintf("%d\t%d\t%d\t%d\t%s\t%s", p.author, p.id, commentID, 1+r.intn(numUsers),
				copyText(words[r.intn(len(words))]+" "+fmt.Sprint(commentID%7)), ts(2000000+commentID*120+r.intn(120))))
		}
		nl := r.intn(6)
		seen := map[int]bool{}
		for j := 0; j < nl; j++ {
			u := 1 + r.intn(numUsers)
			if seen[u] {
				continue
			}
			seen[u] = true
			likes.rows = append(likes.rows, fmt.Sprintf("%d\t%d\t%d\t%s", p.author, p.id, u, ts(3000000+p.id*60+j)))
		}
	}
	return append(out, users, emails, follows, posts, comments, likes)
}

// timestampColumns are the positions of a table's timestamptz columns,
// which generate fills with seconds after epoch; load writes them as UTC
// text, which COPY reads the same whatever the session's TimeZone.
func timestampColumns(table string) []int {
	switch table {
	case "users":
		return []int{10}
	case "follows":
		return []int{2}
	case "posts":
		return []int{3}
	case "comments":
		return []int{5}
	case "likes":
		return []int{3}
	}
	return nil
}

// utcText turns seconds after epoch into timestamptz text with offset.
func utcText(sec string) string {
	var n int
	fmt.Sscan(sec, &n)
	days := n / 86400
	rest := n % 86400
	// 2024 is a leap year; walk months from 2024-01-01.
	y, m := 2024, 1
	for {
		dim := []int{31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31}[m-1]
		if m == 2 && y%4 == 0 {
			dim = 29
		}
		if days < dim {
			break
		}
		days -= dim
		m++
		if m > 12 {
			m, y = 1, y+1
		}
	}
	return fmt.Sprintf("%04d-%02d-%02d %02d:%02d:%02d+00", y, m, days+1, rest/3600, rest%3600/60, rest%60)
}

// load creates the schema and copies the data in through conn (the proxy
// or the reference database).
func load(ctx context.Context, conn *pgconn.PgConn, data []tableData) error {
	for _, stmt := range schema {
		if _, err := conn.Exec(ctx, stmt).ReadAll(); err != nil {
			return fmt.Errorf("%s: %w", strings.SplitN(stmt, "\n", 2)[0], err)
		}
	}
	for _, td := range data {
		tsCols := timestampColumns(td.table)
		var b strings.Builder
		for _, row := range td.rows {
			if len(tsCols) > 0 {
				f := strings.Split(row, "\t")
				for _, c := range tsCols {
					f[c] = utcText(f[c])
				}
				row = strings.Join(f, "\t")
			}
			b.WriteString(row)
			b.WriteByte('\n')
		}
		if _, err := conn.CopyFrom(ctx, strings.NewReader(b.String()), "COPY "+td.table+" FROM STDIN"); err != nil {
			return fmt.Errorf("copy %s: %w", td.table, err)
		}
	}
	if _, err := conn.Exec(ctx, "ANALYZE").ReadAll(); err != nil {
		return err
	}
	return nil
}
