package admin

import (
	"errors"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestStandbyProblemAndRepairHint(t *testing.T) {
	const primary = "10.0.0.2:5432"
	streaming := standbyState{inRecovery: true, sameSystem: true, walLogHints: true, fullPageWrites: true,
		receiver: "streaming", senderHost: "10.0.0.2", senderPort: "5432", receivedTLI: 2, primaryTLI: 2}
	if p := streaming.problem(primary); p != "" {
		t.Errorf("a standby streaming from the primary: %q", p)
	}
	cases := []struct {
		name         string
		mutate       func(*standbyState)
		problem      string
		hint, noHint string
	}{
		{"old primary, rewindable", func(s *standbyState) { s.inRecovery, s.receiver = false, "" },
			"not a standby", "pg_rewind --target-pgdata=/data --source-server='host=10.0.0.2 port=5432", ""},
		{"old primary, checksums", func(s *standbyState) { s.inRecovery, s.receiver, s.walLogHints, s.checksums = false, "", false, true },
			"not a standby", "pg_rewind", ""},
		{"old primary, no wal_log_hints", func(s *standbyState) { s.inRecovery, s.receiver, s.walLogHints = false, "", false },
			"not a standby", "pg_rewind cannot be used on it", "pg_rewind --target"},
		{"old primary, full_page_writes off", func(s *standbyState) { s.inRecovery, s.receiver, s.fullPageWrites = false, "", false },
			"not a standby", "pg_basebackup -h 10.0.0.2 -p 5432 -U postgres -D /data -X stream -R", "pg_rewind --target"},
		{"diverged standby", func(s *standbyState) { s.receiver = "waiting" },
			"WAL receiver is waiting", "pg_rewind", ""},
		{"another cluster", func(s *standbyState) { s.sameSystem = false },
			"system identifier differs", "pg_basebackup", "pg_rewind --target"},
		{"streams from elsewhere", func(s *standbyState) { s.senderHost = "10.0.0.9" },
			"streams from 10.0.0.9:5432", "primary_conninfo", ""},
		{"old timeline", func(s *standbyState) { s.receivedTLI = 1 },
			"timeline 1, the primary is on timeline 2", "", ""},
		{"primary down", func(s *standbyState) { s.primaryErr = errors.New("refused") },
			"cannot be read", "bring the shard's primary back", ""},
	}
	for _, c := range cases {
		st := streaming
		c.mutate(&st)
		p := st.problem(primary)
		h := st.repairHint(primary, "/data")
		if !strings.Contains(p, c.problem) || !strings.Contains(h, c.hint) || (c.noHint != "" && strings.Contains(h, c.noHint)) {
			t.Errorf("%s:\nproblem %q (want %q)\nhint %q (want %q, not %q)", c.name, p, c.problem, h, c.hint, c.noHint)
		}
	}
}

func TestSameEndpoint(t *testing.T) {
	for _, c := range []struct {
		host, port, addr string
		want             bool
	}{
		{"127.0.0.1", "5432", "127.0.0.1:5432", true},
		{"localhost", "5432", "127.0.0.1:5432", true},
		{"127.0.0.1", "5433", "127.0.0.1:5432", false},
		{"10.0.0.1", "5432", "10.0.0.2:5432", false},
		{"DB1", "5432", "db1:5432", true},
	} {
		if got := sameEndpoint(c.host, c.port, c.addr); got != c.want {
			t.Errorf("sameEndpoint(%s, %s, %s) = %v, want %v", c.host, c.port, c.addr, got, c.want)
		}
	}
}

func TestLongForwardTimeout(t *testing.T) {
	if d := longForwardTimeout(httptest.NewRequest("POST", "/v1/shards/s1/failover", nil)); d < failoverMaxDuration {
		t.Errorf("a forwarded failover waits %s, want at least %s", d, failoverMaxDuration)
	}
	if d := longForwardTimeout(httptest.NewRequest("POST", "/v1/shards", nil)); d != 0 {
		t.Errorf("a forwarded shard add waits %s, want the default", d)
	}
}
