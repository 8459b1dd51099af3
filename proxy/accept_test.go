package proxy

import (
	"bytes"
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/shardproxy/shardproxy/test/wait"
)

func TestAppendBackendKeyData(t *testing.T) {
	want, err := (&pgproto3.BackendKeyData{ProcessID: 0x00312345, SecretKey: []byte{0xde, 0xad, 0xbe, 0xef}}).Encode(nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := appendBackendKeyData(nil, 0x00312345, 0xdeadbeef); !bytes.Equal(got, want) {
		t.Fatalf("appendBackendKeyData = %x, want %x", got, want)
	}
}

// One client after another and many at once: every connection is served
// (by a new or a reused session goroutine), at most maxIdleSessionWorkers
// goroutines wait afterwards, and Shutdown ends the waiting ones.
func TestSessionWorkersServeAndStop(t *testing.T) {
	tp := startProxy(t, nil)
	ctx := ctx10(t)
	query := func(c *pgx.Conn, i int) error {
		var got int
		if err := c.QueryRow(ctx, "SELECT $1::int", i).Scan(&got); err != nil {
			return err
		}
		if got != i {
			return fmt.Errorf("got %d, want %d", got, i)
		}
		return nil
	}
	seen := map[uint32]bool{}
	for i := 0; i < 50; i++ {
		c, err := pgx.Connect(ctx, tp.dsn)
		if err != nil {
			t.Fatalf("connection %d: %v", i, err)
		}
		if err := query(c, i); err != nil {
			t.Fatalf("connection %d: %v", i, err)
		}
		pid := c.PgConn().PID()
		if seen[pid] {
			t.Fatalf("connection %d got process ID %d a second time while the first holder is gone", i, pid)
		}
		seen[pid] = true
		c.Close(ctx)
	}
	wait.Until(t, 5*time.Second, "a session goroutine waits for the next client", func() bool {
		return tp.srv.workers.idle.Load() >= 1
	})

	const clients = maxIdleSessionWorkers + 36
	var wg sync.WaitGroup
	errs := make(chan error, clients)
	start := make(chan struct{})
	for i := 0; i < clients; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			c, err := pgx.Connect(ctx, tp.dsn)
			if err != nil {
				errs <- err
				return
			}
			defer c.Close(ctx)
			if err := query(c, i); err != nil {
				errs <- err
			}
		}()
	}
	close(start)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	wait.Until(t, 5*time.Second, "every session ended", func() bool { return tp.srv.nclients.Load() == 0 })
	if n := tp.srv.workers.idle.Load(); n > maxIdleSessionWorkers || n < 1 {
		t.Fatalf("%d session goroutines wait for clients, want 1..%d", n, maxIdleSessionWorkers)
	}

	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := tp.srv.Shutdown(sctx); err != nil {
		t.Fatal(err)
	}
	wait.Until(t, 5*time.Second, "waiting session goroutines end on Shutdown", func() bool {
		return tp.srv.workers.idle.Load() == 0
	})
}

// The greeting reports the server's parameters, overridden by the
// client's startup settings, and a BackendKeyData.
func TestGreetingParameterStatus(t *testing.T) {
	tp := startProxy(t, nil)
	ctx := ctx10(t)
	cfg, err := pgx.ParseConfig(tp.dsn)
	if err != nil {
		t.Fatal(err)
	}
	cfg.RuntimeParams["application_name"] = "greeting-test"
	cfg.RuntimeParams["DateStyle"] = "SQL, DMY"
	c, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(ctx)
	pc := c.PgConn()
	for name, want := range map[string]string{
		"application_name": "greeting-test",
		"DateStyle":        "SQL, DMY",
		"is_superuser":     "on", // the test cluster's user is a superuser
		"server_encoding":  "",
		"TimeZone":         "",
	} {
		got := pc.ParameterStatus(name)
		if want == "" {
			if got == "" {
				t.Errorf("ParameterStatus %s missing", name)
			}
			continue
		}
		if got != want {
			t.Errorf("ParameterStatus %s = %q, want %q", name, got, want)
		}
	}
	if pc.PID() == 0 || len(pc.SecretKey()) != 4 {
		t.Errorf("BackendKeyData: pid %d secret %x", pc.PID(), pc.SecretKey())
	}
}
