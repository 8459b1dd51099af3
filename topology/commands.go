package topology

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"reflect"
	"sort"
)

// CommandType tags a Command in its serialised form. The strings are part of
// the Raft log format: never rename one.
type CommandType string

// The command types.
const (
	TypeAddShard           CommandType = "add_shard"
	TypeRemoveShard        CommandType = "remove_shard"
	TypeAddReplica         CommandType = "add_replica"
	TypeRemoveReplica      CommandType = "remove_replica"
	TypePromoteReplica     CommandType = "promote_replica"
	TypeSetDefaultShard    CommandType = "set_default_shard"
	TypeCreateDistribution CommandType = "create_distribution"
	TypeDistributeTable    CommandType = "distribute_table"
	TypeReferenceTable     CommandType = "reference_table"
	TypeAssignRange        CommandType = "assign_range"
	TypeSplitRange         CommandType = "split_range"
	TypeMergeRanges        CommandType = "merge_ranges"
	TypeSetOverride        CommandType = "set_override"
	TypeClearOverride      CommandType = "clear_override"
	TypeSetListValue       CommandType = "set_list_value"
	TypeStartMove          CommandType = "start_move"
	TypeSetMoveState       CommandType = "set_move_state"
	TypeFlipMove           CommandType = "flip_move"
	TypeEndMove            CommandType = "end_move"
	TypeSetShardReferences CommandType = "set_shard_references"
)

// Command is one change to the topology. Commands are plain data: they
// serialise with EncodeCommand / DecodeCommand (JSON with a type tag) so a
// Raft FSM can log them, and applying one is deterministic — the same
// command on the same snapshot gives the same result on every node.
//
// Every command carries ExpectVersion: when non-zero, the command fails with
// *VersionMismatchError unless the current snapshot has exactly that
// version (compare-and-swap). The set of commands is closed (only this
// package defines them).
type Command interface {
	Type() CommandType
	// ExpectedVersion returns the command's ExpectVersion field.
	ExpectedVersion() uint64
	// mutate changes the draft; the result is validated afterwards.
	mutate(d *draft) error
}

// ApplyCommand returns the snapshot that results from applying cmd to s:
// version s.Version()+1, validated. s is unchanged. Errors: a
// *VersionMismatchError, or an *Error matching ErrInvalid or ErrNotFound.
func ApplyCommand(s *Snapshot, cmd Command) (*Snapshot, error) {
	if cmd == nil {
		return nil, invalidf("nil command")
	}
	if v := cmd.ExpectedVersion(); v != 0 && v != s.Version() {
		return nil, &VersionMismatchError{Expected: v, Actual: s.Version()}
	}
	d := &draft{data: s.d.clone()}
	if err := cmd.mutate(d); err != nil {
		return nil, err
	}
	d.Version = s.Version() + 1
	next, err := freeze(d.data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", cmd.Type(), err)
	}
	return next, nil
}

// draft is a mutable copy of a snapshot's data with lookup helpers.
type draft struct{ data }

func (d *draft) shard(name string) (*Shard, error) {
	for i := range d.Shards {
		if d.Shards[i].Name == name {
			return &d.Shards[i], nil
		}
	}
	return nil, notFoundf("shard %q does not exist", name)
}

func (d *draft) dist(name string) (*Distribution, error) {
	for i := range d.Distributions {
		if d.Distributions[i].Name == name {
			return &d.Distributions[i], nil
		}
	}
	return nil, notFoundf("distribution %q does not exist", name)
}

func (d *draft) table(name string) *Table {
	for i := range d.Tables {
		if d.Tables[i].Name == name {
			return &d.Tables[i]
		}
	}
	return nil
}

func (d *draft) hashDist(name string) (*Distribution, error) {
	x, err := d.dist(name)
	if err != nil {
		return nil, err
	}
	if x.Scheme != Hash && !(x.Scheme == RangeScheme && x.KeyType == Int) {
		return nil, invalidf("distribution %s: scheme %s with %s keys has no integer range table", name, x.Scheme, x.KeyType)
	}
	return x, nil
}

// AddShard adds a new shard without data. The first shard becomes the
// default shard.
//
// Shard.References = ReferencesSyncing asks for the reference tables to be
// copied to the new shard before it is used for them (the admin API sets
// it): the shard is recorded syncing when the topology has reference tables
// and a shard to copy them from, else ready. Any other value is recorded as
// ready.
type AddShard struct {
	Shard         Shard  `json:"shard"`
	ExpectVersion uint64 `json:"expect_version,omitempty"`
}

// RemoveShard removes a shard. Refused while it is the default shard or owns
// ranges, list values, overrides or moves.
type RemoveShard struct {
	Name          string `json:"name"`
	ExpectVersion uint64 `json:"expect_version,omitempty"`
}

// AddReplica adds a replica endpoint ("host:port") to a shard.
type AddReplica struct {
	Shard         string `json:"shard"`
	Endpoint      string `json:"endpoint"`
	ExpectVersion uint64 `json:"expect_version,omitempty"`
}

// RemoveReplica removes a replica endpoint from a shard.
type RemoveReplica struct {
	Shard         string `json:"shard"`
	Endpoint      string `json:"endpoint"`
	ExpectVersion uint64 `json:"expect_version,omitempty"`
}

// PromoteReplica makes one of a shard's replicas its primary (after a
// failover). The old primary is dropped, or kept as a replica when
// KeepOldPrimary is set.
type PromoteReplica struct {
	Shard          string `json:"shard"`
	Endpoint       string `json:"endpoint"`
	KeepOldPrimary bool   `json:"keep_old_primary,omitempty"`
	ExpectVersion  uint64 `json:"expect_version,omitempty"`
}

// SetDefaultShard names the shard for tables that are not listed.
type SetDefaultShard struct {
	Shard         string `json:"shard"`
	ExpectVersion uint64 `json:"expect_version,omitempty"`
}

// CreateDistribution adds a distribution as given (any scheme). Use it for
// range and list distributions; DistributeTable creates hash ones itself.
type CreateDistribution struct {
	Distribution  Distribution `json:"distribution"`
	ExpectVersion uint64       `json:"expect_version,omitempty"`
}

// DistributeTable makes Table a distributed table keyed by KeyColumn in
// Distribution. If the distribution does not exist it is created with the
// Hash scheme, KeyType (default Int) and the HashLayout of Shards (default:
// all shards that are not offline) with VNodes virtual nodes each (default
// DefaultVNodes). If it exists, a non-empty KeyType must match it. An
// existing listing of the table is replaced.
type DistributeTable struct {
	Table         string   `json:"table"`
	KeyColumn     string   `json:"key_column"`
	Distribution  string   `json:"distribution"`
	KeyType       KeyType  `json:"key_type,omitempty"`
	Shards        []string `json:"shards,omitempty"`
	VNodes        int      `json:"vnodes,omitempty"`
	ExpectVersion uint64   `json:"expect_version,omitempty"`
}

// ReferenceTable makes Table a reference table (a copy on every shard). An
// existing listing of the table is replaced.
type ReferenceTable struct {
	Table         string `json:"table"`
	ExpectVersion uint64 `json:"expect_version,omitempty"`
}

// AssignRange assigns [Lo, Hi] (inclusive) of an integer range table (hash
// distributions, or range distributions with int keys) to Shard, splitting
// the ranges at its ends as needed. Neighbours are not merged.
type AssignRange struct {
	Distribution  string `json:"distribution"`
	Lo            int64  `json:"lo"`
	Hi            int64  `json:"hi"`
	Shard         string `json:"shard"`
	ExpectVersion uint64 `json:"expect_version,omitempty"`
}

// SplitRange splits the range containing At into [Lo, At-1] and [At, Hi],
// same owner. At must not already be the start of a range.
type SplitRange struct {
	Distribution  string `json:"distribution"`
	At            int64  `json:"at"`
	ExpectVersion uint64 `json:"expect_version,omitempty"`
}

// MergeRanges merges the consecutive ranges that exactly span [Lo, Hi] (Lo
// starts one, Hi ends one) into one. They must touch and share one shard.
type MergeRanges struct {
	Distribution  string `json:"distribution"`
	Lo            int64  `json:"lo"`
	Hi            int64  `json:"hi"`
	ExpectVersion uint64 `json:"expect_version,omitempty"`
}

// SetOverride pins Key (any accepted text form; stored canonical) of a
// distribution to Shard, whatever the scheme says.
type SetOverride struct {
	Distribution  string `json:"distribution"`
	Key           string `json:"key"`
	Shard         string `json:"shard"`
	ExpectVersion uint64 `json:"expect_version,omitempty"`
}

// ClearOverride removes the pin of Key. Removing a pin that does not exist
// is an ErrNotFound error.
type ClearOverride struct {
	Distribution  string `json:"distribution"`
	Key           string `json:"key"`
	ExpectVersion uint64 `json:"expect_version,omitempty"`
}

// SetListValue maps Value of a list distribution to Shard; an empty Shard
// removes the value.
type SetListValue struct {
	Distribution  string `json:"distribution"`
	Value         string `json:"value"`
	Shard         string `json:"shard"`
	ExpectVersion uint64 `json:"expect_version,omitempty"`
}

// Type implementations.
func (AddShard) Type() CommandType           { return TypeAddShard }
func (RemoveShard) Type() CommandType        { return TypeRemoveShard }
func (AddReplica) Type() CommandType         { return TypeAddReplica }
func (RemoveReplica) Type() CommandType      { return TypeRemoveReplica }
func (PromoteReplica) Type() CommandType     { return TypePromoteReplica }
func (SetDefaultShard) Type() CommandType    { return TypeSetDefaultShard }
func (CreateDistribution) Type() CommandType { return TypeCreateDistribution }
func (DistributeTable) Type() CommandType    { return TypeDistributeTable }
func (ReferenceTable) Type() CommandType     { return TypeReferenceTable }
func (AssignRange) Type() CommandType        { return TypeAssignRange }
func (SplitRange) Type() CommandType         { return TypeSplitRange }
func (MergeRanges) Type() CommandType        { return TypeMergeRanges }
func (SetOverride) Type() CommandType        { return TypeSetOverride }
func (ClearOverride) Type() CommandType      { return TypeClearOverride }
func (SetListValue) Type() CommandType       { return TypeSetListValue }
func (StartMove) Type() CommandType          { return TypeStartMove }
func (SetMoveState) Type() CommandType       { return TypeSetMoveState }
func (FlipMove) Type() CommandType           { return TypeFlipMove }
func (EndMove) Type() CommandType            { return TypeEndMove }
func (SetShardReferences) Type() CommandType { return TypeSetShardReferences }

// ExpectedVersion implementations.
func (c AddShard) ExpectedVersion() uint64           { return c.ExpectVersion }
func (c RemoveShard) ExpectedVersion() uint64        { return c.ExpectVersion }
func (c AddReplica) ExpectedVersion() uint64         { return c.ExpectVersion }
func (c RemoveReplica) ExpectedVersion() uint64      { return c.ExpectVersion }
func (c PromoteReplica) ExpectedVersion() uint64     { return c.ExpectVersion }
func (c SetDefaultShard) ExpectedVersion() uint64    { return c.ExpectVersion }
func (c CreateDistribution) ExpectedVersion() uint64 { return c.ExpectVersion }
func (c DistributeTable) ExpectedVersion() uint64    { return c.ExpectVersion }
func (c ReferenceTable) ExpectedVersion() uint64     { return c.ExpectVersion }
func (c AssignRange) ExpectedVersion() uint64        { return c.ExpectVersion }
func (c SplitRange) ExpectedVersion() uint64         { return c.ExpectVersion }
func (c MergeRanges) ExpectedVersion() uint64        { return c.ExpectVersion }
func (c SetOverride) ExpectedVersion() uint64        { return c.ExpectVersion }
func (c ClearOverride) ExpectedVersion() uint64      { return c.ExpectVersion }
func (c SetListValue) ExpectedVersion() uint64       { return c.ExpectVersion }
func (c StartMove) ExpectedVersion() uint64          { return c.ExpectVersion }
func (c SetMoveState) ExpectedVersion() uint64       { return c.ExpectVersion }
func (c FlipMove) ExpectedVersion() uint64           { return c.ExpectVersion }
func (c EndMove) ExpectedVersion() uint64            { return c.ExpectVersion }
func (c SetShardReferences) ExpectedVersion() uint64 { return c.ExpectVersion }

func (c AddShard) mutate(d *draft) error {
	if _, err := d.shard(c.Shard.Name); err == nil {
		return invalidf("shard %q already exists", c.Shard.Name)
	}
	sh := c.Shard.clone()
	if sh.References != ReferencesSyncing || !d.hasReferenceTables() || !d.hasReferenceSource() {
		sh.References = ReferencesReady
	}
	d.Shards = append(d.Shards, sh)
	if d.DefaultShard == "" {
		d.DefaultShard = c.Shard.Name
	}
	return nil
}

func (c RemoveShard) mutate(d *draft) error {
	if _, err := d.shard(c.Name); err != nil {
		return err
	}
	if d.DefaultShard == c.Name {
		if len(d.Shards) > 1 {
			return invalidf("shard %s is the default shard; set another default first", c.Name)
		}
		d.DefaultShard = ""
	}
	for _, x := range d.Distributions {
		for _, r := range x.Ranges {
			if r.Shard == c.Name {
				return invalidf("shard %s still owns range [%d, %d] of distribution %s", c.Name, r.Lo, r.Hi, x.Name)
			}
		}
		for _, r := range x.TextRanges {
			if r.Shard == c.Name {
				return invalidf("shard %s still owns the range from %q of distribution %s", c.Name, r.From, x.Name)
			}
		}
		for _, m := range []map[string]string{x.ListValues, x.Overrides} {
			for k, v := range m {
				if v == c.Name {
					return invalidf("shard %s still owns key %q of distribution %s", c.Name, k, x.Name)
				}
			}
		}
	}
	for _, m := range d.Moves {
		if m.From == c.Name || m.To == c.Name {
			return invalidf("shard %s takes part in move %s", c.Name, m.ID)
		}
	}
	for i := range d.Shards {
		if d.Shards[i].Name == c.Name {
			d.Shards = append(d.Shards[:i], d.Shards[i+1:]...)
			break
		}
	}
	return nil
}

func (c AddReplica) mutate(d *draft) error {
	s, err := d.shard(c.Shard)
	if err != nil {
		return err
	}
	s.Replicas = append(s.Replicas, c.Endpoint) // duplicates caught by Validate
	return nil
}

func (c RemoveReplica) mutate(d *draft) error {
	s, err := d.shard(c.Shard)
	if err != nil {
		return err
	}
	for i, r := range s.Replicas {
		if r == c.Endpoint {
			s.Replicas = append(s.Replicas[:i], s.Replicas[i+1:]...)
			return nil
		}
	}
	return notFoundf("shard %s has no replica %s", c.Shard, c.Endpoint)
}

func (c PromoteReplica) mutate(d *draft) error {
	s, err := d.shard(c.Shard)
	if err != nil {
		return err
	}
	for i, r := range s.Replicas {
		if r == c.Endpoint {
			s.Replicas = append(s.Replicas[:i], s.Replicas[i+1:]...)
			if c.KeepOldPrimary {
				s.Replicas = append(s.Replicas, s.Primary)
			}
			s.Primary = c.Endpoint
			return nil
		}
	}
	return notFoundf("shard %s has no replica %s", c.Shard, c.Endpoint)
}

func (c SetDefaultShard) mutate(d *draft) error {
	s, err := d.shard(c.Shard)
	if err != nil {
		return err
	}
	if !s.ReferencesReady() {
		return invalidf("shard %s is still being given the reference tables (references %s); make it the default shard once they are ready", c.Shard, s.References)
	}
	d.DefaultShard = c.Shard
	return nil
}

func (c CreateDistribution) mutate(d *draft) error {
	if _, err := d.dist(c.Distribution.Name); err == nil {
		return invalidf("distribution %q already exists", c.Distribution.Name)
	}
	d.Distributions = append(d.Distributions, c.Distribution.clone())
	return nil
}

func (c DistributeTable) mutate(d *draft) error {
	name := QualifyName(c.Table)
	x, err := d.dist(c.Distribution)
	if err != nil {
		kt := c.KeyType
		if kt == "" {
			kt = Int
		}
		shards := c.Shards
		if len(shards) == 0 {
			for _, s := range d.Shards {
				if s.State != ShardOffline && s.ReferencesReady() {
					shards = append(shards, s.Name)
				}
			}
		}
		if len(shards) == 0 {
			return invalidf("distribution %s: no shards to lay out its hash ranges on", c.Distribution)
		}
		d.Distributions = append(d.Distributions, Distribution{
			Name: c.Distribution, Scheme: Hash, KeyType: kt, Ranges: HashLayout(shards, c.VNodes),
		})
	} else if c.KeyType != "" && c.KeyType != x.KeyType {
		return invalidf("table %s: key type %s does not match distribution %s (%s)", name, c.KeyType, x.Name, x.KeyType)
	}
	t := Table{Name: name, Kind: Distributed, KeyColumn: c.KeyColumn, Distribution: c.Distribution}
	if p := d.table(name); p != nil {
		*p = t
	} else {
		d.Tables = append(d.Tables, t)
	}
	return nil
}

func (c ReferenceTable) mutate(d *draft) error {
	t := Table{Name: QualifyName(c.Table), Kind: Reference}
	if p := d.table(t.Name); p != nil {
		*p = t
	} else {
		d.Tables = append(d.Tables, t)
	}
	return nil
}

func (c AssignRange) mutate(d *draft) error {
	x, err := d.hashDist(c.Distribution)
	if err != nil {
		return err
	}
	if c.Lo > c.Hi {
		return invalidf("assign range: lo %d > hi %d", c.Lo, c.Hi)
	}
	s, err := d.shard(c.Shard)
	if err != nil {
		return err
	}
	if !s.ReferencesReady() {
		return invalidf("shard %s is still being given the reference tables (references %s); assign ranges to it once they are ready", c.Shard, s.References)
	}
	x.Ranges = ReassignRange(x.Ranges, c.Lo, c.Hi, c.Shard)
	return nil
}

func (c SplitRange) mutate(d *draft) error {
	x, err := d.hashDist(c.Distribution)
	if err != nil {
		return err
	}
	out, ok := SplitRangeAt(x.Ranges, c.At)
	if !ok {
		return invalidf("distribution %s: cannot split at %d (no range contains it, or a range already starts there)", x.Name, c.At)
	}
	x.Ranges = out
	return nil
}

func (c MergeRanges) mutate(d *draft) error {
	x, err := d.hashDist(c.Distribution)
	if err != nil {
		return err
	}
	i, j := FindRange(x.Ranges, c.Lo), FindRange(x.Ranges, c.Hi)
	if i < 0 || j < 0 || x.Ranges[i].Lo != c.Lo || x.Ranges[j].Hi != c.Hi || i > j {
		return invalidf("distribution %s: [%d, %d] does not start and end on range boundaries", x.Name, c.Lo, c.Hi)
	}
	for k := i + 1; k <= j; k++ {
		if x.Ranges[k].Shard != x.Ranges[i].Shard {
			return invalidf("distribution %s: cannot merge ranges of shards %s and %s", x.Name, x.Ranges[i].Shard, x.Ranges[k].Shard)
		}
		if x.Ranges[k-1].Hi == math.MaxInt64 || x.Ranges[k-1].Hi+1 != x.Ranges[k].Lo {
			return invalidf("distribution %s: gap between %d and %d", x.Name, x.Ranges[k-1].Hi, x.Ranges[k].Lo)
		}
	}
	merged := Range{Lo: c.Lo, Hi: c.Hi, Shard: x.Ranges[i].Shard}
	x.Ranges = append(append(append([]Range(nil), x.Ranges[:i]...), merged), x.Ranges[j+1:]...)
	return nil
}

func (c SetOverride) mutate(d *draft) error {
	x, err := d.dist(c.Distribution)
	if err != nil {
		return err
	}
	k, err := CanonicalKey(x.KeyType, c.Key)
	if err != nil {
		return invalidf("distribution %s: override key: %v", x.Name, err)
	}
	if x.Overrides == nil {
		x.Overrides = map[string]string{}
	}
	x.Overrides[k] = c.Shard
	return nil
}

func (c ClearOverride) mutate(d *draft) error {
	x, err := d.dist(c.Distribution)
	if err != nil {
		return err
	}
	k, err := CanonicalKey(x.KeyType, c.Key)
	if err != nil {
		return invalidf("distribution %s: override key: %v", x.Name, err)
	}
	if _, ok := x.Overrides[k]; !ok {
		return notFoundf("distribution %s has no override for %q", x.Name, k)
	}
	delete(x.Overrides, k)
	return nil
}

func (c SetListValue) mutate(d *draft) error {
	x, err := d.dist(c.Distribution)
	if err != nil {
		return err
	}
	if x.Scheme != List {
		return invalidf("distribution %s: scheme %s has no list values", x.Name, x.Scheme)
	}
	k, err := CanonicalKey(x.KeyType, c.Value)
	if err != nil {
		return invalidf("distribution %s: list value: %v", x.Name, err)
	}
	if c.Shard == "" {
		delete(x.ListValues, k)
		return nil
	}
	if x.ListValues == nil {
		x.ListValues = map[string]string{}
	}
	x.ListValues[k] = c.Shard
	return nil
}

// Move states, in the order a move passes through them. A move is recorded
// by StartMove (pending), advanced by SetMoveState, flipped by FlipMove
// (cutover → cleanup: its ranges change owner in the same command) and
// forgotten by EndMove (from cleanup or cancelling).
const (
	MovePending    MoveState = "pending"    // recorded; nothing done on the shards yet
	MoveCopying    MoveState = "copying"    // schema on the target, subscription copying rows
	MoveCatchup    MoveState = "catchup"    // initial copy done, changes streaming
	MoveCutover    MoveState = "cutover"    // proxies hold writes to the ranges; target catching up, verifying
	MoveCleanup    MoveState = "cleanup"    // flipped: To owns the ranges; replication dropped, source rows deleted
	MoveCancelling MoveState = "cancelling" // rolling back before the flip: replication dropped, target rows deleted
)

// moveTransitions lists the states SetMoveState may go to from each state.
// cutover → catchup is an aborted hold (the writes go on to the source).
var moveTransitions = map[MoveState][]MoveState{
	MovePending: {MoveCopying, MoveCancelling},
	MoveCopying: {MoveCatchup, MoveCancelling},
	MoveCatchup: {MoveCutover, MoveCancelling},
	MoveCutover: {MoveCatchup, MoveCancelling},
}

// StartMove records Move in state pending. Each of its ranges must be
// exactly one range of the distribution's integer range table owned by
// Move.From, and no other move may hold any of them; To must be another
// existing shard that is not offline.
type StartMove struct {
	Move          Move   `json:"move"`
	ExpectVersion uint64 `json:"expect_version,omitempty"`
}

// SetMoveState moves move ID from state From (compare-and-swap) to To along
// the allowed transitions; Error records why when rolling back.
type SetMoveState struct {
	ID            string    `json:"id"`
	From          MoveState `json:"from"`
	To            MoveState `json:"to"`
	Error         string    `json:"error,omitempty"`
	ExpectVersion uint64    `json:"expect_version,omitempty"`
}

// FlipMove assigns the ranges of move ID (in state cutover) to its target
// and puts the move in state cleanup, in one step.
type FlipMove struct {
	ID            string `json:"id"`
	ExpectVersion uint64 `json:"expect_version,omitempty"`
}

// EndMove forgets move ID once it is in state cleanup or cancelling.
type EndMove struct {
	ID            string `json:"id"`
	ExpectVersion uint64 `json:"expect_version,omitempty"`
}

func (d *draft) move(id string) (*Move, error) {
	for i := range d.Moves {
		if d.Moves[i].ID == id {
			return &d.Moves[i], nil
		}
	}
	return nil, notFoundf("move %q does not exist", id)
}

func (c StartMove) mutate(d *draft) error {
	m := c.Move.clone()
	if m.ID == "" {
		return invalidf("a move needs an id")
	}
	if _, err := d.move(m.ID); err == nil {
		return invalidf("move %q already exists", m.ID)
	}
	x, err := d.hashDist(m.Distribution)
	if err != nil {
		return err
	}
	to, err := d.shard(m.To)
	if err != nil {
		return err
	}
	if to.State == ShardOffline {
		return invalidf("move %s: target shard %s is offline", m.ID, m.To)
	}
	if m.To == m.From {
		return invalidf("move %s: source and target are both %s", m.ID, m.From)
	}
	if len(m.Ranges) == 0 {
		return invalidf("move %s: no ranges", m.ID)
	}
	for _, sp := range m.Ranges {
		i := FindRange(x.Ranges, sp.Lo)
		if i < 0 || x.Ranges[i].Lo != sp.Lo || x.Ranges[i].Hi != sp.Hi {
			return invalidf("move %s: [%d, %d] is not a range of distribution %s (split it first)", m.ID, sp.Lo, sp.Hi, x.Name)
		}
		if x.Ranges[i].Shard != m.From {
			return invalidf("move %s: range [%d, %d] belongs to %s, not %s", m.ID, sp.Lo, sp.Hi, x.Ranges[i].Shard, m.From)
		}
		for _, o := range d.Moves {
			if o.Distribution == m.Distribution && (o.Covers(sp.Lo) || o.Covers(sp.Hi)) {
				return invalidf("move %s: range [%d, %d] is already moving in move %s", m.ID, sp.Lo, sp.Hi, o.ID)
			}
		}
	}
	m.State, m.Error = MovePending, ""
	d.Moves = append(d.Moves, m)
	return nil
}

func (c SetMoveState) mutate(d *draft) error {
	m, err := d.move(c.ID)
	if err != nil {
		return err
	}
	if m.State != c.From {
		return invalidf("move %s is %s, not %s", m.ID, m.State, c.From)
	}
	for _, to := range moveTransitions[m.State] {
		if to == c.To {
			m.State, m.Error = c.To, c.Error
			return nil
		}
	}
	return invalidf("move %s: cannot go from %s to %s", m.ID, m.State, c.To)
}

func (c FlipMove) mutate(d *draft) error {
	m, err := d.move(c.ID)
	if err != nil {
		return err
	}
	if m.State != MoveCutover {
		return invalidf("move %s is %s; only a move in cutover can flip", m.ID, m.State)
	}
	x, err := d.hashDist(m.Distribution)
	if err != nil {
		return err
	}
	for _, sp := range m.Ranges {
		x.Ranges = ReassignRange(x.Ranges, sp.Lo, sp.Hi, m.To)
	}
	m.State = MoveCleanup
	return nil
}

func (c EndMove) mutate(d *draft) error {
	m, err := d.move(c.ID)
	if err != nil {
		return err
	}
	if m.State != MoveCleanup && m.State != MoveCancelling {
		return invalidf("move %s is %s; cancel it first", m.ID, m.State)
	}
	for i := range d.Moves {
		if d.Moves[i].ID == c.ID {
			d.Moves = append(d.Moves[:i], d.Moves[i+1:]...)
			break
		}
	}
	return nil
}

// validateMove checks one recorded move's own fields (shards and
// distribution are checked by Validate).
func validateMove(m Move) error {
	switch m.State {
	case MovePending, MoveCopying, MoveCatchup, MoveCutover, MoveCleanup, MoveCancelling:
	default:
		return invalidf("move %s: unknown state %q", m.ID, m.State)
	}
	for _, sp := range m.Ranges {
		if sp.Lo > sp.Hi {
			return invalidf("move %s: empty range [%d, %d]", m.ID, sp.Lo, sp.Hi)
		}
	}
	return nil
}

// commandTypes maps each tag to its Go type, for decoding.
var commandTypes = map[CommandType]reflect.Type{}

func init() {
	for _, c := range []Command{
		AddShard{}, RemoveShard{}, AddReplica{}, RemoveReplica{}, PromoteReplica{},
		SetDefaultShard{}, CreateDistribution{}, DistributeTable{}, ReferenceTable{},
		AssignRange{}, SplitRange{}, MergeRanges{}, SetOverride{}, ClearOverride{}, SetListValue{},
		StartMove{}, SetMoveState{}, FlipMove{}, EndMove{}, SetShardReferences{},
	} {
		commandTypes[c.Type()] = reflect.TypeOf(c)
	}
}

// CommandTypes lists every command type, sorted.
func CommandTypes() []CommandType {
	out := make([]CommandType, 0, len(commandTypes))
	for t := range commandTypes {
		out = append(out, t)
	}
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return out
}

type envelope struct {
	Type CommandType     `json:"type"`
	Cmd  json.RawMessage `json:"cmd"`
}

// EncodeCommand serialises cmd as {"type": "<tag>", "cmd": {...}}.
func EncodeCommand(cmd Command) ([]byte, error) {
	if cmd == nil {
		return nil, fmt.Errorf("encode command: nil")
	}
	body, err := json.Marshal(cmd)
	if err != nil {
		return nil, fmt.Errorf("encode command %s: %w", cmd.Type(), err)
	}
	return json.Marshal(envelope{Type: cmd.Type(), Cmd: body})
}

// DecodeCommand parses what EncodeCommand wrote. Unknown types and unknown
// fields are errors (a Raft FSM should treat them as fatal: a node that
// cannot decode a committed entry must not diverge silently).
func DecodeCommand(b []byte) (Command, error) {
	var env envelope
	if err := json.Unmarshal(b, &env); err != nil {
		return nil, fmt.Errorf("decode command: %w", err)
	}
	t, ok := commandTypes[env.Type]
	if !ok {
		return nil, fmt.Errorf("decode command: unknown type %q", env.Type)
	}
	p := reflect.New(t)
	dec := json.NewDecoder(bytes.NewReader(env.Cmd))
	dec.DisallowUnknownFields()
	if err := dec.Decode(p.Interface()); err != nil {
		return nil, fmt.Errorf("decode command %s: %w", env.Type, err)
	}
	return p.Elem().Interface().(Command), nil
}

// referenceTransitions lists the reference states SetShardReferences may go
// to from each state: syncing → cutover starts the hold of broadcasts,
// cutover → ready ends it with the shard in use, cutover → syncing aborts it.
var referenceTransitions = map[ReferenceState][]ReferenceState{
	ReferencesSyncing: {ReferencesCutover},
	ReferencesCutover: {ReferencesReady, ReferencesSyncing},
}

// SetShardReferences moves shard Shard's reference state from From
// (compare-and-swap) to To along referenceTransitions. Only the rebalance
// controller sends it.
type SetShardReferences struct {
	Shard         string         `json:"shard"`
	From          ReferenceState `json:"from"`
	To            ReferenceState `json:"to"`
	ExpectVersion uint64         `json:"expect_version,omitempty"`
}

func (c SetShardReferences) mutate(d *draft) error {
	s, err := d.shard(c.Shard)
	if err != nil {
		return err
	}
	if s.References != c.From {
		return invalidf("shard %s: references are %s, not %s", s.Name, s.References, c.From)
	}
	for _, to := range referenceTransitions[s.References] {
		if to == c.To {
			s.References = c.To
			return nil
		}
	}
	return invalidf("shard %s: references cannot go from %s to %s", s.Name, c.From, c.To)
}

func (d *draft) hasReferenceTables() bool {
	for _, t := range d.Tables {
		if t.Kind == Reference {
			return true
		}
	}
	return false
}

// hasReferenceSource reports whether some shard holds the reference tables
// and can serve a copy of them.
func (d *draft) hasReferenceSource() bool {
	for _, s := range d.Shards {
		if s.ReferencesReady() && s.State != ShardOffline {
			return true
		}
	}
	return false
}
