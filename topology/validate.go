package topology

import (
	"math"
	"net"
	"strconv"
	"strings"
)

// Validate checks the snapshot's invariants and returns the first violation
// as an *Error matching ErrInvalid, worded for an operator, e.g.
// `distribution users: gap between 10 and 20`. Snapshots made by this
// package are always valid; Validate is public for callers that want to
// re-check one (and for tests).
//
// Rules: shard names are unique and non-empty, each has a host:port primary
// and distinct replicas; the default shard exists (when there are shards);
// tables are lower-case, schema-qualified and name an existing distribution
// (distributed) or none (reference); distributions have a valid scheme and
// key type; hash range tables cover [MinInt64, MaxInt64] exactly once,
// sorted, without gaps or overlaps; natural range tables are sorted and
// non-overlapping; list values and overrides are canonical keys; every shard
// any of them names exists.
func (s *Snapshot) Validate() error {
	d := &s.d
	shard := func(what, name string) error {
		if name == "" {
			return invalidf("%s: shard name is empty", what)
		}
		if _, ok := s.shardIdx[name]; !ok {
			return invalidf("%s: shard %q does not exist", what, name)
		}
		return nil
	}
	for _, sh := range d.Shards {
		if sh.Name == "" {
			return invalidf("a shard has an empty name")
		}
		if err := validEndpoint(sh.Primary); err != nil {
			return invalidf("shard %s: primary: %v", sh.Name, err)
		}
		if !sh.State.valid() {
			return invalidf("shard %s: unknown state %q", sh.Name, sh.State)
		}
		if !sh.References.valid() {
			return invalidf("shard %s: unknown reference state %q", sh.Name, sh.References)
		}
		seen := map[string]bool{sh.Primary: true}
		for _, r := range sh.Replicas {
			if err := validEndpoint(r); err != nil {
				return invalidf("shard %s: replica: %v", sh.Name, err)
			}
			if seen[r] {
				return invalidf("shard %s: endpoint %s is listed twice", sh.Name, r)
			}
			seen[r] = true
		}
	}
	if len(d.Shards) > 0 || d.DefaultShard != "" {
		if err := shard("default shard", d.DefaultShard); err != nil {
			return err
		}
	}
	for _, t := range d.Tables {
		if t.Name == "" || t.Name != strings.ToLower(t.Name) || !strings.Contains(t.Name, ".") {
			return invalidf("table %q: name must be lower-case and schema-qualified (e.g. public.users)", t.Name)
		}
		switch t.Kind {
		case Distributed:
			if t.KeyColumn == "" {
				return invalidf("table %s: distributed table needs a key column", t.Name)
			}
			if _, ok := s.distIdx[t.Distribution]; !ok {
				return invalidf("table %s: distribution %q does not exist", t.Name, t.Distribution)
			}
		case Reference:
			if t.KeyColumn != "" || t.Distribution != "" {
				return invalidf("table %s: a reference table has no key column or distribution", t.Name)
			}
		default:
			return invalidf("table %s: unknown kind %q (want distributed or reference)", t.Name, t.Kind)
		}
	}
	for i := range d.Distributions {
		if err := s.validateDistribution(&d.Distributions[i], shard); err != nil {
			return err
		}
	}
	for _, m := range d.Moves {
		if _, ok := s.distIdx[m.Distribution]; !ok {
			return invalidf("move %s: distribution %q does not exist", m.ID, m.Distribution)
		}
		if err := shard("move "+m.ID+" source", m.From); err != nil {
			return err
		}
		if err := shard("move "+m.ID+" target", m.To); err != nil {
			return err
		}
		if err := validateMove(m); err != nil {
			return err
		}
	}
	return nil
}

func (s *Snapshot) validateDistribution(x *Distribution, shard func(what, name string) error) error {
	what := "distribution " + x.Name
	if x.Name == "" {
		return invalidf("a distribution has an empty name")
	}
	if !x.KeyType.valid() {
		return invalidf("%s: unknown key type %q (want int, text or uuid)", what, x.KeyType)
	}
	switch x.Scheme {
	case Hash:
		if len(x.TextRanges) > 0 || len(x.ListValues) > 0 {
			return invalidf("%s: a hash distribution has only hash ranges", what)
		}
		if err := validateRanges(what, x.Ranges, true); err != nil {
			return err
		}
	case RangeScheme:
		if len(x.ListValues) > 0 {
			return invalidf("%s: a range distribution has no list values", what)
		}
		if x.KeyType == Int {
			if len(x.TextRanges) > 0 {
				return invalidf("%s: int keys use integer ranges, not text ranges", what)
			}
			if err := validateRanges(what, x.Ranges, false); err != nil {
				return err
			}
		} else {
			if len(x.Ranges) > 0 {
				return invalidf("%s: %s keys use text ranges, not integer ranges", what, x.KeyType)
			}
			if err := validateTextRanges(what, x.KeyType, x.TextRanges); err != nil {
				return err
			}
		}
	case List:
		if len(x.Ranges) > 0 || len(x.TextRanges) > 0 {
			return invalidf("%s: a list distribution has no ranges", what)
		}
		for v, sh := range x.ListValues {
			if err := canonical(what, "list value", x.KeyType, v); err != nil {
				return err
			}
			if err := shard(what+" list value "+strconv.Quote(v), sh); err != nil {
				return err
			}
		}
	default:
		return invalidf("%s: unknown scheme %q (want hash, range or list)", what, x.Scheme)
	}
	for _, r := range x.Ranges {
		if err := shard(what+" range ["+i64(r.Lo)+", "+i64(r.Hi)+"]", r.Shard); err != nil {
			return err
		}
	}
	for _, r := range x.TextRanges {
		if err := shard(what+" range from "+strconv.Quote(r.From), r.Shard); err != nil {
			return err
		}
	}
	for k, sh := range x.Overrides {
		if err := canonical(what, "override key", x.KeyType, k); err != nil {
			return err
		}
		if err := shard(what+" override "+strconv.Quote(k), sh); err != nil {
			return err
		}
	}
	return nil
}

func canonical(what, role string, kt KeyType, v string) error {
	c, err := CanonicalKey(kt, v)
	if err != nil {
		return invalidf("%s: %s %q: %v", what, role, v, err)
	}
	if c != v {
		return invalidf("%s: %s %q is not in canonical form (use %q)", what, role, v, c)
	}
	return nil
}

// validateRanges checks a sorted int range table; full demands exact
// coverage of the int64 space.
func validateRanges(what string, rs []Range, full bool) error {
	if full && len(rs) == 0 {
		return invalidf("%s: hash range table is empty (must cover %d..%d)", what, int64(math.MinInt64), int64(math.MaxInt64))
	}
	for i, r := range rs {
		if r.Lo > r.Hi {
			return invalidf("%s: range [%d, %d] is empty (lo > hi)", what, r.Lo, r.Hi)
		}
		if i == 0 {
			if full && r.Lo != math.MinInt64 {
				return invalidf("%s: gap between %d and %d", what, int64(math.MinInt64), r.Lo)
			}
			continue
		}
		prev := rs[i-1]
		if r.Lo <= prev.Hi {
			return invalidf("%s: ranges [%d, %d] and [%d, %d] overlap", what, prev.Lo, prev.Hi, r.Lo, r.Hi)
		}
		if full && r.Lo != prev.Hi+1 {
			return invalidf("%s: gap between %d and %d", what, prev.Hi, r.Lo)
		}
	}
	if full && rs[len(rs)-1].Hi != math.MaxInt64 {
		return invalidf("%s: gap between %d and %d", what, rs[len(rs)-1].Hi, int64(math.MaxInt64))
	}
	return nil
}

func validateTextRanges(what string, kt KeyType, rs []TextRange) error {
	for i, r := range rs {
		if r.To != "" && r.To <= r.From {
			return invalidf("%s: range [%q, %q) is empty", what, r.From, r.To)
		}
		if kt == UUID {
			for _, b := range []string{r.From, r.To} {
				if b == "" {
					continue
				}
				if err := canonical(what, "uuid range bound", UUID, b); err != nil {
					return err
				}
			}
		}
		if i > 0 {
			prev := rs[i-1]
			if prev.To == "" || r.From < prev.To {
				return invalidf("%s: ranges from %q and from %q overlap", what, prev.From, r.From)
			}
		}
	}
	return nil
}

func validEndpoint(ep string) error {
	host, port, err := net.SplitHostPort(ep)
	if err != nil {
		return err
	}
	if host == "" {
		return invalidf("endpoint %q has no host", ep)
	}
	if p, err := strconv.Atoi(port); err != nil || p < 1 || p > 65535 {
		return invalidf("endpoint %q: port must be 1-65535", ep)
	}
	return nil
}

func i64(v int64) string { return strconv.FormatInt(v, 10) }
