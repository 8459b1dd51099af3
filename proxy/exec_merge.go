package proxy

import (
	"encoding/binary"
	"io"
	"strconv"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/shardproxy/shardproxy/planner"
	"github.com/shardproxy/shardproxy/planner/plan"
	"github.com/shardproxy/shardproxy/proxy/merge"
	"github.com/shardproxy/shardproxy/topology"
)

// Cross-shard reads that need more than concatenation: the planner puts
// merge operators (MergeSort, Sort, Limit, Aggregate, Evaluate, Having,
// Distinct, Project) over a Scatter whose SQL it rewrote. The statement is sent to
// every shard at once; each shard's connection becomes a row stream read
// as the merge needs it (proxy/merge), and the merged rows go to the
// client as they are decided.

// isMergeOp reports whether op is a merge operator.
func isMergeOp(op plan.Operator) bool {
	switch op.(type) {
	case *plan.MergeSort, *plan.Sort, *plan.Limit, *plan.Aggregate, *plan.Evaluate, *plan.Having, *plan.Distinct, *plan.SetOp, *plan.Project, *plan.Window:
		return true
	}
	return false
}

// mergeScatter returns the Scatter under a tree of merge operators.
func mergeScatter(op plan.Operator) (*plan.Scatter, bool) {
	for {
		if sc, ok := op.(*plan.Scatter); ok {
			return sc, true
		}
		if !isMergeOp(op) || len(op.Inputs()) != 1 {
			return nil, false
		}
		op = op.Inputs()[0]
	}
}

// hasAggregate reports whether the merge tree aggregates (then the shards'
// columns are partials, not the client's columns).
func hasAggregate(op plan.Operator) bool {
	for isMergeOp(op) {
		if _, ok := op.(*plan.Aggregate); ok {
			return true
		}
		op = op.Inputs()[0]
	}
	return false
}

// hiddenColumns is the number of columns a Project drops.
func hiddenColumns(op plan.Operator) int {
	for isMergeOp(op) {
		if p, ok := op.(*plan.Project); ok {
			return p.Hidden
		}
		op = op.Inputs()[0]
	}
	return 0
}

// splitDataRow splits a DataRow body into its values (aliasing body).
func splitDataRow(body []byte, dst [][]byte) ([][]byte, bool) {
	if len(body) < 2 {
		return nil, false
	}
	n := int(body[0])<<8 | int(body[1])
	p := 2
	for i := 0; i < n; i++ {
		if p+4 > len(body) {
			return nil, false
		}
		l := int(int32(uint32(body[p])<<24 | uint32(body[p+1])<<16 | uint32(body[p+2])<<8 | uint32(body[p+3])))
		p += 4
		if l < 0 {
			dst = append(dst, nil)
			continue
		}
		if p+l > len(body) {
			return nil, false
		}
		dst = append(dst, body[p:p+l:p+l])
		p += l
	}
	return dst, true
}

// appendDataRow appends a DataRow message.
func appendDataRow(dst []byte, vals [][]byte) []byte {
	start := len(dst)
	dst = append(dst, msgDataRow, 0, 0, 0, 0, byte(len(vals)>>8), byte(len(vals)))
	for _, v := range vals {
		if v == nil {
			dst = append(dst, 0xff, 0xff, 0xff, 0xff)
			continue
		}
		n := len(v)
		dst = append(dst, byte(n>>24), byte(n>>16), byte(n>>8), byte(n))
		dst = append(dst, v...)
	}
	putLen(dst[start+1:], len(dst)-start-1)
	return dst
}

// execMerge runs a merged cross-shard read.
func (ss *session) execMerge(snap *topology.Snapshot, root plan.Operator, params planner.Params, rf []int16, out *execOut) (string, error) {
	src, err := ss.openMerge(snap, root, params, rf, out)
	if err != nil {
		return "", err
	}
	return ss.pumpRows(src, 0)
}

// openMerge starts a merged cross-shard read on every shard and returns
// its row source; for a simple Query (or a deferred Describe) the
// RowDescription is already in ss.out.
func (ss *session) openMerge(snap *topology.Snapshot, root plan.Operator, params planner.Params, rf []int16, out *execOut) (*rowSource, error) {
	sc, ok := mergeScatter(root)
	if !ok {
		return nil, &plan.Unsupported{Message: "this cross-shard plan shape is not supported (" + root.Describe().Name + ")"}
	}
	if ss.txStatus == 'E' {
		return nil, &sqlError{abortedError}
	}
	// What the shards are asked for: the client's formats when the shard
	// columns are the client's (plus hidden ones), else text.
	var shardRF []int16
	switch {
	case len(rf) <= 1:
		shardRF = rf
	case !hasAggregate(root):
		shardRF = append(append([]int16(nil), rf...), make([]int16, hiddenColumns(root))...)
	}
	params, err := ss.typeEvalParams(snap, root, params, sc.Shards[0])
	if err != nil {
		return nil, err
	}
	args := argsFor(params, nil, shardRF, out.simple)
	run, err := ss.startScatter(snap, sc, args, false)
	if err != nil {
		return nil, err
	}
	fail := func(err error) (*rowSource, error) {
		serr := run.stop(true)
		if serr != nil && (isServerGone(serr) || err == nil) {
			return nil, serr
		}
		if out.describe {
			ss.describeFailedMerge(root, run, rf)
		}
		return nil, err
	}
	// The shards' row shape, from the first shard that describes it.
	var desc pgproto3.RowDescription
	for _, f := range run.feeds {
		if err := f.readDesc(); err != nil && err != io.EOF {
			return fail(err)
		}
		if f.desc != nil && desc.Fields == nil {
			if err := desc.Decode(f.desc); err != nil {
				return fail(err)
			}
		}
	}
	if desc.Fields == nil {
		return fail(&plan.Unsupported{Message: "the shards returned no rows description for a merged read"})
	}
	collation, err := ss.shardCollation(snap, sc.Shards[0])
	if err != nil {
		return fail(err)
	}
	ms := make([]merge.Stream, len(run.feeds))
	for i, f := range run.feeds {
		ms[i] = f
	}
	res, err := merge.New(root, &desc, ms, merge.Options{ResultFormats: rf, Collation: collation, MemoryLimit: ss.srv.config().Merge.MemoryLimit,
		Evaluator: ss.evaluatorFor(snap, root, run, sc.Shards[0], params)})
	if err != nil {
		return fail(err)
	}
	if out.simple || out.describe {
		ss.out = appendEncoded(ss.out, res.RowDescription())
	}
	src := &rowSource{run: run}
	src.next = func() error {
		row, err := res.Next()
		if err != nil {
			return err
		}
		ss.out = appendDataRow(ss.out, row)
		return nil
	}
	src.tag = func() string { return "SELECT " + strconv.Itoa(src.rows) }
	return src, nil
}

// appendPart appends one self-contained request for sql: a simple Query,
// or the unnamed statement bound to partPortal, described and executed,
// then Sync.
func appendPart(dst []byte, sql string, args *partArgs) []byte {
	if args == nil {
		return appendQuery(dst, sql)
	}
	return appendPartRun(dst, "", sql, args, true)
}

// partPortal is the portal the proxy runs its own statements in on a
// shard (parts of a cross-shard statement, evaluations). It is not the
// unnamed portal: a client's unnamed portal on that server connection
// outlives them, as it outlives a cross-shard statement on PostgreSQL.
const partPortal = "shardproxy part"

// appendPartRun appends Parse of sql as the unnamed statement (or, when
// stmt is not empty, nothing: stmt is prepared), Bind of it to
// partPortal, Describe of the portal when describe, Execute and Sync.
// A Close of partPortal goes first: one a failed earlier part left open
// in a transaction block would fail the Bind (closing a portal that does
// not exist is no error). Its CloseComplete, ParseComplete and
// BindComplete are the readers' to skip.
func appendPartRun(dst []byte, stmt, sql string, args *partArgs, describe bool) []byte {
	dst = appendClose(dst, 'P', partPortal)
	if stmt == "" {
		dst = appendFrontend(dst, &pgproto3.Parse{Query: sql, ParameterOIDs: args.oids})
	}
	dst = appendFrontend(dst, &pgproto3.Bind{DestinationPortal: partPortal, PreparedStatement: stmt,
		ParameterFormatCodes: args.formats, Parameters: args.values, ResultFormatCodes: args.resultFormats})
	if describe {
		dst = appendFrontend(dst, &pgproto3.Describe{ObjectType: 'P', Name: partPortal})
	}
	dst = appendFrontend(dst, &pgproto3.Execute{Portal: partPortal})
	return appendEmpty(dst, msgSync)
}

// describeFailedMerge answers a deferred Describe of a merged read that
// failed before its RowDescription went out, like PostgreSQL describes a
// portal whose execution then fails: from the first shard that described
// its part (stop has read every shard's answer); nothing when none did.
func (ss *session) describeFailedMerge(root plan.Operator, run *scatterRun, rf []int16) {
	for _, f := range run.feeds {
		if f.desc == nil {
			continue
		}
		var desc pgproto3.RowDescription
		if desc.Decode(f.desc) != nil {
			return
		}
		if res, err := merge.New(root, &desc, nil, merge.Options{ResultFormats: rf}); err == nil {
			ss.out = appendEncoded(ss.out, res.RowDescription())
		}
		return
	}
}

// appendBoundPart is appendPart for the prepared statement stmt.
func appendBoundPart(dst []byte, stmt string, args *partArgs) []byte {
	return appendPartRun(dst, stmt, "", args, true)
}

// oidBlock encodes parameter types the way a Parse message carries them
// (count, then the OIDs), the form stmtIntern keys statements by.
func oidBlock(oids []uint32) []byte {
	b := make([]byte, 2, 2+4*len(oids))
	binary.BigEndian.PutUint16(b, uint16(len(oids)))
	for _, o := range oids {
		b = binary.BigEndian.AppendUint32(b, o)
	}
	return b
}

// shardCollation returns the collation of the session's database on shard
// (cached per shard and database).
func (ss *session) shardCollation(snap *topology.Snapshot, shard string) (string, error) {
	key := shard + "/" + ss.key.Database
	if v, ok := ss.srv.collations.Load(key); ok {
		return v.(string), nil
	}
	rows, err := ss.defaultShardQuery(snap, "SELECT datcollate FROM pg_database WHERE datname = current_database()")
	if err != nil {
		return "", err
	}
	c := ""
	if len(rows) == 1 {
		c = rows[0][0]
	}
	ss.srv.collations.Store(key, c)
	return c, nil
}

// mergedDescription turns the shards' description of a merge plan's
// Scatter (a statement Describe: text formats) into the RowDescription the
// merge gives the client with result formats rf.
func mergedDescription(root plan.Operator, shardDesc []byte, rf []int16) (*pgproto3.RowDescription, error) {
	var desc pgproto3.RowDescription
	if err := desc.Decode(shardDesc); err != nil {
		return nil, err
	}
	res, err := merge.New(root, &desc, nil, merge.Options{ResultFormats: rf})
	if err != nil {
		return nil, err
	}
	return res.RowDescription(), nil
}
