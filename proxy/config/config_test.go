package config

import (
	"errors"
	"strings"
	"testing"
)

const shardedYAML = `
listen: 127.0.0.1:6432
auth: {method: trust}
shards:
  - {name: s0, primary: {host: 127.0.0.1, port: 5432}}
  - {name: s1, primary: {host: 127.0.0.1, port: 5433}}
sharding:
  distributions:
    - {name: users, scheme: hash, key_type: int}
  tables:
    - {name: users, key: id, distribution: users}
    - {name: countries, kind: reference}
`

func TestShardingSectionBuildsTopology(t *testing.T) {
	cfg, err := Parse([]byte(shardedYAML))
	if err != nil {
		t.Fatal(err)
	}
	snap, err := cfg.Topology()
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(snap.ShardNames(), ","); got != "s0,s1" {
		t.Errorf("shards %q", got)
	}
	if snap.DefaultShard() != "s0" {
		t.Errorf("default shard %q, want the first shard", snap.DefaultShard())
	}
	tb, ok := snap.Table("public.users")
	if !ok || tb.KeyColumn != "id" {
		t.Errorf("users table: %+v, %v", tb, ok)
	}
	if p := cfg.ShardSpecs()[1].Primary; p != "127.0.0.1:5433" {
		t.Errorf("shard spec primary %q", p)
	}
}

func TestShardingErrorsNameTheKey(t *testing.T) {
	cases := map[string]string{
		"unknown shard":        strings.Replace(shardedYAML, "{name: users, scheme: hash, key_type: int}", "{name: users, scheme: hash, key_type: int, shards: [s9]}", 1),
		"table without key":    strings.Replace(shardedYAML, "{name: users, key: id, distribution: users}", "{name: users, distribution: users}", 1),
		"unknown distribution": strings.Replace(shardedYAML, "distribution: users}", "distribution: nope}", 1),
	}
	for name, doc := range cases {
		_, err := Parse([]byte(doc))
		var fe *FieldError
		if !errors.As(err, &fe) || fe.Key != "sharding" {
			t.Errorf("%s: error %v, want a FieldError for key sharding", name, err)
		}
	}
}

func TestUnixSocketSettings(t *testing.T) {
	cfg, err := Parse([]byte(shardedYAML + "unix_socket_dir: /var/run/shardproxy\nunix_socket_mode: \"0700\"\n"))
	if err != nil {
		t.Fatal(err)
	}
	if got := cfg.UnixSocketPath(6432); got != "/var/run/shardproxy/.s.PGSQL.6432" {
		t.Errorf("socket path %q", got)
	}
	if m, err := cfg.UnixSocketFileMode(); err != nil || m != 0o700 {
		t.Errorf("mode %o, %v", m, err)
	}
	def, err := Parse([]byte(shardedYAML))
	if err != nil {
		t.Fatal(err)
	}
	if def.UnixSocketDir != "" || def.UnixSocketMode != "0777" {
		t.Errorf("defaults: dir %q mode %q, want off and 0777", def.UnixSocketDir, def.UnixSocketMode)
	}
	cases := map[string]struct{ yaml, key, problem string }{
		"relative dir": {"unix_socket_dir: run\n", "unix_socket_dir", "not an absolute path"},
		"long dir":     {"unix_socket_dir: /" + strings.Repeat("d", 100) + "\n", "unix_socket_dir", "too long"},
		"bad mode":     {"unix_socket_dir: /tmp\nunix_socket_mode: rwx\n", "unix_socket_mode", "octal"},
		"mode too big": {"unix_socket_dir: /tmp\nunix_socket_mode: \"01777\"\n", "unix_socket_mode", "octal"},
	}
	cases["bad method"] = struct{ yaml, key, problem string }{"", "auth.unix_socket_method", "must be peer"}
	for name, c := range cases {
		doc := shardedYAML + c.yaml
		if name == "bad method" {
			doc = strings.Replace(shardedYAML, "auth: {method: trust}", "auth: {method: trust, unix_socket_method: ident}", 1)
		}
		_, err := Parse([]byte(doc))
		var fe *FieldError
		if !errors.As(err, &fe) || fe.Key != c.key || !strings.Contains(fe.Problem, c.problem) {
			t.Errorf("%s: error %v, want a FieldError for %s saying %q", name, err, c.key, c.problem)
		}
	}
}
