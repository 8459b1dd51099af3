package proxy

import (
	"encoding/binary"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/shardproxy/shardproxy/planner"
	"github.com/shardproxy/shardproxy/planner/plan"
	"github.com/shardproxy/shardproxy/proxy/merge"
	"github.com/shardproxy/shardproxy/router"
	"github.com/shardproxy/shardproxy/topology"
)

// UPDATE of the distribution key (plan.KeyUpdate; its doc lists the
// steps). Every step runs inside one transaction per shard touched: the
// client's own (each shard joins it as usual, the writes are recorded
// so COMMIT uses two-phase commit), or — outside a transaction block —
// one this file opens with BEGIN on each shard as it first touches it and
// ends when the statement ends: ROLLBACK everywhere on any error,
// otherwise COMMIT, with two-phase commit when it wrote on several
// shards. The internal statements' rows are read here, never sent to the
// client, except the RETURNING rows of the last step.
//
// While the table's distribution has a move in cutover the statement
// waits like a held write (movehold.go) — its rows' new shards are known
// only at run time — unless its transaction already wrote.

// keyUpdateRun is one execution of a KeyUpdate.
type keyUpdateRun struct {
	ss       *session
	snap     *topology.Snapshot
	o        *plan.KeyUpdate
	implicit bool     // the statement opened its own transactions (begun)
	begun    []string // shards with a transaction this run opened
	written  []string // shards this run wrote on
	bytes    int64    // captured bytes, against limit
	limit    int64
}

// keyUpdateColumn is a column of the table, from plan.ColumnsSQL.
type keyUpdateColumn struct {
	name      string
	generated bool
	typeOID   uint32
}

// keyUpdateRow is an updated row on its source shard.
type keyUpdateRow struct {
	source string
	ctid   string
	values [][]byte // the table's columns, nil for NULL
}

// execKeyUpdate runs o and returns the command tag (UPDATE n).
func (ss *session) execKeyUpdate(snap *topology.Snapshot, o *plan.KeyUpdate, params planner.Params, rf []int16, out *execOut) (string, error) {
	if ss.txStatus == 'E' {
		return "", &sqlError{abortedError}
	}
	snap, o, err := ss.holdKeyUpdate(snap, o, params)
	if err != nil {
		return "", err
	}
	k := &keyUpdateRun{ss: ss, snap: snap, o: o, implicit: ss.txStatus == 'I' && ss.txBegin == ""}
	if k.implicit && ss.batch {
		if ss.txWriter != "" {
			return "", &plan.Unsupported{
				Message: "an UPDATE of the distribution key after another write in the same pipelined batch is not supported",
				Hint:    "wrap the batch in BEGIN … COMMIT, or send a Sync between the writes",
			}
		}
		ss.txWriter = multiShardWriter
	}
	k.limit = ss.srv.config().Merge.MemoryLimit
	if k.limit == 0 {
		k.limit = merge.DefaultMemoryLimit
	}
	tag, err := k.run(params, rf, out)
	if err != nil {
		if k.implicit {
			ss.rollbackShards(snap, k.begun)
		}
		return "", err
	}
	if k.implicit {
		if err := k.commit(); err != nil {
			return "", err
		}
	}
	return tag, nil
}

// holdKeyUpdate waits while o's distribution has a move in cutover (see
// above) and plans the statement again on the topology that follows.
func (ss *session) holdKeyUpdate(snap *topology.Snapshot, o *plan.KeyUpdate, params planner.Params) (*topology.Snapshot, *plan.KeyUpdate, error) {
	var held time.Time
	for {
		mi := moveInfoOf(snap)
		if mi == nil || !mi.cutoverDists[o.Distribution] || (ss.txStatus != 'I' && len(ss.txWriters) > 0) {
			return snap, o, nil
		}
		if held.IsZero() {
			held = time.Now()
		}
		for snap == ss.srv.topo.Current() && time.Since(held) <= mi.limit {
			time.Sleep(time.Millisecond)
		}
		if time.Since(held) > mi.limit {
			return snap, nil, &plan.Error{Code: "55P03",
				Message: fmt.Sprintf("an UPDATE of the distribution key of %s was held for %s and the move of its distribution did not finish its cutover", o.Table, mi.limit.Round(time.Second)),
				Hint:    "retry the statement; check the move with shardctl rebalance status"}
		}
		snap = ss.srv.topo.Current()
		a, err := ss.srv.planner.Analyze(o.SQL)
		if err != nil {
			return snap, nil, err
		}
		op, err := ss.srv.planner.Plan(snap, a, params)
		if err != nil {
			return snap, nil, err
		}
		next, ok := op.(*plan.KeyUpdate)
		if !ok {
			return snap, nil, fmt.Errorf("planner: %q no longer plans as a key update", o.SQL)
		}
		o = next
	}
}

func (k *keyUpdateRun) run(params planner.Params, rf []int16, out *execOut) (string, error) {
	o := k.o
	sources := o.SourceShards()
	if len(sources) == 0 {
		return "", fmt.Errorf("planner: key update of %s without source shards", o.Table)
	}
	// 1. The table's columns, read inside the transaction.
	crows, _, err := k.capture(sources[0], plan.ColumnsSQL, false, &partArgs{values: [][]byte{[]byte(o.TableSQL)}, formats: []int16{0}, oids: []uint32{0}})
	if err != nil {
		return "", err
	}
	cols := make([]keyUpdateColumn, 0, len(crows))
	keyIdx := -1
	for _, r := range crows {
		if len(r) != 5 {
			return "", fmt.Errorf("key update: unexpected catalog row")
		}
		if string(r[4]) == "true" {
			return "", &plan.Unsupported{
				Message: fmt.Sprintf("UPDATE cannot change the distribution key column %s of %s: it is partitioned or has inheritance children", o.KeyColumn, o.Table),
				Hint:    "delete the rows and insert them again with the new keys"}
		}
		if string(r[3]) == "true" {
			return "", &plan.Unsupported{
				Message: fmt.Sprintf("UPDATE cannot change the distribution key column %s of %s: a foreign key references %s, and its referencing rows (ON UPDATE CASCADE) would stay on the old shard", o.KeyColumn, o.Table, o.Table),
				Hint:    "update the referencing rows and this row together by deleting and inserting them, or drop the foreign key"}
		}
		oid, _ := strconv.ParseUint(string(r[2]), 10, 32)
		c := keyUpdateColumn{name: string(r[0]), generated: string(r[1]) == "true", typeOID: uint32(oid)}
		if strings.EqualFold(c.name, o.KeyColumn) {
			keyIdx = len(cols)
		}
		cols = append(cols, c)
	}
	if keyIdx < 0 {
		return "", &plan.Unsupported{Message: "cannot find the distribution key column " + o.KeyColumn + " of " + o.Table + " on shard " + sources[0],
			Hint: "check that the table exists with the same columns on every shard"}
	}
	// 2. On each source shard, lock the rows and compute their new keys;
	// a row stays when its new key maps to the same shard.
	rt := router.For(k.snap)
	type locked struct{ ctids, keys, stays []string }
	lockedOn := map[string]*locked{}
	total := 0
	for _, s := range sources {
		sql, idx := o.SourceSQL(s)
		got, _, err := k.capture(s, sql, false, argsFor(planner.SelectParams(params, o.SourceParams), idx, nil, false))
		if err != nil {
			return "", err
		}
		total += len(got)
		if total > plan.MaxKeyUpdateRows {
			return "", plan.TooManyKeyUpdateRows(o.Table)
		}
		if len(got) == 0 {
			continue
		}
		l := &locked{}
		for _, r := range got {
			if len(r) != 2 || r[0] == nil {
				return "", fmt.Errorf("key update: the locking SELECT on shard %s returned %d columns", s, len(r))
			}
			if r[1] == nil {
				return "", &plan.Error{Code: "23502", Message: "null value in distribution key column " + o.Table + "." + o.KeyColumn}
			}
			to, err := newKeyShard(rt, o, r[1])
			if err != nil {
				return "", err
			}
			l.ctids = append(l.ctids, string(r[0]))
			l.keys = append(l.keys, string(r[1]))
			l.stays = append(l.stays, map[bool]string{true: "t", false: "f"}[to == s])
		}
		lockedOn[s] = l
	}
	// 3. The UPDATE of the locked rows (the key set on those that stay),
	// its rows captured: ctid and the new key as text, the key column too,
	// other built-in types binary, the rest text.
	resultFormats := make([]int16, 2+len(cols))
	for i, c := range cols {
		if i != keyIdx && c.typeOID < plan.FirstNormalOID {
			resultFormats[2+i] = 1
		}
	}
	var updated int64
	var leaving []keyUpdateRow
	stay := map[string][]string{} // shard → ctids of updated rows that stay
	for _, s := range sources {
		l := lockedOn[s]
		if l == nil {
			continue
		}
		p := planner.SelectParams(params, o.UpdateParams)
		p.Formats = fullFormats(p)
		for _, arr := range [][]string{l.ctids, l.keys, l.stays} {
			p.Values = append(p.Values, []byte(plan.TextArray(arr)))
			p.Formats = append(p.Formats, 0)
			p.OIDs = append(p.OIDs, 0)
		}
		args := argsFor(p, nil, resultFormats, false)
		got, tag, err := k.capture(s, o.Update, true, args)
		if err != nil {
			return "", err
		}
		n, err := tagCount(tag)
		if err != nil {
			return "", err
		}
		if n != int64(len(l.ctids)) || len(got) != len(l.ctids) {
			return "", fmt.Errorf("key update: %s of %d locked rows on shard %s", tag, len(l.ctids), s)
		}
		if n > 0 && !slices.Contains(k.written, s) {
			k.written = append(k.written, s)
		}
		updated += n
		for _, r := range got {
			if len(r) != 2+len(cols) || r[0] == nil || r[1] == nil {
				return "", fmt.Errorf("key update: the UPDATE on shard %s returned %d columns for %d", s, len(r), 2+len(cols))
			}
			to, err := newKeyShard(rt, o, r[1])
			if err != nil {
				return "", err
			}
			if to == s {
				stay[s] = append(stay[s], string(r[0]))
				continue
			}
			values := r[2:]
			values[keyIdx] = r[1]
			leaving = append(leaving, keyUpdateRow{source: s, ctid: string(r[0]), values: values})
		}
	}
	// 4. Rows whose new key belongs to another shard leave their source.
	bySource := map[string][]string{}
	var order []string
	for _, r := range leaving {
		if _, ok := bySource[r.source]; !ok {
			order = append(order, r.source)
		}
		bySource[r.source] = append(bySource[r.source], r.ctid)
	}
	for _, s := range order {
		ctids := bySource[s]
		_, tag, err := k.capture(s, o.DeleteSQL(), true, &partArgs{values: [][]byte{[]byte(plan.TidArray(ctids))}, formats: []int16{0}, oids: []uint32{0}})
		if err != nil {
			return "", err
		}
		if n, err := tagCount(tag); err != nil || n != int64(len(ctids)) {
			return "", &plan.Unsupported{Message: fmt.Sprintf("an UPDATE of the distribution key of %s updated rows the proxy could not move (%s on shard %s for %d rows); nothing was changed", o.Table, tag, s, len(ctids)),
				Hint: "tables with inheritance children or partitions cannot have their key updated through the proxy; delete and insert the rows instead"}
		}
	}
	// 5. The leaving rows go where their keys belong, planned like any
	// INSERT, in batches.
	var insCols []int
	for i, c := range cols {
		if !c.generated {
			insCols = append(insCols, i)
		}
	}
	names := make([]string, len(insCols))
	for j, i := range insCols {
		names[j] = cols[i].name
	}
	arrived := map[string][]string{} // shard → ctids of the rows it received
	batch := plan.InsertBatchRows(len(insCols))
	for from := 0; from < len(leaving); from += batch {
		part := leaving[from:min(from+batch, len(leaving))]
		p := planner.Params{}
		for _, r := range part {
			for _, i := range insCols {
				p.Values = append(p.Values, r.values[i])
				p.Formats = append(p.Formats, resultFormats[2+i])
				if resultFormats[2+i] == 1 {
					p.OIDs = append(p.OIDs, cols[i].typeOID)
				} else {
					p.OIDs = append(p.OIDs, 0)
				}
			}
		}
		if err := k.insert(o.InsertSQL(names, len(part), o.Returning != ""), p, arrived); err != nil {
			return "", err
		}
	}
	// 6. RETURNING over the updated rows where they are now.
	if o.Returning != "" {
		if err := k.returning(params, rf, out, stay, arrived, sources[0]); err != nil {
			return "", err
		}
	}
	return "UPDATE " + strconv.FormatInt(updated, 10), nil
}

// insert plans and runs one internal INSERT, noting the ctids of the
// rows each shard received (when it returns them).
func (k *keyUpdateRun) insert(sql string, p planner.Params, arrived map[string][]string) error {
	ss := k.ss
	a, err := ss.srv.planner.Analyze(sql)
	if err != nil {
		return err
	}
	op, err := ss.srv.planner.Plan(k.snap, a, p)
	if err != nil {
		return err
	}
	var parts []*plan.Route
	switch x := op.(type) {
	case *plan.Route:
		parts = []*plan.Route{x}
	case *plan.SplitInsert:
		parts = x.Parts
	default:
		return fmt.Errorf("key update: the INSERT of the moved rows planned as %s", op.Describe().Name)
	}
	for _, r := range parts {
		got, _, err := k.capture(r.Shard, r.SQL, true, argsFor(p, r.ParamIndexes, nil, false))
		if err != nil {
			return err
		}
		if !slices.Contains(k.written, r.Shard) {
			k.written = append(k.written, r.Shard)
		}
		for _, row := range got {
			if len(row) == 1 && row[0] != nil {
				arrived[r.Shard] = append(arrived[r.Shard], string(row[0]))
			}
		}
	}
	return nil
}

// returning runs the client's RETURNING list on every shard holding
// updated rows (or, when there are none, on first, for the row shape);
// its rows go to the client.
func (k *keyUpdateRun) returning(params planner.Params, rf []int16, out *execOut, stay, arrived map[string][]string, first string) error {
	ctidsOf := map[string][]string{}
	var shards []string
	for _, m := range []map[string][]string{stay, arrived} {
		for s, c := range m {
			if _, ok := ctidsOf[s]; !ok {
				shards = append(shards, s)
			}
			ctidsOf[s] = append(ctidsOf[s], c...)
		}
	}
	slices.Sort(shards)
	if len(shards) == 0 {
		shards = []string{first}
	}
	o := k.o
	sel := *out
	if out.describe {
		sel.simple = true // the RowDescription goes first (runPartHere passes it when simple)
	}
	for _, s := range shards {
		p := planner.SelectParams(params, o.ReturningParams)
		if o.ReturningParams == nil {
			p = planner.Params{}
		}
		p.Values = append(p.Values, []byte(plan.TidArray(ctidsOf[s])))
		p.Formats = append(fullFormats(p), 0)
		p.OIDs = append(append([]uint32(nil), p.OIDs...), 0)
		if err := k.enter(s, false); err != nil {
			return err
		}
		tag, err := k.ss.runPartHere(s, o.Returning, argsFor(p, nil, rf, false), &sel, true)
		if err != nil {
			return err
		}
		if n, err := tagCount(tag); err != nil || n != int64(len(ctidsOf[s])) {
			return fmt.Errorf("key update: RETURNING found %s of %d updated rows on shard %s", tag, len(ctidsOf[s]), s)
		}
	}
	out.descSent = sel.descSent
	return nil
}

// fullFormats returns one format code per value of p.
func fullFormats(p planner.Params) []int16 {
	f := make([]int16, len(p.Values))
	for i := range f {
		switch {
		case len(p.Formats) == 1:
			f[i] = p.Formats[0]
		case i < len(p.Formats):
			f[i] = p.Formats[i]
		}
	}
	return f
}

// enter makes shard's connection the active one, inside the statement's
// transaction: this run's own (BEGIN the first time) or the client's.
// write records a write on it for the client's transaction (two-phase
// commit at COMMIT when it wrote on several shards).
func (k *keyUpdateRun) enter(shard string, write bool) error {
	ss := k.ss
	if ss.blockedByAbort(shard) {
		return &sqlError{abortedError}
	}
	if !k.implicit && write {
		if err := ss.checkWrite([]string{shard}); err != nil {
			return err
		}
	}
	if err := ss.useShard(k.snap, shard); err != nil {
		return err
	}
	if k.implicit && !slices.Contains(k.begun, shard) {
		if err := ss.runRaw(appendQuery(nil, "BEGIN")); err != nil {
			return err
		}
		k.begun = append(k.begun, shard)
	}
	return nil
}

// commit ends the transactions this run opened: the ones it only read
// on with COMMIT, the written ones with COMMIT too when there is one, else
// with two-phase commit.
func (k *keyUpdateRun) commit() error {
	ss := k.ss
	var readOnly []string
	for _, s := range k.begun {
		if !slices.Contains(k.written, s) {
			readOnly = append(readOnly, s)
		}
	}
	for _, s := range readOnly {
		if err := ss.useShard(k.snap, s); err == nil {
			if err := ss.runRaw(appendQuery(nil, "COMMIT")); err != nil {
				ss.rollbackShards(k.snap, k.begun)
				return err
			}
		}
	}
	switch len(k.written) {
	case 0:
		return nil
	case 1:
		if err := ss.useShard(k.snap, k.written[0]); err != nil {
			ss.rollbackShards(k.snap, k.written)
			return err
		}
		return ss.runRaw(appendQuery(nil, "COMMIT")) // a failed COMMIT rolls back
	}
	return ss.commitWrapped(k.snap, k.written)
}

// capture runs one internal statement on shard (in the transaction) and
// returns its rows' values (nil for NULL) and its command tag. Notices go
// to the client; rows never do.
func (k *keyUpdateRun) capture(shard, sql string, write bool, args *partArgs) ([][][]byte, string, error) {
	ss := k.ss
	if err := k.enter(shard, write); err != nil {
		return nil, "", err
	}
	ss.sout = appendPartRun(ss.sout, "", sql, args, false)
	if err := ss.flushServer(); err != nil {
		return nil, "", err
	}
	var rows [][][]byte
	var tag string
	var first error
	for {
		typ, body, err := ss.sr.next()
		if err != nil {
			return nil, "", &errServerGone{err}
		}
		switch typ {
		case msgDataRow:
			if first != nil {
				continue
			}
			r, n, err := decodeDataRow(body)
			if err != nil {
				first = err
				continue
			}
			k.bytes += int64(n)
			if k.bytes > k.limit && k.limit > 0 {
				first = &merge.Error{Code: "53200", Message: fmt.Sprintf("out of memory: the rows an UPDATE of the distribution key of %s moves need more than %d bytes", k.o.Table, k.limit),
					Hint: "update the rows in smaller batches, or raise the proxy's merge memory limit"}
				continue
			}
			rows = append(rows, r)
		case msgCommandComplete:
			t, _, _ := cstring(body)
			tag = string(t)
		default:
			done, err := ss.internalReply(typ, body, "on shard "+shard, &first)
			if err != nil {
				return nil, "", err
			}
			if done {
				return rows, tag, first
			}
		}
	}
}

// newKeyShard is the shard whose range holds key, a new value (text) of
// o's distribution key.
func newKeyShard(rt *router.Router, o *plan.KeyUpdate, key []byte) (string, error) {
	v, err := router.KeyFromText(o.KeyType, string(key))
	if err != nil {
		return "", err
	}
	return rt.ShardForKey(o.Distribution, v)
}

// decodeDataRow copies a DataRow's values (nil for NULL) and returns
// their size.
func decodeDataRow(body []byte) ([][]byte, int, error) {
	if len(body) < 2 {
		return nil, 0, fmt.Errorf("key update: malformed DataRow")
	}
	n := int(binary.BigEndian.Uint16(body))
	body = body[2:]
	out := make([][]byte, n)
	size := 0
	for i := range out {
		if len(body) < 4 {
			return nil, 0, fmt.Errorf("key update: malformed DataRow")
		}
		l := int32(binary.BigEndian.Uint32(body))
		body = body[4:]
		if l < 0 {
			continue
		}
		if int(l) > len(body) {
			return nil, 0, fmt.Errorf("key update: malformed DataRow")
		}
		out[i] = append([]byte{}, body[:l]...)
		body = body[l:]
		size += int(l) + 24
	}
	return out, size, nil
}

// tagCount returns the row count at the end of a command tag.
func tagCount(tag string) (int64, error) {
	i := strings.LastIndexByte(tag, ' ')
	n, err := strconv.ParseInt(tag[i+1:], 10, 64)
	if err != nil {
		return 0, fmt.Errorf("key update: unexpected command tag %q", tag)
	}
	return n, nil
}
