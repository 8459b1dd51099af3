package topology

import (
	"crypto/sha256"
	"encoding/binary"
	"math"
	"sort"
	"strconv"
)

// DefaultVNodes is the number of virtual nodes per shard on the hash ring
// when a caller passes 0.
const DefaultVNodes = 64

// ringPoint is the position of virtual node i of shard on the ring: the first
// 8 bytes (big-endian) of sha256("name#i") read as an int64. Deterministic
// across processes and versions: changing it would change every layout.
func ringPoint(shard string, i int) int64 {
	h := sha256.Sum256([]byte(shard + "#" + strconv.Itoa(i)))
	return int64(binary.BigEndian.Uint64(h[:8]))
}

type vnode struct {
	pos   int64
	shard string
}

func ringOf(shards []string, vnodes int) []vnode {
	if vnodes <= 0 {
		vnodes = DefaultVNodes
	}
	var ring []vnode
	seen := map[string]bool{}
	for _, s := range shards {
		if seen[s] {
			continue
		}
		seen[s] = true
		for i := 0; i < vnodes; i++ {
			ring = append(ring, vnode{ringPoint(s, i), s})
		}
	}
	sort.Slice(ring, func(i, j int) bool {
		if ring[i].pos != ring[j].pos {
			return ring[i].pos < ring[j].pos
		}
		return ring[i].shard < ring[j].shard
	})
	// Two vnodes on the same position (astronomically unlikely): the first
	// in name order keeps it.
	out := ring[:0]
	for _, v := range ring {
		if len(out) > 0 && out[len(out)-1].pos == v.pos {
			continue
		}
		out = append(out, v)
	}
	return out
}

// claims returns, for every vnode of ring at index i, the interval it owns:
// (previous vnode, this vnode], wrapping around the ends of the int64 space.
// A key hash belongs to the first vnode at or after it, clockwise.
func claims(ring []vnode, i int) []Range {
	p := ring[i]
	if i > 0 {
		return []Range{{Lo: ring[i-1].pos + 1, Hi: p.pos, Shard: p.shard}}
	}
	out := []Range{{Lo: math.MinInt64, Hi: p.pos, Shard: p.shard}}
	if last := ring[len(ring)-1].pos; last < math.MaxInt64 {
		out = append(out, Range{Lo: last + 1, Hi: math.MaxInt64, Shard: p.shard})
	}
	return out
}

// HashLayout returns the initial hash range table for shards: a ring with
// vnodes virtual nodes per shard (DefaultVNodes when vnodes <= 0), each
// owning the interval from the previous vnode (exclusive) to itself
// (inclusive), adjacent intervals of the same shard merged. The result covers
// [MinInt64, MaxInt64] exactly once, sorted, and depends only on the set of
// names (not their order). It returns nil for no shards.
func HashLayout(shards []string, vnodes int) []Range {
	ring := ringOf(shards, vnodes)
	if len(ring) == 0 {
		return nil
	}
	var out []Range
	for i := range ring {
		out = append(out, claims(ring, i)...)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Lo < out[j].Lo })
	return MergeAdjacent(out)
}

// AddShardLayout returns ranges with newShard added to the ring: the
// intervals newShard's vnodes claim — computed on the ring of the shards that
// own ranges now plus newShard, with the same vnodes — are reassigned to
// newShard; nothing else changes, so no key moves between the existing shards
// and about 1/N of the space (N shards after the addition) moves to the new
// one. ranges must be a valid hash range table; it is not modified. The
// result is merged (MergeAdjacent). If ranges were produced by HashLayout
// with the same vnodes, the result equals HashLayout of all shards.
func AddShardLayout(ranges []Range, newShard string, vnodes int) []Range {
	var names []string
	seen := map[string]bool{}
	for _, r := range ranges {
		if !seen[r.Shard] {
			seen[r.Shard] = true
			names = append(names, r.Shard)
		}
	}
	if seen[newShard] {
		return MergeAdjacent(append([]Range(nil), ranges...))
	}
	ring := ringOf(append(names, newShard), vnodes)
	out := append([]Range(nil), ranges...)
	for i, v := range ring {
		if v.shard != newShard {
			continue
		}
		for _, c := range claims(ring, i) {
			out = ReassignRange(out, c.Lo, c.Hi, newShard)
		}
	}
	return MergeAdjacent(out)
}

// ReassignRange returns a copy of the sorted, non-overlapping table rs with
// [lo, hi] assigned to shard: ranges that straddle lo or hi are split, ranges
// inside are reassigned, and gaps inside [lo, hi] (natural range tables) are
// filled. Adjacent ranges are not merged. lo <= hi is required.
func ReassignRange(rs []Range, lo, hi int64, shard string) []Range {
	out := make([]Range, 0, len(rs)+2)
	for _, r := range rs {
		if r.Hi < lo || r.Lo > hi {
			out = append(out, r)
			continue
		}
		if r.Lo < lo {
			out = append(out, Range{Lo: r.Lo, Hi: lo - 1, Shard: r.Shard})
		}
		if r.Hi > hi {
			out = append(out, Range{Lo: hi + 1, Hi: r.Hi, Shard: r.Shard})
		}
	}
	out = append(out, Range{Lo: lo, Hi: hi, Shard: shard})
	sort.Slice(out, func(i, j int) bool { return out[i].Lo < out[j].Lo })
	return out
}

// SplitRangeAt returns a copy of rs with the range containing at split into
// [Lo, at-1] and [at, Hi], both owned by the same shard. ok is false when no
// range contains at or at is already a range start (nothing to split).
func SplitRangeAt(rs []Range, at int64) (out []Range, ok bool) {
	i := FindRange(rs, at)
	if i < 0 || rs[i].Lo == at {
		return nil, false
	}
	out = make([]Range, 0, len(rs)+1)
	out = append(out, rs[:i]...)
	out = append(out, Range{Lo: rs[i].Lo, Hi: at - 1, Shard: rs[i].Shard}, Range{Lo: at, Hi: rs[i].Hi, Shard: rs[i].Shard})
	out = append(out, rs[i+1:]...)
	return out, true
}

// MergeAdjacent merges neighbouring ranges of a sorted table that touch
// (a.Hi+1 == b.Lo) and have the same shard. It reuses rs's storage.
func MergeAdjacent(rs []Range) []Range {
	out := rs[:0]
	for _, r := range rs {
		if n := len(out); n > 0 && out[n-1].Shard == r.Shard && out[n-1].Hi != math.MaxInt64 && out[n-1].Hi+1 == r.Lo {
			out[n-1].Hi = r.Hi
			continue
		}
		out = append(out, r)
	}
	return out
}

// FindRange returns the index of the range of the sorted, non-overlapping
// table rs that contains v, or -1. O(log n).
func FindRange(rs []Range, v int64) int {
	i := sort.Search(len(rs), func(i int) bool { return rs[i].Hi >= v })
	if i < len(rs) && rs[i].Lo <= v {
		return i
	}
	return -1
}
