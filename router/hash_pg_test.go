package router_test

import (
	"context"
	"math"
	"math/rand/v2"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/jackc/pgx/v5"

	"github.com/shardproxy/shardproxy/router"
	"github.com/shardproxy/shardproxy/test/pgcluster"
	"github.com/shardproxy/shardproxy/topology"
)

// TestHashesMatchPostgres is the proof that routing agrees with SQL: every
// hash function is compared with PostgreSQL's own on a real server for at
// least perType values per key type, sent in bulk as arrays.
func TestHashesMatchPostgres(t *testing.T) {
	c := pgcluster.StartT(t, pgcluster.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, c.Shards[0].Primary.DSN("postgres"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	var enc string
	if err := conn.QueryRow(ctx, "SHOW server_encoding").Scan(&enc); err != nil || enc != "UTF8" {
		t.Fatalf("server encoding %q (%v); the text test needs UTF8", enc, err)
	}
	t.Run("int", func(t *testing.T) { testHashInt(t, conn) })
	t.Run("text", func(t *testing.T) { testHashText(t, conn) })
	t.Run("uuid", func(t *testing.T) { testHashUUID(t, conn) })
}

const perType = 10000

// sqlHashes runs query with arg (an array) and returns the hash column in
// input order. query must select (ordinality, hash).
func sqlHashes(t *testing.T, conn *pgx.Conn, query string, arg any, n int) []int64 {
	t.Helper()
	rows, err := conn.Query(context.Background(), query, arg)
	if err != nil {
		t.Fatalf("%s: %v", query, err)
	}
	out := make([]int64, n)
	seen := 0
	for rows.Next() {
		var i, h int64
		if err := rows.Scan(&i, &h); err != nil {
			t.Fatal(err)
		}
		out[i-1] = h
		seen++
	}
	if err := rows.Err(); err != nil {
		t.Fatalf("%s: %v", query, err)
	}
	if seen != n {
		t.Fatalf("%s: got %d rows, want %d", query, seen, n)
	}
	return out
}

func intValues(r *rand.Rand) []int64 {
	vs := []int64{0, 1, -1, 2, -2, 42, -42,
		math.MaxInt32, math.MinInt32, math.MaxInt32 - 1, math.MinInt32 + 1, math.MaxInt32 + 1, math.MinInt32 - 1,
		math.MaxInt16, math.MinInt16, math.MaxInt16 + 1, math.MinInt16 - 1,
		1 << 32, -(1 << 32), 1<<32 - 1, -(1<<32 - 1), 1<<32 + 1, 1 << 31, -(1 << 31),
		math.MaxInt64, math.MinInt64, math.MaxInt64 - 1, math.MinInt64 + 1, math.MaxUint32, -math.MaxUint32}
	for len(vs) < perType {
		switch len(vs) % 4 {
		case 0:
			vs = append(vs, int64(r.Uint64()))
		case 1:
			vs = append(vs, r.Int64N(2_000_000)-1_000_000)
		case 2:
			vs = append(vs, int64(int32(r.Uint32())))
		default:
			// Values whose high word is all ones or zero but low word varies,
			// and their neighbours: the folding branch.
			vs = append(vs, int64(r.Uint32())<<32|int64(r.Uint32())>>int(r.IntN(32)))
		}
	}
	return vs
}

func testHashInt(t *testing.T, conn *pgx.Conn) {
	r := rand.New(rand.NewPCG(1, 2))

	vs := intValues(r)
	got := sqlHashes(t, conn, `SELECT i, hashint8extended(v, 0) FROM unnest($1::int8[]) WITH ORDINALITY AS u(v, i)`, vs, len(vs))
	bad := 0
	for i, v := range vs {
		if h := router.HashInt8(v); h != got[i] {
			if bad++; bad <= 10 {
				t.Errorf("HashInt8(%d) = %d, PostgreSQL says %d", v, h, got[i])
			}
		}
		if k := router.IntKey(v); k.Hash() != got[i] {
			t.Fatalf("IntKey(%d).Hash() differs", v)
		}
	}
	if bad > 0 {
		t.Fatalf("%d of %d int8 values differ", bad, len(vs))
	}

	// int4 and int2 keys hash like int8 keys of the same value.
	i4 := []int32{0, 1, -1, math.MaxInt32, math.MinInt32, math.MaxInt16, math.MinInt16}
	for len(i4) < perType {
		i4 = append(i4, int32(r.Uint32()))
	}
	got = sqlHashes(t, conn, `SELECT i, hashint4extended(v, 0) FROM unnest($1::int4[]) WITH ORDINALITY AS u(v, i)`, i4, len(i4))
	for i, v := range i4 {
		if h := router.HashInt8(int64(v)); h != got[i] {
			t.Fatalf("int4 %d: HashInt8 = %d, hashint4extended = %d", v, h, got[i])
		}
	}
	i2 := []int16{0, 1, -1, math.MaxInt16, math.MinInt16}
	for len(i2) < perType {
		i2 = append(i2, int16(r.Uint32()))
	}
	got = sqlHashes(t, conn, `SELECT i, hashint2extended(v, 0) FROM unnest($1::int2[]) WITH ORDINALITY AS u(v, i)`, i2, len(i2))
	for i, v := range i2 {
		if h := router.HashInt8(int64(v)); h != got[i] {
			t.Fatalf("int2 %d: HashInt8 = %d, hashint2extended = %d", v, h, got[i])
		}
	}
}

var runePools = [][]rune{
	[]rune("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 -_.,;:!?'\"\\/\t\n"),
	[]rune("äöüßéèçñøåÆŒœ€£ЖжЯяΩωαβ"), // 2-3 byte UTF-8
	[]rune("日本語中文한국어ไทย"),
	[]rune("😀🎉🚀👍🏽𝄞𝔸🀄🦄"), // 4-byte UTF-8
}

func randomText(r *rand.Rand, n int) string {
	var b strings.Builder
	mixed := r.IntN(3) == 0
	pool := runePools[r.IntN(len(runePools))]
	for i := 0; i < n; i++ {
		if mixed {
			pool = runePools[r.IntN(len(runePools))]
		}
		b.WriteRune(pool[r.IntN(len(pool))])
	}
	return b.String()
}

func testHashText(t *testing.T, conn *pgx.Conn) {
	r := rand.New(rand.NewPCG(3, 4))
	vs := []string{"", "a", "ab", "abc", "abcd", "hello world", "12345678901", "123456789012", "1234567890123",
		"ü", "日本語", "😀", "👍🏽", "a😀b", strings.Repeat("x", 1000), strings.Repeat("é😀", 3000), "Straße", "ΑΒΓ"}
	// Every byte length 0..64 in ASCII, to cover each tail case and block count.
	for n := 0; n <= 64; n++ {
		vs = append(vs, strings.Repeat("z", n))
	}
	for len(vs) < perType {
		vs = append(vs, randomText(r, r.IntN(301)))
	}
	for _, v := range vs {
		if !utf8.ValidString(v) {
			t.Fatalf("test bug: invalid UTF-8 %q", v)
		}
	}
	got := sqlHashes(t, conn, `SELECT i, hashtextextended(v, 0) FROM unnest($1::text[]) WITH ORDINALITY AS u(v, i)`, vs, len(vs))
	bad := 0
	for i, v := range vs {
		if h := router.HashText(v); h != got[i] {
			if bad++; bad <= 10 {
				t.Errorf("HashText(%q) = %d, PostgreSQL says %d", v, h, got[i])
			}
		}
		if h := router.HashBytes([]byte(v)); h != got[i] {
			t.Fatalf("HashBytes(%q) differs from PostgreSQL", v)
		}
	}
	if bad > 0 {
		t.Fatalf("%d of %d text values differ", bad, len(vs))
	}
	// varchar hashes like text.
	got = sqlHashes(t, conn, `SELECT i, hashtextextended(v::varchar, 0) FROM unnest($1::text[]) WITH ORDINALITY AS u(v, i)`, vs[:100], 100)
	for i, v := range vs[:100] {
		if router.HashText(v) != got[i] {
			t.Fatalf("varchar %q differs", v)
		}
	}
}

func testHashUUID(t *testing.T, conn *pgx.Conn) {
	r := rand.New(rand.NewPCG(5, 6))
	us := [][16]byte{{}, {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, {15: 1}, {0: 0x80}}
	for len(us) < perType {
		var u [16]byte
		for i := range u {
			u[i] = byte(r.Uint32())
		}
		us = append(us, u)
	}
	texts := make([]string, len(us))
	for i, u := range us {
		texts[i] = topology.FormatUUID(u)
	}
	got := sqlHashes(t, conn, `SELECT i, uuid_hash_extended(v::uuid, 0) FROM unnest($1::text[]) WITH ORDINALITY AS u(v, i)`, texts, len(texts))
	bad := 0
	for i, u := range us {
		if h := router.HashUUID(u); h != got[i] {
			if bad++; bad <= 10 {
				t.Errorf("HashUUID(%s) = %d, PostgreSQL says %d", texts[i], h, got[i])
			}
		}
		k, err := router.KeyFromText(topology.UUID, strings.ToUpper(texts[i]))
		if err != nil || k.Hash() != got[i] {
			t.Fatalf("KeyFromText(uuid %s): %v", texts[i], err)
		}
	}
	if bad > 0 {
		t.Fatalf("%d of %d uuid values differ", bad, len(us))
	}
}
