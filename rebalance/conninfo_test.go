package rebalance

import (
	"testing"

	"github.com/jackc/pgx/v5"
)

// TestConninfo: the connection string parses back to the same host, port,
// database, user and password, also for a Unix-socket directory and values
// with quotes, backslashes and spaces; an empty password is left out.
func TestConninfo(t *testing.T) {
	cases := []struct{ addr, db, user, pw, host string }{
		{"10.0.0.5:5433", "app", "alice", "s3cret", "10.0.0.5"},
		{"/var/run/postgresql:5433", "app", "postgres", "", "/var/run/postgresql"},
		{"[::1]:5433", "my db", `o'brien`, `pa\ss 'word'`, "::1"},
	}
	for _, c := range cases {
		s := Conninfo(c.addr, c.db, c.user, c.pw)
		cfg, err := pgx.ParseConfig(s)
		if err != nil {
			t.Fatalf("%q: %v", s, err)
		}
		if cfg.Host != c.host || cfg.Port != 5433 || cfg.Database != c.db || cfg.User != c.user || cfg.Password != c.pw {
			t.Errorf("%q parsed as host %q port %d db %q user %q password %q", s, cfg.Host, cfg.Port, cfg.Database, cfg.User, cfg.Password)
		}
	}
}
