package proxy

import (
	"os/exec"
	"regexp"
	"strings"
	"testing"

	"github.com/shardproxy/shardproxy/proxy/config"
)

// TestPgbenchModes runs pgbench through the proxy in transaction mode with
// 50 clients on a pool of 5, in every query mode, including -M prepared
// (which poolers without statement mapping fail).
func TestPgbenchModes(t *testing.T) {
	bin := "/usr/lib/postgresql/15/bin/pgbench"
	tp := startProxy(t, func(c *config.Config) { c.Pool.Size = 5 })
	direct := testCluster.Shards[0].Primary.DSN("postgres")
	if out, err := exec.Command(bin, "-i", "-s", "1", "-q", direct).CombinedOutput(); err != nil {
		t.Fatalf("pgbench -i: %v\n%s", err, out)
	}
	tpsRe := regexp.MustCompile(`number of failed transactions: 0 `)
	for _, mode := range []string{"simple", "extended", "prepared"} {
		for _, extra := range [][]string{{"-S"}, {}} {
			args := append([]string{"-n", "-M", mode, "-c", "50", "-j", "2", "-t", "40"}, extra...)
			args = append(args, tp.dsn)
			out, err := exec.Command(bin, args...).CombinedOutput()
			if err != nil || !tpsRe.Match(out) || strings.Contains(string(out), "error") {
				t.Fatalf("pgbench %v: %v\n%s", args, err, out)
			}
		}
	}
}
