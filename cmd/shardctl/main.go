// Command shardctl operates a shardproxy cluster through the admin HTTP API
// of any of its proxies: status and shard health, shards, tables, range
// tables, key lookups, the key directory and Raft membership. Writes sent
// to any proxy reach the Raft leader. See docs/admin.md.
//
//	shardctl --server http://10.0.0.5:9930 --token $TOKEN status
//	shardctl key users 42
//	shardctl directory set users 42 shard1
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
