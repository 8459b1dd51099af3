package topology

import (
	"fmt"
	"math"
	"strconv"
)

// ShardSpec is a shard as written in a config file. The config package
// converts its own shard entries (host/port endpoints) to these.
type ShardSpec struct {
	Name     string   `yaml:"name" json:"name"`
	Primary  string   `yaml:"primary" json:"primary"`   // host:port
	Replicas []string `yaml:"replicas" json:"replicas"` // host:port each
	Region   string   `yaml:"region" json:"region"`
}

// Spec is the sharding part of a config file, meant to be embedded in the
// config package's structs:
//
//	sharding:
//	  default_shard: s0
//	  distributions:
//	    - name: users                 # a colocation group
//	      scheme: hash                # hash (default) | range | list
//	      key_type: int               # int (default) | text | uuid
//	      vnodes: 64                  # hash: virtual nodes per shard
//	      shards: [s0, s1]            # hash: shards of the initial layout (default: all)
//	      overrides: {"42": s1}       # pin single keys
//	    - name: regions
//	      scheme: list
//	      key_type: text
//	      lists: {eu1: [de, fr], us1: [us]}
//	    - name: events
//	      scheme: range
//	      ranges:                     # from inclusive, to exclusive; empty = unbounded
//	        - {from: "", to: "1000", shard: s0}
//	        - {from: "1000", to: "", shard: s1}
//	  tables:
//	    - {name: users, key: id, distribution: users}
//	    - {name: posts, key: author_id, distribution: users}
//	    - {name: countries, kind: reference}
type Spec struct {
	DefaultShard  string             `yaml:"default_shard" json:"default_shard"`
	Distributions []DistributionSpec `yaml:"distributions" json:"distributions"`
	Tables        []TableSpec        `yaml:"tables" json:"tables"`
}

// DistributionSpec describes one distribution; see Spec for an example.
// Defaults: Scheme hash, KeyType int, VNodes DefaultVNodes, Shards all.
//
// Ranges: for int keys From and To are decimal int64 ("" = unbounded) and
// become Range{Lo: From, Hi: To-1}; for text and uuid keys they become
// TextRanges as written (uuid bounds canonicalised). A hash distribution may
// give explicit Ranges instead of the ring layout (bounds are hash values).
type DistributionSpec struct {
	Name      string              `yaml:"name" json:"name"`
	Scheme    Scheme              `yaml:"scheme" json:"scheme"`
	KeyType   KeyType             `yaml:"key_type" json:"key_type"`
	VNodes    int                 `yaml:"vnodes" json:"vnodes"`
	Shards    []string            `yaml:"shards" json:"shards"`
	Ranges    []RangeSpec         `yaml:"ranges" json:"ranges"`
	Lists     map[string][]string `yaml:"lists" json:"lists"` // shard → values
	Overrides map[string]string   `yaml:"overrides" json:"overrides"`
}

// RangeSpec is one range of a DistributionSpec: [From, To) → Shard.
type RangeSpec struct {
	From  string `yaml:"from" json:"from"`
	To    string `yaml:"to" json:"to"`
	Shard string `yaml:"shard" json:"shard"`
}

// TableSpec lists one table. Kind defaults to distributed when Key is set.
// Name may omit the schema ("users" means "public.users").
type TableSpec struct {
	Name         string    `yaml:"name" json:"name"`
	Kind         TableKind `yaml:"kind" json:"kind"`
	Key          string    `yaml:"key" json:"key"`
	Distribution string    `yaml:"distribution" json:"distribution"`
}

// Build turns shards and a Spec into a validated Snapshot at version 1. The
// default shard is spec.DefaultShard, or the first shard when empty. Errors
// name the offending entry, e.g. `distribution regions: value "de" is listed
// for both eu1 and eu2`.
func Build(shards []ShardSpec, spec Spec) (*Snapshot, error) {
	b := NewBuilder(1)
	var names []string
	for _, s := range shards {
		b.AddShard(Shard{Name: s.Name, Primary: s.Primary, Replicas: s.Replicas, Region: s.Region})
		names = append(names, s.Name)
	}
	if spec.DefaultShard != "" {
		b.SetDefaultShard(spec.DefaultShard)
	}
	for _, ds := range spec.Distributions {
		d, err := distFromSpec(ds, names)
		if err != nil {
			return nil, err
		}
		b.AddDistribution(d)
	}
	for _, ts := range spec.Tables {
		kind := ts.Kind
		if kind == "" && ts.Key != "" {
			kind = Distributed
		}
		if kind == "" {
			return nil, invalidf("table %s: set kind (distributed or reference) or a key column", ts.Name)
		}
		b.AddTable(Table{Name: ts.Name, Kind: kind, KeyColumn: ts.Key, Distribution: ts.Distribution})
	}
	return b.Build()
}

func distFromSpec(ds DistributionSpec, allShards []string) (Distribution, error) {
	what := "distribution " + ds.Name
	d := Distribution{Name: ds.Name, Scheme: ds.Scheme, KeyType: ds.KeyType}
	if d.Scheme == "" {
		d.Scheme = Hash
	}
	if d.KeyType == "" {
		d.KeyType = Int
	}
	if !d.KeyType.valid() {
		return d, invalidf("%s: unknown key type %q (want int, text or uuid)", what, d.KeyType)
	}
	switch d.Scheme {
	case Hash, RangeScheme:
		if d.Scheme == Hash && len(ds.Ranges) == 0 {
			shards := ds.Shards
			if len(shards) == 0 {
				shards = allShards
			}
			d.Ranges = HashLayout(shards, ds.VNodes)
			break
		}
		for _, r := range ds.Ranges {
			if d.Scheme == Hash || d.KeyType == Int {
				lo, hi := int64(math.MinInt64), int64(math.MaxInt64)
				var err error
				if r.From != "" {
					if lo, err = strconv.ParseInt(r.From, 10, 64); err != nil {
						return d, invalidf("%s: range from %q: not an int64", what, r.From)
					}
				}
				if r.To != "" {
					to, err := strconv.ParseInt(r.To, 10, 64)
					if err != nil || to == math.MinInt64 {
						return d, invalidf("%s: range to %q: not an int64 above the minimum", what, r.To)
					}
					hi = to - 1
				}
				d.Ranges = append(d.Ranges, Range{Lo: lo, Hi: hi, Shard: r.Shard})
				continue
			}
			tr := TextRange{From: r.From, To: r.To, Shard: r.Shard}
			if d.KeyType == UUID {
				var err error
				if tr.From != "" {
					if tr.From, err = CanonicalKey(UUID, tr.From); err != nil {
						return d, invalidf("%s: range from: %v", what, err)
					}
				}
				if tr.To != "" {
					if tr.To, err = CanonicalKey(UUID, tr.To); err != nil {
						return d, invalidf("%s: range to: %v", what, err)
					}
				}
			}
			d.TextRanges = append(d.TextRanges, tr)
		}
	case List:
		d.ListValues = map[string]string{}
		for shard, values := range ds.Lists {
			for _, v := range values {
				k, err := CanonicalKey(d.KeyType, v)
				if err != nil {
					return d, invalidf("%s: list value: %v", what, err)
				}
				if prev, dup := d.ListValues[k]; dup {
					a, b := prev, shard
					if a > b {
						a, b = b, a
					}
					return d, invalidf("%s: value %q is listed for both %s and %s", what, k, a, b)
				}
				d.ListValues[k] = shard
			}
		}
	default:
		return d, invalidf("%s: unknown scheme %q (want hash, range or list)", what, d.Scheme)
	}
	for k, shard := range ds.Overrides {
		c, err := CanonicalKey(d.KeyType, k)
		if err != nil {
			return d, invalidf("%s: override key: %v", what, err)
		}
		if d.Overrides == nil {
			d.Overrides = map[string]string{}
		}
		if prev, dup := d.Overrides[c]; dup && prev != shard {
			return d, invalidf("%s: override %q is given twice", what, c)
		}
		d.Overrides[c] = shard
	}
	return d, nil
}

// String returns a one-line summary, for logs.
func (s *Snapshot) String() string {
	return fmt.Sprintf("topology v%d: %d shards, %d tables, %d distributions, default %s",
		s.d.Version, len(s.d.Shards), len(s.d.Tables), len(s.d.Distributions), s.d.DefaultShard)
}
