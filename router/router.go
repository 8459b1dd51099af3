package router

import (
	"fmt"
	"sort"

	"github.com/shardproxy/shardproxy/topology"
)

// Router maps distribution keys to shards over one topology Snapshot. It is
// immutable and safe for concurrent use. Build it once per snapshot: For
// caches it on the snapshot, so the hot path is
//
//	r := router.For(store.Current())
//	shard, err := r.ShardForKey("users", router.IntKey(42))
type Router struct {
	snap  *topology.Snapshot
	dists map[string]*distIndex
}

// distIndex is one distribution laid out for lookup.
type distIndex struct {
	name      string
	scheme    topology.Scheme
	keyType   topology.KeyType
	lo, hi    []int64  // integer range table, sorted
	owner     []string // owner[i] owns [lo[i], hi[i]]
	textFrom  []string // text range table, sorted
	textTo    []string // "" = unbounded
	textOwner []string
	list      keyMap // List scheme
	overrides keyMap
}

// keyMap maps key values to shards, keyed by the value's native form so a
// lookup does not format the key (only the map of the key type is used).
type keyMap struct {
	n     int
	ints  map[int64]string
	texts map[string]string
	uuids map[[16]byte]string
}

func newKeyMap(kt topology.KeyType, m map[string]string) keyMap {
	km := keyMap{n: len(m)}
	for k, shard := range m {
		v, err := KeyFromText(kt, k)
		if kt == topology.Text {
			v, err = TextKey(k), nil // used as stored, even if not valid UTF-8
		}
		if err != nil {
			continue // cannot happen: the snapshot holds canonical keys
		}
		switch kt {
		case topology.Int:
			if km.ints == nil {
				km.ints = map[int64]string{}
			}
			km.ints[v.Int] = shard
		case topology.Text:
			if km.texts == nil {
				km.texts = map[string]string{}
			}
			km.texts[v.Text] = shard
		case topology.UUID:
			if km.uuids == nil {
				km.uuids = map[[16]byte]string{}
			}
			km.uuids[v.UUID] = shard
		}
	}
	return km
}

func (m *keyMap) get(v Value) (string, bool) {
	if m.n == 0 {
		return "", false
	}
	var s string
	var ok bool
	switch v.Type {
	case topology.Int:
		s, ok = m.ints[v.Int]
	case topology.Text:
		s, ok = m.texts[v.Text]
	case topology.UUID:
		s, ok = m.uuids[v.UUID]
	}
	return s, ok
}

func (m *keyMap) shards(set map[string]bool) {
	for _, s := range m.ints {
		set[s] = true
	}
	for _, s := range m.texts {
		set[s] = true
	}
	for _, s := range m.uuids {
		set[s] = true
	}
}

// New indexes snap. Prefer For, which does it once per snapshot.
func New(snap *topology.Snapshot) *Router {
	r := &Router{snap: snap, dists: map[string]*distIndex{}}
	for _, d := range snap.Distributions() {
		x := &distIndex{name: d.Name, scheme: d.Scheme, keyType: d.KeyType,
			list: newKeyMap(d.KeyType, d.ListValues), overrides: newKeyMap(d.KeyType, d.Overrides)}
		for _, rg := range d.Ranges {
			x.lo = append(x.lo, rg.Lo)
			x.hi = append(x.hi, rg.Hi)
			x.owner = append(x.owner, rg.Shard)
		}
		for _, rg := range d.TextRanges {
			x.textFrom = append(x.textFrom, rg.From)
			x.textTo = append(x.textTo, rg.To)
			x.textOwner = append(x.textOwner, rg.Shard)
		}
		r.dists[d.Name] = x
	}
	return r
}

type memoKey struct{}

// For returns the Router of snap, building it on first use and caching it
// on the snapshot (topology.Snapshot.Memo).
func For(snap *topology.Snapshot) *Router {
	return snap.Memo(memoKey{}, func(s *topology.Snapshot) any { return New(s) }).(*Router)
}

// Snapshot returns the snapshot the router was built from.
func (r *Router) Snapshot() *topology.Snapshot { return r.snap }

// ShardForKey returns the shard that owns key in distribution dist: an
// override for the key wins; otherwise Hash distributions look the key's
// hash up in the range table, Range distributions the key itself, and List
// distributions the key's canonical text. O(log n) in the number of ranges.
//
// Errors (*RouteError): the distribution does not exist (42704), the key's
// type is not the distribution's (42804), or the key maps to no shard
// (22023: a gap in a range table or a value not in the list).
func (r *Router) ShardForKey(dist string, key Value) (string, error) {
	x, ok := r.dists[dist]
	if !ok {
		return "", &RouteError{Code: "42704", Distribution: dist, Msg: fmt.Sprintf("distribution %q does not exist", dist)}
	}
	if key.Type != x.keyType {
		return "", &RouteError{Code: "42804", Distribution: dist,
			Msg: fmt.Sprintf("distribution %s has %s keys, got a %s value %q", dist, x.keyType, orUnknown(key.Type), key.Canonical())}
	}
	if s, ok := x.overrides.get(key); ok {
		return s, nil
	}
	switch x.scheme {
	case topology.Hash:
		if s, ok := x.lookupInt(key.Hash()); ok {
			return s, nil
		}
	case topology.RangeScheme:
		if x.keyType == topology.Int {
			if s, ok := x.lookupInt(key.Int); ok {
				return s, nil
			}
		} else if s, ok := x.lookupText(key.Canonical()); ok {
			return s, nil
		}
	case topology.List:
		if s, ok := x.list.get(key); ok {
			return s, nil
		}
	}
	return "", &RouteError{Code: "22023", Distribution: dist, Key: key.Canonical(),
		Msg: fmt.Sprintf("distribution %s: key %q maps to no shard (%s scheme)", dist, key.Canonical(), x.scheme)}
}

// ShardForHash returns the owner of hash value h in a Hash distribution's
// range table, ignoring overrides (for range-wide operations such as moves).
func (r *Router) ShardForHash(dist string, h int64) (string, error) {
	x, ok := r.dists[dist]
	if !ok {
		return "", &RouteError{Code: "42704", Distribution: dist, Msg: fmt.Sprintf("distribution %q does not exist", dist)}
	}
	if x.scheme != topology.Hash {
		return "", &RouteError{Code: "42809", Distribution: dist, Msg: fmt.Sprintf("distribution %s is not hash-distributed", dist)}
	}
	if s, ok := x.lookupInt(h); ok {
		return s, nil
	}
	return "", &RouteError{Code: "22023", Distribution: dist, Msg: fmt.Sprintf("distribution %s: hash %d maps to no shard", dist, h)}
}

// ShardsOf returns the distinct shards that own any part of dist, sorted:
// the fan-out set for a statement on a distributed table without a usable key.
func (r *Router) ShardsOf(dist string) []string {
	x, ok := r.dists[dist]
	if !ok {
		return nil
	}
	set := map[string]bool{}
	for _, s := range x.owner {
		set[s] = true
	}
	for _, s := range x.textOwner {
		set[s] = true
	}
	x.list.shards(set)
	x.overrides.shards(set)
	out := make([]string, 0, len(set))
	for s := range set {
		out = append(out, s)
	}
	sort.Strings(out)
	return out
}

// KeyType returns the key type of dist.
func (r *Router) KeyType(dist string) (topology.KeyType, bool) {
	x, ok := r.dists[dist]
	if !ok {
		return "", false
	}
	return x.keyType, true
}

func (x *distIndex) lookupInt(v int64) (string, bool) {
	// First range whose upper bound reaches v; it holds v if it starts at
	// or below it.
	lo, hi := 0, len(x.hi)
	for lo < hi {
		m := int(uint(lo+hi) >> 1)
		if x.hi[m] < v {
			lo = m + 1
		} else {
			hi = m
		}
	}
	if lo < len(x.hi) && x.lo[lo] <= v {
		return x.owner[lo], true
	}
	return "", false
}

func (x *distIndex) lookupText(s string) (string, bool) {
	// Last range starting at or below s.
	i := sort.Search(len(x.textFrom), func(i int) bool { return x.textFrom[i] > s }) - 1
	if i >= 0 && (x.textTo[i] == "" || s < x.textTo[i]) {
		return x.textOwner[i], true
	}
	return "", false
}

func orUnknown(k topology.KeyType) string {
	if k == "" {
		return "untyped"
	}
	return string(k)
}

// RouteError is a routing failure a client may see. Code is its SQLSTATE.
type RouteError struct {
	Code         string
	Distribution string
	Key          string // canonical key text, when a key was given
	Msg          string
}

func (e *RouteError) Error() string { return e.Msg }

// SQLState returns Code.
func (e *RouteError) SQLState() string { return e.Code }
