package proxy

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"log/slog"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/shardproxy/shardproxy/proxy/config"
)

func TestShutdownLetsTransactionsFinish(t *testing.T) {
	p := testCluster.Shards[0].Primary
	cfg := config.Default()
	cfg.Auth.TrustLoopback = true
	cfg.Shards = []config.Shard{{Name: "s0", Primary: config.Endpoint{Host: p.Host, Port: p.Port}}}
	srv, err := NewServer(cfg, Deps{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	ln, _ := Listen("127.0.0.1:0")
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	dsn := "postgres://postgres@" + ln.Addr().String() + "/postgres?sslmode=disable"
	ctx := ctx10(t)
	idle := connect(t, dsn, pgx.QueryExecModeCacheStatement)
	busy := connect(t, dsn, pgx.QueryExecModeCacheStatement)
	idle.Exec(ctx, "SELECT 1")
	tx, err := busy.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, "SELECT 1"); err != nil {
		t.Fatal(err)
	}
	shut := make(chan error, 1)
	go func() {
		sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		shut <- srv.Shutdown(sctx)
	}()
	// The idle client is closed; new connections are refused.
	waitFor(t, 5*time.Second, func() bool { return idle.Ping(ctx) != nil })
	if _, err := pgx.Connect(ctx, dsn); err == nil {
		t.Fatal("connected during shutdown")
	}
	// The transaction may finish.
	if _, err := tx.Exec(ctx, "SELECT 2"); err != nil {
		t.Fatalf("in-transaction statement during shutdown: %v", err)
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatalf("commit during shutdown: %v", err)
	}
	select {
	case err := <-shut:
		if err != nil {
			t.Fatalf("Shutdown: %v", err)
		}
	case <-time.After(8 * time.Second):
		t.Fatal("Shutdown did not finish after the transaction ended")
	}
	if err := <-served; !errors.Is(err, ErrServerClosed) {
		t.Fatalf("Serve: %v", err)
	}
}

func TestShutdownDeadlineClosesTransactions(t *testing.T) {
	tp := startProxy(t, nil)
	ctx := ctx10(t)
	c := connect(t, tp.dsn, pgx.QueryExecModeCacheStatement)
	tx, err := c.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	sctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	if err := tp.srv.Shutdown(sctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Shutdown: %v", err)
	}
	if time.Since(start) > 3*time.Second {
		t.Fatal("Shutdown took too long")
	}
	_, err = tx.Exec(ctx, "SELECT 1")
	if err == nil {
		t.Fatal("transaction survived forced shutdown")
	}
}

func TestReloadUsersWithoutDroppingClients(t *testing.T) {
	var cfg config.Config
	tp := startProxy(t, func(c *config.Config) {
		c.Auth.TrustLoopback = false
		c.Users = []config.User{{Name: "postgres", Password: "one"}}
		cfg = *c
	})
	ctx := ctx10(t)
	dsn := func(pw string) string { return strings.Replace(tp.dsn, "postgres@", "postgres:"+pw+"@", 1) }
	old := connect(t, dsn("one"), pgx.QueryExecModeCacheStatement)
	cfg.Users = []config.User{{Name: "postgres", Password: "two"}}
	cfg.Pool.Size = 7
	cfg.Listen = "127.0.0.1:1" // needs a restart: ignored
	if err := tp.srv.Reload(cfg); err != nil {
		t.Fatal(err)
	}
	if _, err := pgx.Connect(ctx, dsn("one")); err == nil {
		t.Fatal("old password still accepted")
	}
	c2 := connect(t, dsn("two"), pgx.QueryExecModeCacheStatement)
	for _, c := range []*pgx.Conn{old, c2} {
		var n int
		if err := c.QueryRow(ctx, "SELECT $1::int", 3).Scan(&n); err != nil || n != 3 {
			t.Fatalf("after reload: %v", err)
		}
	}
	bad := cfg
	bad.Pool.Size = 0
	if err := tp.srv.Reload(bad); err == nil {
		t.Fatal("invalid config accepted")
	}
}

func TestTLSAndMetrics(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile := writeSelfSigned(t, dir)
	reg := prometheus.NewRegistry()
	p := testCluster.Shards[0].Primary
	cfg := config.Default()
	cfg.Auth.TrustLoopback = true
	cfg.TLS = config.TLS{CertFile: certFile, KeyFile: keyFile}
	cfg.Shards = []config.Shard{{Name: "s0", Primary: config.Endpoint{Host: p.Host, Port: p.Port}}}
	srv, err := NewServer(cfg, Deps{Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	ln, _ := Listen("127.0.0.1:0")
	go srv.Serve(ln)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
	})
	ctx := ctx10(t)
	c := connect(t, "postgres://postgres@"+ln.Addr().String()+"/postgres?sslmode=require", pgx.QueryExecModeCacheStatement)
	if _, ok := c.PgConn().Conn().(*tls.Conn); !ok {
		t.Fatalf("connection is %T, not TLS", c.PgConn().Conn())
	}
	if _, err := c.Exec(ctx, "SELECT 1/0"); err == nil {
		t.Fatal("want error")
	}
	if _, err := c.Exec(ctx, "LISTEN x"); err != nil {
		t.Fatal(err)
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			v := m.GetGauge().GetValue() + m.GetCounter().GetValue()
			for _, l := range m.GetLabel() {
				if l.GetName() == "class" {
					mf.Name = new(string)
					*mf.Name = "errors_" + l.GetValue()
				}
			}
			got[mf.GetName()] += v
		}
	}
	if got["shardproxy_pinned_sessions"] != 1 || got["shardproxy_clients_active"] != 1 || got["errors_22"] != 1 {
		t.Fatalf("metrics: %v", got)
	}
}

func writeSelfSigned(t *testing.T, dir string) (string, string) {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "localhost"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kb, _ := x509.MarshalECPrivateKey(key)
	cert, keyf := filepath.Join(dir, "c.pem"), filepath.Join(dir, "k.pem")
	os.WriteFile(cert, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600)
	os.WriteFile(keyf, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}), 0o600)
	return cert, keyf
}
