package topology

import (
	"encoding/hex"
	"fmt"
	"math"
	"strconv"
	"strings"
)

// ShardState is the lifecycle state of a shard.
type ShardState string

const (
	// ShardActive shards serve traffic. The zero value normalises to it.
	ShardActive ShardState = "active"
	// ShardDraining shards still serve what they own but receive no new
	// ranges; the rebalancer moves their data away.
	ShardDraining ShardState = "draining"
	// ShardOffline shards are known but must not receive traffic.
	ShardOffline ShardState = "offline"
)

func (s ShardState) valid() bool {
	return s == ShardActive || s == ShardDraining || s == ShardOffline
}

// ReferenceState says whether a shard holds a current copy of every
// reference table. The proxies read reference tables from, and broadcast
// writes and DDL to, only shards whose references are ready; the rebalance
// controller copies the reference tables to a shard added after they
// existed (docs/rebalance.md, "A new shard").
type ReferenceState string

const (
	// ReferencesReady (the zero value, stored as nothing) shards hold every
	// reference table.
	ReferencesReady ReferenceState = ""
	// ReferencesSyncing shards are being given the reference tables; they
	// receive no reference reads, broadcasts or moves yet.
	ReferencesSyncing ReferenceState = "syncing"
	// ReferencesCutover shards are about to become ready: every proxy holds
	// broadcasts (reference writes, DDL) while the copy is made exact.
	ReferencesCutover ReferenceState = "cutover"
)

func (s ReferenceState) valid() bool {
	return s == ReferencesReady || s == ReferencesSyncing || s == ReferencesCutover
}

// String is "ready" for ReferencesReady, else the state.
func (s ReferenceState) String() string {
	if s == ReferencesReady {
		return "ready"
	}
	return string(s)
}

// TableKind says how a table is placed across shards. Tables that a Snapshot
// does not list are "other": they live on the default shard only.
type TableKind string

const (
	// Distributed tables are split by KeyColumn according to their
	// Distribution.
	Distributed TableKind = "distributed"
	// Reference tables have a full copy on every shard.
	Reference TableKind = "reference"
)

// Scheme is how a Distribution maps keys to shards.
type Scheme string

const (
	// Hash: key → PostgreSQL hash (router.Hash*) → the Range whose
	// [Lo, Hi] holds the hash. Ranges cover the whole int64 space.
	Hash Scheme = "hash"
	// RangeScheme: the natural key value is looked up in Ranges (Int keys)
	// or TextRanges (Text and UUID keys). Gaps are allowed; a key in a gap
	// maps nowhere (an error at routing time).
	RangeScheme Scheme = "range"
	// List: the canonical key text is looked up in ListValues.
	List Scheme = "list"
)

// KeyType is the kind of value a distribution key holds.
type KeyType string

const (
	// Int covers smallint, integer and bigint keys: PostgreSQL hashes all
	// three identically (hashint8extended folds int8 values that fit in
	// int4 onto hashint4extended).
	Int KeyType = "int"
	// Text covers text, varchar and char keys with a deterministic collation.
	Text KeyType = "text"
	// UUID covers uuid keys.
	UUID KeyType = "uuid"
)

func (k KeyType) valid() bool { return k == Int || k == Text || k == UUID }

// Shard is one PostgreSQL primary with its streaming replicas. Endpoints are
// "host:port".
type Shard struct {
	Name     string     `json:"name"`
	Primary  string     `json:"primary"`
	Replicas []string   `json:"replicas,omitempty"`
	Region   string     `json:"region,omitempty"`
	State    ShardState `json:"state"`
	// References is ReferencesReady except while a shard added after the
	// reference tables existed is being given them.
	References ReferenceState `json:"references,omitempty"`
}

// ReferencesReady reports whether the shard holds every reference table.
func (s Shard) ReferencesReady() bool { return s.References == ReferencesReady }

func (s Shard) clone() Shard {
	s.Replicas = append([]string(nil), s.Replicas...)
	if s.State == "" {
		s.State = ShardActive
	}
	return s
}

// Table is a table the proxy knows how to place. Name is schema-qualified and
// lower-case ("public.users"; see QualifyName). KeyColumn and Distribution
// are set for Distributed tables only.
type Table struct {
	Name         string    `json:"name"`
	Kind         TableKind `json:"kind"`
	KeyColumn    string    `json:"key_column,omitempty"`
	Distribution string    `json:"distribution,omitempty"`
}

// Range assigns the inclusive interval [Lo, Hi] to Shard. For Hash
// distributions the interval is over hash values (the int64 results of
// PostgreSQL's hash*extended(key, 0)); for Range distributions with Int keys
// it is over the key values themselves. Range tables are kept sorted by Lo.
type Range struct {
	Lo    int64  `json:"lo"`
	Hi    int64  `json:"hi"`
	Shard string `json:"shard"`
}

// Contains reports whether v lies in [Lo, Hi].
func (r Range) Contains(v int64) bool { return r.Lo <= v && v <= r.Hi }

// Fraction returns the share of the whole int64 space the range covers.
func (r Range) Fraction() float64 {
	return (float64(uint64(r.Hi)-uint64(r.Lo)) + 1) / math.Exp2(64)
}

// TextRange assigns the half-open interval [From, To) of key texts to Shard,
// compared byte-wise (PostgreSQL's "C" collation order; for UUID keys the
// canonical lower-case form, whose byte order equals uuid order). An empty
// To means "no upper bound"; From "" is the smallest string. Used by Range
// distributions with Text or UUID keys.
type TextRange struct {
	From  string `json:"from"`
	To    string `json:"to,omitempty"`
	Shard string `json:"shard"`
}

// Contains reports whether s lies in [From, To).
func (r TextRange) Contains(s string) bool {
	return s >= r.From && (r.To == "" || s < r.To)
}

// Distribution is a colocation group: tables whose keys of the same type are
// placed by the same scheme and table, so rows with equal keys live on the
// same shard.
//
// Which fields apply depends on Scheme:
//   - Hash: Ranges over hash values, covering [MinInt64, MaxInt64] exactly once.
//   - RangeScheme with KeyType Int: Ranges over key values (gaps allowed).
//   - RangeScheme with KeyType Text or UUID: TextRanges (gaps allowed).
//   - List: ListValues, canonical key text → shard.
//
// Overrides pin single keys (canonical text, see CanonicalKey) to a shard
// and win over the scheme, for every scheme.
type Distribution struct {
	Name       string            `json:"name"`
	Scheme     Scheme            `json:"scheme"`
	KeyType    KeyType           `json:"key_type"`
	Ranges     []Range           `json:"ranges,omitempty"`
	TextRanges []TextRange       `json:"text_ranges,omitempty"`
	ListValues map[string]string `json:"list_values,omitempty"`
	Overrides  map[string]string `json:"overrides,omitempty"`
}

func (d Distribution) clone() Distribution {
	d.Ranges = append([]Range(nil), d.Ranges...)
	d.TextRanges = append([]TextRange(nil), d.TextRanges...)
	d.ListValues = cloneMap(d.ListValues)
	d.Overrides = cloneMap(d.Overrides)
	return d
}

func cloneMap(m map[string]string) map[string]string {
	if m == nil {
		return nil
	}
	out := make(map[string]string, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

// MoveState is the state of a range move. The state machine itself belongs to
// package rebalance; topology only records it (see the Move* commands).
type MoveState string

// Span is an inclusive interval [Lo, Hi] of an integer range table.
type Span struct {
	Lo int64 `json:"lo"`
	Hi int64 `json:"hi"`
}

// Move is an in-flight online move of some ranges of a distribution from one
// shard to another (rebalance drives it; see MoveState for the phases).
// Ranges were each exactly one range owned by From when the move started;
// until the move flips they stay From's, afterwards they are To's.
type Move struct {
	ID           string    `json:"id"`
	Distribution string    `json:"distribution"`
	Ranges       []Span    `json:"ranges"`
	From         string    `json:"from"`
	To           string    `json:"to"`
	State        MoveState `json:"state"`
	// HoldTimeoutMS bounds how long proxies hold writes to Ranges during
	// cutover before the move gives up (0 = the rebalancer's default).
	HoldTimeoutMS int64 `json:"hold_timeout_ms,omitempty"`
	// Error says why a move is being cancelled when it was not asked to.
	Error string `json:"error,omitempty"`
}

// Covers reports whether hash (or key) value v lies in one of m's ranges.
func (m Move) Covers(v int64) bool {
	for _, r := range m.Ranges {
		if r.Lo <= v && v <= r.Hi {
			return true
		}
	}
	return false
}

func (m Move) clone() Move {
	m.Ranges = append([]Span(nil), m.Ranges...)
	return m
}

// QualifyName returns the form tables are stored under: lower-case and
// schema-qualified, with "public" when no schema is given ("Users" →
// "public.users"). Quoted identifiers are not handled here; the planner
// passes names already resolved by the parser.
func QualifyName(name string) string {
	name = strings.ToLower(strings.TrimSpace(name))
	if name == "" || strings.Contains(name, ".") {
		return name
	}
	return "public." + name
}

// CanonicalKey returns the canonical text of a key value of type kt, the form
// used as the key of ListValues and Overrides: Int → decimal without sign
// padding or leading zeros ("007" → "7"); Text → unchanged; UUID → lower-case
// 8-4-4-4-12 (any input form PostgreSQL's uuid_in accepts).
func CanonicalKey(kt KeyType, s string) (string, error) {
	switch kt {
	case Int:
		v, err := strconv.ParseInt(strings.TrimSpace(s), 10, 64)
		if err != nil {
			return "", fmt.Errorf("invalid input syntax for type bigint: %q", s)
		}
		return strconv.FormatInt(v, 10), nil
	case Text:
		return s, nil
	case UUID:
		u, err := ParseUUID(s)
		if err != nil {
			return "", err
		}
		return FormatUUID(u), nil
	default:
		return "", fmt.Errorf("unknown key type %q", kt)
	}
}

// ParseUUID parses the text forms PostgreSQL's uuid_in accepts: 32 hex
// digits, optionally in braces, with an optional hyphen after any group of
// four digits (so the standard 8-4-4-4-12 form, upper or lower case).
func ParseUUID(s string) ([16]byte, error) {
	var u [16]byte
	bad := func() ([16]byte, error) {
		return [16]byte{}, fmt.Errorf("invalid input syntax for type uuid: %q", s)
	}
	in := s
	if strings.HasPrefix(in, "{") {
		if !strings.HasSuffix(in, "}") || len(in) < 2 {
			return bad()
		}
		in = in[1 : len(in)-1]
	}
	var digits [32]byte
	n := 0
	for i := 0; i < len(in); i++ {
		c := in[i]
		if c == '-' {
			// A hyphen may follow a complete group of four digits, never
			// lead, trail or repeat.
			if n == 0 || n%4 != 0 || n == 32 || in[i-1] == '-' {
				return bad()
			}
			continue
		}
		if n == 32 || !isHex(c) {
			return bad()
		}
		digits[n] = c
		n++
	}
	if n != 32 {
		return bad()
	}
	if _, err := hex.Decode(u[:], digits[:]); err != nil {
		return bad()
	}
	return u, nil
}

func isHex(c byte) bool {
	return ('0' <= c && c <= '9') || ('a' <= c && c <= 'f') || ('A' <= c && c <= 'F')
}

// FormatUUID returns the canonical lower-case 8-4-4-4-12 form.
func FormatUUID(u [16]byte) string {
	var b [36]byte
	hex.Encode(b[0:8], u[0:4])
	b[8] = '-'
	hex.Encode(b[9:13], u[4:6])
	b[13] = '-'
	hex.Encode(b[14:18], u[6:8])
	b[18] = '-'
	hex.Encode(b[19:23], u[8:10])
	b[23] = '-'
	hex.Encode(b[24:36], u[10:16])
	return string(b[:])
}
