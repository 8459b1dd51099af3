package main

import (
	"bytes"
	"encoding/json"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/shardproxy/shardproxy/proxy/admin"
	"github.com/shardproxy/shardproxy/topology"
)

// run executes shardctl with args against srv and returns stdout and the
// error.
func run(t *testing.T, srv string, args ...string) (string, error) {
	t.Helper()
	cmd := newRootCommand()
	var out bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetErr(&out)
	cmd.SetArgs(append([]string{"--server", srv}, args...))
	err := cmd.Execute()
	return out.String(), err
}

func staticServer(t *testing.T, token string) string {
	t.Helper()
	snap, err := topology.Build([]topology.ShardSpec{{Name: "s0", Primary: "127.0.0.1:1"}, {Name: "s1", Primary: "127.0.0.1:2"}},
		topology.Spec{
			Distributions: []topology.DistributionSpec{{Name: "users", VNodes: 2}},
			Tables:        []topology.TableSpec{{Name: "users", Key: "id", Distribution: "users"}, {Name: "countries", Kind: topology.Reference}},
		})
	if err != nil {
		t.Fatal(err)
	}
	api, err := admin.New(admin.Options{Store: topology.NewStaticStore(snap), Token: token})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(api.Handler())
	t.Cleanup(srv.Close)
	return srv.URL
}

func TestReadableTablesAndJSON(t *testing.T) {
	srv := staticServer(t, "")
	out, err := run(t, srv, "tables", "list")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"TABLE", "public.users", "distributed", "public.countries", "reference", "default shard s0", "DISTRIBUTION"} {
		if !strings.Contains(out, want) {
			t.Errorf("tables list lacks %q:\n%s", want, out)
		}
	}
	out, err = run(t, srv, "directory", "set", "users", "42", "s1")
	if err != nil || !strings.Contains(out, "topology version 2") || !strings.Contains(out, "warning: static topology") {
		t.Fatalf("directory set: %v\n%s", err, out)
	}
	out, err = run(t, srv, "-o", "json", "key", "users", "42")
	if err != nil {
		t.Fatal(err)
	}
	var ans admin.KeyAnswer
	if err := json.Unmarshal([]byte(out), &ans); err != nil || ans.Shard != "s1" || ans.Reason != "override" {
		t.Fatalf("key -o json: %v %+v\n%s", err, ans, out)
	}
	out, err = run(t, srv, "status", "--health=false")
	if err != nil || !strings.Contains(out, "static topology") || !strings.Contains(out, "s0 (default)") {
		t.Fatalf("status: %v\n%s", err, out)
	}
	out, err = run(t, srv, "ranges", "--stats=false", "users")
	if err != nil || !strings.Contains(out, "SHARE") || !strings.Contains(out, "-9223372036854775808") {
		t.Fatalf("ranges: %v\n%s", err, out)
	}
	if out, err = run(t, srv, "directory", "unset", "users", "42"); err != nil {
		t.Fatalf("unset: %v\n%s", err, out)
	}
}

func TestErrorsSayWhatToDo(t *testing.T) {
	srv := staticServer(t, "tok")
	_, err := run(t, srv, "status")
	if err == nil || !strings.Contains(err.Error(), "--token") {
		t.Errorf("missing token: %v", err)
	}
	_, err = run(t, srv, "--token", "tok", "shards", "remove", "s1")
	if err == nil || !strings.Contains(err.Error(), "owns range") || !strings.Contains(err.Error(), "hint:") {
		t.Errorf("remove shard with data: %v", err)
	}
	_, err = run(t, "127.0.0.1:1", "status")
	if err == nil || !strings.Contains(err.Error(), "--server") {
		t.Errorf("unreachable: %v", err)
	}
	_, err = run(t, srv, "-o", "yaml", "status")
	if err == nil || !strings.Contains(err.Error(), "table or json") {
		t.Errorf("bad -o: %v", err)
	}
	t.Setenv(envToken, "tok")
	if out, err := run(t, srv, "shards", "list"); err != nil || !strings.Contains(out, "PRIMARY") {
		t.Errorf("token from %s: %v\n%s", envToken, err, out)
	}
}

func TestCompletionScript(t *testing.T) {
	out, err := run(t, "127.0.0.1:1", "completion", "bash")
	if err != nil || !strings.Contains(out, "shardctl") {
		t.Fatalf("completion bash: %v", err)
	}
}

// TestRemoveReplica takes a replica out of a shard through shardctl: the
// topology no longer lists it, and removing it again says it is unknown.
func TestRemoveReplica(t *testing.T) {
	snap, err := topology.Build([]topology.ShardSpec{{Name: "s0", Primary: "127.0.0.1:1", Replicas: []string{"127.0.0.1:3", "127.0.0.1:4"}}},
		topology.Spec{Distributions: []topology.DistributionSpec{{Name: "users", VNodes: 2}},
			Tables: []topology.TableSpec{{Name: "users", Key: "id", Distribution: "users"}}})
	if err != nil {
		t.Fatal(err)
	}
	store := topology.NewStaticStore(snap)
	api, err := admin.New(admin.Options{Store: store})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(api.Handler())
	t.Cleanup(srv.Close)
	out, err := run(t, srv.URL, "shards", "remove-replica", "s0", "127.0.0.1:3")
	if err != nil {
		t.Fatalf("remove-replica: %v\n%s", err, out)
	}
	sh, _ := store.Current().Shard("s0")
	if len(sh.Replicas) != 1 || sh.Replicas[0] != "127.0.0.1:4" {
		t.Fatalf("replicas of s0 after remove-replica: %+v", sh.Replicas)
	}
	if _, err := run(t, srv.URL, "shards", "remove-replica", "s0", "127.0.0.1:3"); err == nil || !strings.Contains(err.Error(), "127.0.0.1:3") {
		t.Errorf("removing it again: %v, want an error naming the replica", err)
	}
}
