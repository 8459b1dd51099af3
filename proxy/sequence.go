package proxy

import (
	"bytes"
	"fmt"
	"regexp"
	"strings"
	"time"

	"github.com/shardproxy/shardproxy/planner"
	"github.com/shardproxy/shardproxy/planner/plan"
	"github.com/shardproxy/shardproxy/topology"
)

// sequenceOneByOne runs a multi-statement query string whose statements
// need different shards (or the proxy's own execution) one statement at a
// time, as the client could have sent them, and answers with one
// ReadyForQuery, keeping PostgreSQL's semantics for the string:
//
//   - without transaction control in it, outside a transaction block, the
//     statements form one implicit transaction: the proxy opens a
//     transaction block around them and commits it (with two-phase commit
//     when several shards were written) or, after an error, rolls it back;
//   - inside a transaction block they run in it (a final COMMIT or
//     ROLLBACK ends it); an error aborts it;
//   - a string that opens its own transaction ("BEGIN; …; COMMIT") runs
//     as written;
//
// and after an error the rest of the string is skipped. Other places of
// transaction control (a COMMIT in the middle, savepoints) are refused
// with 0A000.
func (ss *session) sequenceOneByOne(snap *topology.Snapshot, a *planner.Analysis, seq *plan.Sequence) error {
	if len(a.Statements) != len(seq.Statements) || ss.implicitTx {
		return ss.queryFailed(oneByOneUnsupported("its statements could not be told apart"))
	}
	opens := false
	for i, op := range seq.Statements {
		o, ok := op.(*plan.Session)
		if !ok || o.Kind != "transaction" {
			continue
		}
		switch {
		case i == 0 && o.Name == "begin" && ss.txStatus == 'I':
			opens = true
		case i == len(seq.Statements)-1 && (opens || ss.txStatus != 'I') && (o.Name == "commit" || o.Name == "rollback"):
		default:
			return ss.queryFailed(oneByOneUnsupported("it has transaction control other than a leading BEGIN and a final COMMIT or ROLLBACK"))
		}
	}
	wrap := !opens && ss.txStatus == 'I'
	if wrap {
		if failed, err := ss.subStatement(snap, "BEGIN"); err != nil || failed {
			return ss.endSequence(err)
		}
		ss.dropTag("BEGIN")
	}
	failed := false
	for _, st := range a.Statements {
		var err error
		if failed, err = ss.subStatement(snap, st.SQL); err != nil {
			return err
		}
		if failed {
			break
		}
	}
	if wrap {
		verb := "COMMIT"
		if failed || ss.txStatus == 'E' {
			verb = "ROLLBACK"
		}
		commitFailed, err := ss.subStatement(snap, verb)
		if err != nil {
			return err
		}
		if !commitFailed {
			ss.dropTag(verb)
			ss.dropTag("ROLLBACK") // a COMMIT of a failed transaction answers ROLLBACK
		}
	}
	return ss.endSequence(nil)
}

// codeOnListedTables reports whether a statement of a (without a routing
// hint) is code the proxy cannot route (codeOnListedTables).
func (ss *session) codeOnListedTables(snap *topology.Snapshot, a *planner.Analysis) bool {
	if a.Hint != "" || ss.forcedShard != "" {
		return false
	}
	for _, st := range a.Statements {
		if (st.Kind == planner.KindUtility || st.Kind == planner.KindDDL) && codeOnListedTables(snap, st.SQL) {
			return true
		}
	}
	return false
}

// codeOnListedTables reports whether sql is a DO block or creates a
// function or procedure in pg_temp (made to be called right away, as
// Sequelize's findOrCreate does) whose text names a distributed or
// reference table: the proxy cannot route the statements inside, so they
// would run on whichever one shard the block or the call went to, writing
// rows where they do not belong. Functions created in other schemas are
// DDL for every shard, where triggers and calls find them.
func codeOnListedTables(snap *topology.Snapshot, sql string) bool {
	f := strings.Fields(strings.ToLower(sql[:min(len(sql), 120)])) // the leading words say what it is
	switch {
	case len(f) > 0 && f[0] == "do":
	case len(f) >= 3 && f[0] == "create":
		i := 1
		if len(f) >= 5 && f[1] == "or" && f[2] == "replace" {
			i = 3
		}
		if (f[i] != "function" && f[i] != "procedure") || !strings.HasPrefix(strings.TrimPrefix(f[i+1], `"`), "pg_temp") {
			return false
		}
	default:
		return false
	}
	listed := snap.Memo(listedNamesKey{}, func(s *topology.Snapshot) any {
		names := make(map[string]bool)
		for _, t := range s.Tables() {
			names[t.Name[strings.LastIndexByte(t.Name, '.')+1:]] = true
		}
		return names
	}).(map[string]bool)
	for _, word := range identifierRE.FindAllString(sql, -1) {
		if strings.HasPrefix(word, `"`) {
			word = strings.Trim(word, `"`)
		} else {
			word = strings.ToLower(word)
		}
		if listed[word] {
			return true
		}
	}
	return false
}

// listedNamesKey caches, per snapshot, the unqualified names of the
// distributed and reference tables (codeOnListedTables).
type listedNamesKey struct{}

// identifierRE matches identifiers, quoted or not.
var identifierRE = regexp.MustCompile(`"[^"]+"|[A-Za-z_][A-Za-z0-9_$]*`)

// codeRefusal is the 0A000 for codeOnListedTables.
var codeRefusal = &plan.Unsupported{
	Message: "a DO block or a pg_temp function that reads or writes distributed or reference tables would run on one shard only",
	Hint:    "send its statements directly (they are routed by their keys), or create the function in a schema so that it exists on every shard",
}

// oneByOneUnsupported is the 0A000 for a query string the proxy cannot run
// statement by statement.
func oneByOneUnsupported(why string) error {
	return &plan.Unsupported{
		Message: "this query string needs several shards and " + why,
		Hint:    "send its statements one at a time",
	}
}

// subStatement runs one statement of a query string through the simple
// query path and takes back the ReadyForQuery it ends with. failed: the
// statement answered with an error.
func (ss *session) subStatement(snap *topology.Snapshot, sql string) (failed bool, err error) {
	saved := ss.batchFailed
	ss.batchFailed = false
	body := append([]byte(sql), 0)
	if err := ss.routeQuery(snap, body); err != nil {
		return true, err
	}
	failed = ss.batchFailed
	ss.batchFailed = saved || failed
	n := len(ss.out)
	if n < 6 || ss.out[n-6] != msgReadyForQuery {
		return true, fmt.Errorf("proxy: internal error: a statement of a query string did not end with ReadyForQuery")
	}
	ss.out = ss.out[:n-6]
	return failed, nil
}

// dropTag removes the CommandComplete with tag from the end of the
// output: the proxy's own BEGIN and COMMIT around a query string are not
// the client's.
func (ss *session) dropTag(tag string) {
	cc := appendCommandComplete(nil, tag)
	if bytes.HasSuffix(ss.out, cc) {
		ss.out = ss.out[:len(ss.out)-len(cc)]
	}
}

// endSequence sends the query string's one ReadyForQuery.
func (ss *session) endSequence(err error) error {
	if err != nil {
		return err
	}
	ss.out = appendRFQ(ss.out, ss.txStatus)
	ss.start = time.Time{}
	return nil
}

// tempInsertFunction runs an ORM's insert-in-a-temporary-function string
// (planner.TempInsertFunction, Sequelize's findOrCreate) on the shard of
// the row it inserts: a key left to its default gets one from the
// cluster-wide allocator first, written into the function's INSERT.
func (ss *session) tempInsertFunction(snap *topology.Snapshot, f *planner.TempInsertFunction) error {
	if ss.txStatus == 'E' {
		return ss.queryFailed(&sqlError{abortedError})
	}
	insert := f.Insert
	snap, op, err := ss.planText(snap, insert)
	if ak, ok := op.(*plan.AllocateKeys); ok && err == nil {
		var keys []string
		if keys, err = ss.allocateFor(snap, ak); err == nil {
			if insert, err = planner.FillParams(ak.SQL, ak.FirstParam, keys); err == nil {
				snap, op, err = ss.planText(snap, insert) // with its key
			}
		}
	}
	if err != nil {
		return ss.queryFailed(err)
	}
	if r, ok := op.(*plan.Route); ok && r.SQL == insert && r.ParamIndexes == nil && !r.ReadAnyShard {
		ss.noteRoute(op)
		return ss.relayRouted(snap, r.Shard, true, op, append([]byte(f.WithInsert(insert)), 0))
	}
	return ss.queryFailed(codeRefusal)
}

// planText analyzes and plans one statement without parameters.
func (ss *session) planText(snap *topology.Snapshot, sql string) (*topology.Snapshot, plan.Operator, error) {
	a, err := ss.srv.planner.Analyze(sql)
	if err != nil {
		return snap, nil, err
	}
	if err := ss.loadCatalog(snap, a); err != nil {
		return snap, nil, err
	}
	return ss.planHeld(snap, func(s *topology.Snapshot) (plan.Operator, error) {
		return ss.srv.planner.Plan(s, a, planner.Params{})
	})
}
