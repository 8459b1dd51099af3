// Command shardctl drives a shardproxy cluster: topology, moves, rebalance
// and failover, through the admin HTTP API of any proxy.
package main

import (
	"fmt"
	"os"
)

func main() {
	if err := newRootCommand().Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "shardctl:", err)
		os.Exit(1)
	}
}
