package compat

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/shardproxy/shardproxy/proxy"
	"github.com/shardproxy/shardproxy/proxy/config"
	"github.com/shardproxy/shardproxy/test/pgcluster"
	"github.com/shardproxy/shardproxy/test/socialapp"
)

var update = flag.Bool("update", false, "rewrite docs/compatibility.md from the corpus")

// docPath is docs/compatibility.md relative to this package.
const docPath = "../../docs/compatibility.md"

// TestCompatibilityDoc checks docs/compatibility.md is what the corpus
// generates (-update rewrites it).
func TestCompatibilityDoc(t *testing.T) {
	want := Document(Corpus)
	if *update {
		if err := os.WriteFile(docPath, []byte(want), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	got, err := os.ReadFile(docPath)
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != want {
		t.Fatal("docs/compatibility.md is stale: run go test ./test/compat -run TestCompatibilityDoc -update")
	}
}

// TestCorpusSize keeps the corpus at the size the suite promises.
func TestCorpusSize(t *testing.T) {
	if len(Corpus) < 300 {
		t.Fatalf("the corpus has %d statements, want at least 300", len(Corpus))
	}
}

// startProxy runs an in-process shardproxy over every shard of c with the
// social app's sharding.
func startProxy(t testing.TB, c *pgcluster.Cluster) string {
	t.Helper()
	spec, err := socialapp.ShardingSpec()
	if err != nil {
		t.Fatal(err)
	}
	cfg := config.Default()
	cfg.Listen = "127.0.0.1:0"
	cfg.Auth.TrustLoopback = true
	for _, sh := range c.Shards {
		cfg.Shards = append(cfg.Shards, config.Shard{Name: sh.Name, Primary: config.Endpoint{Host: sh.Primary.Host, Port: sh.Primary.Port}})
	}
	cfg.Sharding = spec
	cfg.Pool.Size = 8
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	srv, err := proxy.NewServer(cfg, proxy.Deps{Logger: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
		<-done
	})
	return ln.Addr().String()
}

func connect(t testing.TB, ctx context.Context, dsn string) *pgconn.PgConn {
	t.Helper()
	cfg, err := pgconn.ParseConfig(dsn)
	if err != nil {
		t.Fatal(err)
	}
	cfg.RuntimeParams["TimeZone"] = "UTC"
	cfg.RuntimeParams["DateStyle"] = "ISO, MDY"
	c, err := pgconn.ConnectConfig(ctx, cfg)
	if err != nil {
		t.Fatalf("connect %s: %v", dsn, err)
	}
	t.Cleanup(func() { c.Close(context.Background()) })
	return c
}

// TestCompat runs the corpus against one PostgreSQL database and through
// shardproxy over 4 shards and compares the answers.
func TestCompat(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	c, ref, sharded := startLoaded(t, ctx, "compat_reference")
	// The data really is spread over the shards.
	for _, sh := range c.Shards {
		conn := connect(t, ctx, sh.Primary.DSN("postgres"))
		o := Run(ctx, conn, "SELECT count(*) FROM users", nil, Simple)
		if o.Code != "" || len(o.Rows) != 1 || o.Rows[0] == `"0"` || o.Rows[0] == fmt.Sprintf("%q", fmt.Sprint(numUsers)) {
			t.Fatalf("shard %s holds %v users (%s); want a share", sh.Name, o.Rows, o.Message)
		}
		conn.Close(ctx)
	}

	failures := 0
	for i, cs := range Corpus {
		// Every mode, then the simple protocol once more: a statement the
		// proxy sends to one shard runs auto-prepared the second time its
		// shape is seen (pool.auto_prepare), and must still answer the same.
		for k, mode := range append(Modes[:len(Modes):len(Modes)], Simple) {
			if msg := runCase(ctx, ref, sharded, cs, mode); msg != "" {
				failures++
				label := mode.String()
				if k == len(Modes) {
					label += " (again)"
				}
				t.Errorf("case %d [%s] %s\n    %s: %s", i+1, cs.Category, cs.SQL, label, msg)
			}
		}
		if ctx.Err() != nil {
			t.Fatal(ctx.Err())
		}
	}
	t.Logf("%d statements × %d modes (simple twice), %d differences", len(Corpus), len(Modes)+1, failures)
	t.Run("multi-statement query strings", func(t *testing.T) { checkQueryStrings(t, ctx, ref, sharded) })
}

// runCase runs one case in one mode on both sides and describes what is
// wrong ("" when the case holds).
func runCase(ctx context.Context, ref, sharded *pgconn.PgConn, cs Case, mode Mode) string {
	if cs.Expect == Refused {
		// Refused statements must not change the reference either.
		Run(ctx, ref, "BEGIN", nil, Simple)
		defer Run(ctx, ref, "ROLLBACK", nil, Simple)
	}
	want := Run(ctx, ref, cs.SQL, cs.Args, mode)
	got := Run(ctx, sharded, cs.SQL, cs.Args, mode)
	switch cs.Expect {
	case Refused:
		if got.Code == Refused {
			return ""
		}
		if got.Code == "" && Diff(want, got, Ordered(cs.SQL)) == "" {
			return "listed as refused (0A000) but now answers correctly: move it to the supported cases"
		}
		return fmt.Sprintf("want 0A000, got %s", describe(got))
	case "error":
		if want.Code == "" {
			return "the reference did not fail: fix the corpus"
		}
	default:
		if want.Code != "" {
			return "the reference failed: " + want.Code + " " + want.Message
		}
	}
	return Diff(want, got, Ordered(cs.SQL))
}

func describe(o Outcome) string {
	if o.Code != "" {
		return o.Code + " " + o.Message
	}
	return fmt.Sprintf("%d rows [%s] %s", len(o.Rows), strings.Join(o.Columns, " "), o.Tag)
}
