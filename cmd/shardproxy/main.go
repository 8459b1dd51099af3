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
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

func main() {
	if err := newRootCommand().Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "shardproxy:", err)
		os.Exit(1)
	}
}
