package config

import (
	"strings"
	"testing"
)

const baseYAML = "admin_listen: 127.0.0.1:9930\nshards:\n  - name: s0\n    primary: {host: 127.0.0.1, port: 5432}\n"

func TestRaftAndAdminKeys(t *testing.T) {
	c, err := Parse([]byte(baseYAML + "admin_token: abc\nraft:\n  dir: /tmp/x\n  join: [10.0.0.1:9930, 'https://p2:9930/']\n"))
	if err != nil {
		t.Fatal(err)
	}
	if !c.Raft.Enabled() || c.Raft.Bind != "127.0.0.1:9931" || c.Raft.MaxVoters != 5 || c.AdminToken != "abc" {
		t.Fatalf("defaults: %+v", c.Raft)
	}
	if u := c.AdvertisedAdminURL(""); u != "http://127.0.0.1:9930" {
		t.Errorf("advertised admin URL %q", u)
	}
	if u, _ := AdminURL("https://p2:9930/"); u != "https://p2:9930" {
		t.Errorf("AdminURL: %q", u)
	}

	c.AdminListen = "0.0.0.0:9930"
	c.Raft.Advertise = "10.0.0.7:9931"
	if u := c.AdvertisedAdminURL("[::]:9930"); u != "http://10.0.0.7:9930" {
		t.Errorf("advertised admin URL on all interfaces: %q", u)
	}

	bad := []struct{ yaml, key string }{
		{"raft:\n  join: [a:1]\n", "raft.join"},
		{"raft:\n  dir: /x\n  bind: 0.0.0.0:9931\n", "raft.advertise"},
		{"raft:\n  dir: /x\n  bind: nope\n", "raft.bind"},
		{"raft:\n  dir: /x\n  join: ['ftp://x']\n", "raft.join[0]"},
		{"raft:\n  dir: /x\n  max_voters: 12\n", "raft.max_voters"},
		{"raft:\n  dir: /x\n  node_id: 'a b'\n", "raft.node_id"},
		{"admin_advertise: 10.0.0.1:9930\n", "admin_advertise"},
	}
	for _, b := range bad {
		_, err := Parse([]byte(baseYAML + b.yaml))
		if err == nil || !strings.Contains(err.Error(), b.key) {
			t.Errorf("%q: error %v does not name %s", b.yaml, err, b.key)
		}
	}
	_, err = Parse([]byte("shards:\n  - name: s0\n    primary: {host: 127.0.0.1, port: 5432}\nraft:\n  dir: /x\n"))
	if err == nil || !strings.Contains(err.Error(), "admin_listen") {
		t.Errorf("raft without admin_listen: %v", err)
	}
}
