package raftstore

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"

	"github.com/hashicorp/go-hclog"
)

// TestHCLogAdapter: raft's info chatter is slog debug, warnings pass
// through with their key/value pairs and the logger's name.
func TestHCLogAdapter(t *testing.T) {
	var buf bytes.Buffer
	h := newHCLog(slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelInfo})))
	h.Info("entering follower state", "term", 3)
	if buf.Len() != 0 {
		t.Fatalf("info logged at slog info: %s", buf.String())
	}
	if h.IsDebug() || h.IsInfo() || !h.IsWarn() {
		t.Fatal("level checks do not follow the slog handler")
	}
	h.Named("transport").With("peer", "n2").Warn("failed to contact", "err", "refused")
	out := buf.String()
	for _, want := range []string{"level=WARN", "component=raft.transport", "peer=n2", "err=refused", `msg="failed to contact"`} {
		if !strings.Contains(out, want) {
			t.Fatalf("missing %q in %s", want, out)
		}
	}
	buf.Reset()
	h.StandardLogger(nil).Printf("[ERR] raft: boom")
	if !strings.Contains(buf.String(), "level=ERROR") {
		t.Fatalf("standard logger: %s", buf.String())
	}
	h.SetLevel(hclog.Error)
	buf.Reset()
	h.Warn("quiet")
	if buf.Len() != 0 {
		t.Fatal("SetLevel floor ignored")
	}
}
