// Command shardproxy runs the PostgreSQL sharding proxy.
//
//	shardproxy --config shardproxy.yaml   run the proxy from a config file
//	shardproxy dev [--shards N] ...       start local PostgreSQL servers and the proxy in front
//
// This package is the only place that reads flags, environment and signals;
// everything else receives a config.Config and its dependencies.
package main

import (
	"fmt"
	"os"
	"runtime/debug"
)

// version is set at build time with -ldflags "-X main.version=..."; when
// it is not, it is "devel" plus the VCS revision Go recorded in the binary.
var version = ""

func init() {
	if version != "" {
		return
	}
	version = "devel"
	if bi, ok := debug.ReadBuildInfo(); ok {
		var rev, modified string
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				rev = s.Value
			case "vcs.modified":
				if s.Value == "true" {
					modified = "+dirty"
				}
			}
		}
		if len(rev) > 12 {
			rev = rev[:12]
		}
		if rev != "" {
			version += "-" + rev + modified
		}
	}
}

func main() {
	if err := newRootCommand().Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "shardproxy:", err)
		os.Exit(1)
	}
}
