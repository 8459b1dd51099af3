package topology

import (
	"bytes"
	"encoding/json"
	"fmt"
	"sort"
	"sync"
)

// Snapshot is one immutable, validated version of the topology. It is safe
// for concurrent use; nothing can change it after construction. Getters
// return copies, so callers may modify what they get.
//
// Snapshots are made by a Builder, Build (from a Spec), DecodeSnapshot or by
// applying a Command to an earlier Snapshot (ApplyCommand, Store.Apply).
// Always handle them by pointer.
type Snapshot struct {
	d data // frozen; sorted (shards, tables, distributions by name)

	shardIdx map[string]int
	tableIdx map[string]int
	distIdx  map[string]int

	memo sync.Map // see Memo
}

// data is the plain, serialisable content of a Snapshot (also its JSON form).
type data struct {
	Version       uint64         `json:"version"`
	DefaultShard  string         `json:"default_shard"`
	Shards        []Shard        `json:"shards"`
	Tables        []Table        `json:"tables"`
	Distributions []Distribution `json:"distributions"`
	Moves         []Move         `json:"moves,omitempty"`
}

func (d *data) clone() data {
	out := data{Version: d.Version, DefaultShard: d.DefaultShard}
	out.Shards = make([]Shard, len(d.Shards))
	for i, s := range d.Shards {
		out.Shards[i] = s.clone()
	}
	out.Tables = append([]Table(nil), d.Tables...)
	out.Distributions = make([]Distribution, len(d.Distributions))
	for i, x := range d.Distributions {
		out.Distributions[i] = x.clone()
	}
	out.Moves = make([]Move, len(d.Moves))
	for i, m := range d.Moves {
		out.Moves[i] = m.clone()
	}
	if len(out.Moves) == 0 {
		out.Moves = nil
	}
	return out
}

// freeze normalises d (sorts, fills defaults), validates it and wraps it in
// a Snapshot. d must not be used by the caller afterwards.
func freeze(d data) (*Snapshot, error) {
	for i := range d.Shards {
		if d.Shards[i].State == "" {
			d.Shards[i].State = ShardActive
		}
	}
	sort.Slice(d.Shards, func(i, j int) bool { return d.Shards[i].Name < d.Shards[j].Name })
	sort.Slice(d.Tables, func(i, j int) bool { return d.Tables[i].Name < d.Tables[j].Name })
	sort.Slice(d.Distributions, func(i, j int) bool { return d.Distributions[i].Name < d.Distributions[j].Name })
	for i := range d.Distributions {
		x := &d.Distributions[i]
		sort.SliceStable(x.Ranges, func(a, b int) bool { return x.Ranges[a].Lo < x.Ranges[b].Lo })
		sort.SliceStable(x.TextRanges, func(a, b int) bool { return x.TextRanges[a].From < x.TextRanges[b].From })
		if len(x.ListValues) == 0 {
			x.ListValues = nil
		}
		if len(x.Overrides) == 0 {
			x.Overrides = nil
		}
	}
	s := &Snapshot{
		d:        d,
		shardIdx: make(map[string]int, len(d.Shards)),
		tableIdx: make(map[string]int, len(d.Tables)),
		distIdx:  make(map[string]int, len(d.Distributions)),
	}
	for i, x := range d.Shards {
		if _, dup := s.shardIdx[x.Name]; dup {
			return nil, invalidf("shard %q is listed twice", x.Name)
		}
		s.shardIdx[x.Name] = i
	}
	for i, x := range d.Tables {
		if _, dup := s.tableIdx[x.Name]; dup {
			return nil, invalidf("table %q is listed twice", x.Name)
		}
		s.tableIdx[x.Name] = i
	}
	for i, x := range d.Distributions {
		if _, dup := s.distIdx[x.Name]; dup {
			return nil, invalidf("distribution %q is listed twice", x.Name)
		}
		s.distIdx[x.Name] = i
	}
	if err := s.Validate(); err != nil {
		return nil, err
	}
	return s, nil
}

// Empty returns the valid snapshot with no shards at version 0, the state a
// fresh Store starts from before its first command.
func Empty() *Snapshot {
	s, err := freeze(data{})
	if err != nil {
		panic(err) // cannot happen: the empty topology is valid
	}
	return s
}

// Version increases by one with every applied command.
func (s *Snapshot) Version() uint64 { return s.d.Version }

// DefaultShard is where tables that are not listed (catalogs, "other"
// tables) live. Empty only when there are no shards.
func (s *Snapshot) DefaultShard() string { return s.d.DefaultShard }

// ShardNames returns the shard names in sorted order.
func (s *Snapshot) ShardNames() []string {
	out := make([]string, len(s.d.Shards))
	for i, x := range s.d.Shards {
		out[i] = x.Name
	}
	return out
}

// ReferenceShards returns, sorted, the shards that hold every reference
// table (Shard.ReferencesReady): where reference tables are read from and
// where broadcasts (reference writes, DDL) go. It equals ShardNames unless
// a shard is being given the reference tables.
func (s *Snapshot) ReferenceShards() []string {
	out := make([]string, 0, len(s.d.Shards))
	for _, x := range s.d.Shards {
		if x.References == ReferencesReady {
			out = append(out, x.Name)
		}
	}
	return out
}

// Shard returns a copy of the named shard.
func (s *Snapshot) Shard(name string) (Shard, bool) {
	i, ok := s.shardIdx[name]
	if !ok {
		return Shard{}, false
	}
	return s.d.Shards[i].clone(), true
}

// HasShard reports whether the shard exists, without copying it.
func (s *Snapshot) HasShard(name string) bool { _, ok := s.shardIdx[name]; return ok }

// Shards returns copies of all shards sorted by name.
func (s *Snapshot) Shards() []Shard {
	out := make([]Shard, len(s.d.Shards))
	for i, x := range s.d.Shards {
		out[i] = x.clone()
	}
	return out
}

// Table returns the table stored under name, which must be qualified and
// lower-case (see QualifyName). ok is false for "other" tables, which live on
// the default shard.
func (s *Snapshot) Table(name string) (Table, bool) {
	i, ok := s.tableIdx[name]
	if !ok {
		return Table{}, false
	}
	return s.d.Tables[i], true
}

// Tables returns all listed tables sorted by name.
func (s *Snapshot) Tables() []Table { return append([]Table(nil), s.d.Tables...) }

// DistributionNames returns the distribution names in sorted order.
func (s *Snapshot) DistributionNames() []string {
	out := make([]string, len(s.d.Distributions))
	for i, x := range s.d.Distributions {
		out[i] = x.Name
	}
	return out
}

// Distribution returns a deep copy of the named distribution. Routing should
// not call this per statement: use router.For(snapshot), which indexes each
// snapshot once.
func (s *Snapshot) Distribution(name string) (Distribution, bool) {
	i, ok := s.distIdx[name]
	if !ok {
		return Distribution{}, false
	}
	return s.d.Distributions[i].clone(), true
}

// Distributions returns deep copies of all distributions sorted by name.
func (s *Snapshot) Distributions() []Distribution {
	out := make([]Distribution, len(s.d.Distributions))
	for i, x := range s.d.Distributions {
		out[i] = x.clone()
	}
	return out
}

// Moves returns copies of the recorded moves.
func (s *Snapshot) Moves() []Move {
	out := make([]Move, len(s.d.Moves))
	for i, m := range s.d.Moves {
		out[i] = m.clone()
	}
	return out
}

// Move returns a copy of the move with the given ID.
func (s *Snapshot) Move(id string) (Move, bool) {
	for _, m := range s.d.Moves {
		if m.ID == id {
			return m.clone(), true
		}
	}
	return Move{}, false
}

// Memo returns the value cached on this snapshot under key, calling build
// once to create it on first use (concurrent first callers may each call
// build; one result wins and is returned to all). It lets packages attach
// derived, immutable indexes to a snapshot — router.For uses it so each
// snapshot is indexed once. key should be an unexported type of the caller's
// package, as with context keys. The value must be safe for concurrent use.
func (s *Snapshot) Memo(key any, build func(*Snapshot) any) any {
	if v, ok := s.memo.Load(key); ok {
		return v
	}
	v, _ := s.memo.LoadOrStore(key, build(s))
	return v
}

// MarshalJSON encodes the snapshot as {"version", "default_shard",
// "shards", "tables", "distributions", "moves"}; output is deterministic.
func (s *Snapshot) MarshalJSON() ([]byte, error) { return json.Marshal(&s.d) }

// UnmarshalJSON decodes and validates a snapshot. It exists so Snapshot can
// be embedded in other JSON documents; call it only on a new, zero Snapshot
// (json.Unmarshal into a fresh *Snapshot) — snapshots are otherwise immutable.
func (s *Snapshot) UnmarshalJSON(b []byte) error {
	if s.shardIdx != nil {
		return fmt.Errorf("topology: UnmarshalJSON on an initialised Snapshot")
	}
	n, err := DecodeSnapshot(b)
	if err != nil {
		return err
	}
	s.d, s.shardIdx, s.tableIdx, s.distIdx = n.d, n.shardIdx, n.tableIdx, n.distIdx
	return nil
}

// DecodeSnapshot decodes the JSON form written by MarshalJSON and validates
// it. Unknown fields are rejected.
func DecodeSnapshot(b []byte) (*Snapshot, error) {
	var d data
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&d); err != nil {
		return nil, fmt.Errorf("decode topology snapshot: %w", err)
	}
	return freeze(d)
}

// Builder assembles a Snapshot. It copies what it is given; Build validates.
// The zero Builder is ready to use (version 0).
type Builder struct {
	d data
}

// NewBuilder starts a snapshot with the given version.
func NewBuilder(version uint64) *Builder { return &Builder{d: data{Version: version}} }

// AddShard adds a shard (State "" means ShardActive). The first shard added
// becomes the default shard unless SetDefaultShard names another.
func (b *Builder) AddShard(s Shard) *Builder {
	b.d.Shards = append(b.d.Shards, s.clone())
	if b.d.DefaultShard == "" {
		b.d.DefaultShard = s.Name
	}
	return b
}

// SetDefaultShard names the shard for tables that are not listed.
func (b *Builder) SetDefaultShard(name string) *Builder { b.d.DefaultShard = name; return b }

// AddTable adds a table; its name is normalised with QualifyName.
func (b *Builder) AddTable(t Table) *Builder {
	t.Name = QualifyName(t.Name)
	b.d.Tables = append(b.d.Tables, t)
	return b
}

// AddDistribution adds a distribution (deep-copied).
func (b *Builder) AddDistribution(d Distribution) *Builder {
	b.d.Distributions = append(b.d.Distributions, d.clone())
	return b
}

// AddMove records a move.
func (b *Builder) AddMove(m Move) *Builder { b.d.Moves = append(b.d.Moves, m.clone()); return b }

// Build validates and returns the snapshot. The Builder may be reused; the
// snapshot does not share memory with it.
func (b *Builder) Build() (*Snapshot, error) { return freeze(b.d.clone()) }
