package router_test

import (
	"strings"
	"testing"

	"github.com/shardproxy/shardproxy/router"
	"github.com/shardproxy/shardproxy/topology"
)

var sinkI int64
var sinkS string

func BenchmarkHashInt8(b *testing.B) {
	for i := 0; b.Loop(); i++ {
		sinkI += router.HashInt8(int64(i))
	}
}

func benchText(b *testing.B, s string) {
	b.SetBytes(int64(len(s)))
	for b.Loop() {
		sinkI += router.HashText(s)
	}
}

func BenchmarkHashText8(b *testing.B)   { benchText(b, "user1234") }
func BenchmarkHashText64(b *testing.B)  { benchText(b, strings.Repeat("abcdefgh", 8)) }
func BenchmarkHashText300(b *testing.B) { benchText(b, strings.Repeat("é", 150)) }

func BenchmarkHashUUID(b *testing.B) {
	u := [16]byte{0xa0, 0xee, 0xbc, 0x99, 0x9c, 0x0b, 0x4e, 0xf8, 0xbb, 0x6d, 0x6b, 0xb9, 0xbd, 0x38, 0x0a, 0x11}
	for b.Loop() {
		sinkI += router.HashUUID(u)
	}
}

// BenchmarkShardForKey: hash + override check + binary search over a
// 4-shard, 64-vnode range table (~250 ranges).
func BenchmarkShardForKey(b *testing.B) {
	r := router.For(snapshot(b))
	for i := 0; b.Loop(); i++ {
		s, err := r.ShardForKey("users", router.IntKey(int64(i)))
		if err != nil {
			b.Fatal(err)
		}
		sinkS = s
	}
}

// BenchmarkShardForKeyFromText includes parsing a text Bind parameter and
// fetching the cached router for the snapshot, as the planner will.
func BenchmarkShardForKeyFromText(b *testing.B) {
	snap := snapshot(b)
	param := []byte("123456789")
	for b.Loop() {
		k, err := router.KeyFromParam(topology.Int, 0, param)
		if err != nil {
			b.Fatal(err)
		}
		s, err := router.For(snap).ShardForKey("users", k)
		if err != nil {
			b.Fatal(err)
		}
		sinkS = s
	}
}

func BenchmarkShardForKeyList(b *testing.B) {
	r := router.For(snapshot(b))
	for b.Loop() {
		s, _ := r.ShardForKey("regions", router.TextKey("de"))
		sinkS = s
	}
}
