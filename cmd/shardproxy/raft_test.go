package main

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/shardproxy/shardproxy/proxy/admin"
	"github.com/shardproxy/shardproxy/test/wait"
)

// A single proxy with --raft-dir bootstraps itself from the config's
// topology, keeps changes across a restart, and ignores later edits of
// the file's sharding section (the Raft log is the truth).
func TestRaftSingleNodeKeepsTopologyAcrossRestart(t *testing.T) {
	adminPort := freePort(t)
	// One listen port for both runs: the restart binds right after the
	// first process released it, leaving no time for another test's
	// server (tests run in parallel and pick ports from 61000 up) to take
	// it, as a port found free once per run did.
	listenPort := freePort(t)
	conf := func(vnodes int) string {
		return fmt.Sprintf(`listen: 127.0.0.1:%d
admin_listen: 127.0.0.1:%d
shutdown_timeout: 2s
auth: {trust_loopback: true}
shards:
  - name: s0
    primary: {host: 127.0.0.1, port: 1}
  - name: s1
    primary: {host: 127.0.0.1, port: 2}
sharding:
  distributions:
    - {name: users, vnodes: %d}
  tables:
    - {name: users, key: id, distribution: users}
`, listenPort, adminPort, vnodes)
	}
	path := writeFile(t, "raft.yaml", conf(4))
	raftDir := filepath.Join(t.TempDir(), "raft")
	args := []string{"--config", path, "--raft-dir", raftDir, "--raft-bind", fmt.Sprintf("127.0.0.1:%d", freePort(t))}
	api := &admin.Client{BaseURL: fmt.Sprintf("http://127.0.0.1:%d", adminPort)}
	ready := func(p *proc) {
		t.Helper()
		if !wait.For(30*time.Second, func() bool {
			resp, err := http.Get(api.BaseURL + "/readyz")
			if err != nil {
				return false
			}
			resp.Body.Close()
			return resp.StatusCode == 200
		}) {
			t.Fatalf("not ready within 30s; output:\n%s", p.out.String())
		}
	}
	ctx := context.Background()
	key := func() admin.KeyAnswer {
		t.Helper()
		var ans admin.KeyAnswer
		if err := api.Get(ctx, "/v1/key", url.Values{"table": {"users"}, "value": {"42"}}, &ans); err != nil {
			t.Fatal(err)
		}
		return ans
	}

	p := startBinary(t, args...)
	ready(p)
	var res admin.WriteResult
	target := "s1"
	if key().Shard == "s1" {
		target = "s0"
	}
	if err := api.Do(ctx, http.MethodPut, "/v1/directory", admin.DirectoryRequest{Table: "users", Key: "42", Shard: target}, &res); err != nil {
		t.Fatal(err)
	}
	if res.Warning != "" || res.Version != 2 {
		t.Fatalf("write on a Raft node: %+v", res)
	}
	var ranges admin.Ranges
	if err := api.Get(ctx, "/v1/ranges", nil, &ranges); err != nil {
		t.Fatal(err)
	}
	nranges := len(ranges.Distributions[0].Ranges)
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if code := p.wait(t, 30*time.Second); code != 0 {
		t.Fatalf("exit %d; output:\n%s", code, p.out.String())
	}

	// Restart with a different sharding section: the Raft topology wins.
	if err := writeFileAt(path, conf(16)); err != nil {
		t.Fatal(err)
	}
	p = startBinary(t, args...)
	ready(p)
	if ans := key(); ans.Shard != target || ans.Reason != "override" || ans.Version != 2 {
		t.Fatalf("after restart: %+v", ans)
	}
	if err := api.Get(ctx, "/v1/ranges", nil, &ranges); err != nil || len(ranges.Distributions[0].Ranges) != nranges {
		t.Fatalf("ranges after restart with another vnodes setting: %d, want %d (%v)", len(ranges.Distributions[0].Ranges), nranges, err)
	}
	// It was ready before its election (serving the topology it had);
	// it leads again shortly.
	var st admin.Status
	var err error
	if !wait.For(10*time.Second, func() bool {
		st = admin.Status{}
		err = api.Get(ctx, "/v1/status", url.Values{"health": {"0"}}, &st)
		return err == nil && st.Mode == "raft" && st.Leader != nil && st.Leader.Self
	}) {
		t.Fatalf("status after restart: %+v %v", st, err)
	}
	if !strings.Contains(p.out.String(), "raft started") {
		t.Errorf("no raft start log line:\n%s", p.out.String())
	}
}

// Raft flag errors name the key and stop the proxy before it starts.
func TestRaftFlagErrors(t *testing.T) {
	path := writeFile(t, "noadmin.yaml", "shards:\n  - name: s0\n    primary: {host: 127.0.0.1, port: 1}\n")
	p := startBinary(t, "--config", path, "--raft-dir", t.TempDir())
	if code := p.wait(t, 30*time.Second); code == 0 || !strings.Contains(p.stderr.String(), "admin_listen") {
		t.Fatalf("exit %d; stderr:\n%s", code, p.stderr.String())
	}
}

func writeFileAt(path, content string) error {
	return os.WriteFile(path, []byte(content), 0o644)
}
