package proxy

import (
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/shardproxy/shardproxy/proxy/config"
)

// TestSessionCharacteristicsPooled: SET SESSION CHARACTERISTICS AS
// TRANSACTION … is session state that follows the client across server
// connections in transaction pooling, and a later SET of one of the
// default_transaction_* parameters it sets overrides it, as on PostgreSQL —
// whatever order the proxy re-applies the session's settings in.
func TestSessionCharacteristicsPooled(t *testing.T) {
	tp := startProxy(t, func(c *config.Config) { c.Pool.Size = 1 })
	ctx := ctx10(t)
	a := connect(t, tp.dsn, pgx.QueryExecModeSimpleProtocol)
	b := connect(t, tp.dsn, pgx.QueryExecModeSimpleProtocol)
	exec := func(c *pgx.Conn, sql string) {
		t.Helper()
		if _, err := c.Exec(ctx, sql); err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
	}
	exec(a, "CREATE TABLE IF NOT EXISTS characteristics_t (x int)")
	t.Cleanup(func() { b.Exec(ctx, "DROP TABLE IF EXISTS characteristics_t") })

	exec(a, "SET SESSION CHARACTERISTICS AS TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
	for i := 0; i < 3; i++ {
		if v := showSetting(t, ctx, b, "default_transaction_read_only"); v != "off" {
			t.Fatalf("B sees A's characteristics: default_transaction_read_only = %s", v)
		}
		if v := showSetting(t, ctx, a, "default_transaction_read_only"); v != "on" {
			t.Fatalf("A lost READ ONLY: %s", v)
		}
		if v := showSetting(t, ctx, a, "default_transaction_isolation"); v != "repeatable read" {
			t.Fatalf("A lost its isolation level: %s", v)
		}
	}
	if _, err := a.Exec(ctx, "INSERT INTO characteristics_t VALUES (1)"); err == nil {
		t.Fatal("INSERT succeeded in a session whose transactions default to READ ONLY")
	}

	// A later SET wins on every server connection the session lands on
	// (B takes the only server connection in between, so A's settings are
	// applied again each time).
	exec(a, "SET default_transaction_read_only = off")
	for i := 0; i < 20; i++ {
		showSetting(t, ctx, b, "default_transaction_read_only")
		exec(a, "INSERT INTO characteristics_t VALUES (2)")
		if v := showSetting(t, ctx, a, "default_transaction_isolation"); v != "repeatable read" {
			t.Fatalf("round %d: A lost its isolation level: %s", i, v)
		}
	}
	// And the other way round.
	exec(a, "SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY")
	for i := 0; i < 5; i++ {
		showSetting(t, ctx, b, "default_transaction_read_only")
		if v := showSetting(t, ctx, a, "default_transaction_read_only"); v != "on" {
			t.Fatalf("round %d: the later SET SESSION CHARACTERISTICS lost: %s", i, v)
		}
	}
	exec(a, "RESET ALL")
	showSetting(t, ctx, b, "default_transaction_read_only")
	if v := showSetting(t, ctx, a, "default_transaction_read_only"); v != "off" {
		t.Fatalf("after RESET ALL: default_transaction_read_only = %s", v)
	}
	if v := showSetting(t, ctx, a, "default_transaction_isolation"); v != "read committed" {
		t.Fatalf("after RESET ALL: default_transaction_isolation = %s", v)
	}
}
