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
//   - statements outside a transaction block form an implicit transaction
//     (up to the end of the string or the next transaction control): the
//     proxy opens a transaction block around them and commits it (with
//     two-phase commit when several shards were written) or, after an
//     error, rolls it back;
//   - a BEGIN there makes that block the client's (the statements before
//     it are in it); a COMMIT or ROLLBACK there commits or rolls it back
//     with PostgreSQL's WARNING that no transaction is in progress;
//     savepoint statements there fail with 25P01;
//   - inside the client's transaction block statements run in it, and a
//     COMMIT or ROLLBACK ends it; an error aborts it;
//
// and after an error the rest of the string is skipped.
func (ss *session) sequenceOneByOne(snap *topology.Snapshot, a *planner.Analysis, seq *plan.Sequence) error {
	if len(a.Statements) != len(seq.Statements) || ss.implicitTx {
		return ss.queryFailed(oneByOneUnsupported("its statements could not be told apart"))
	}
	wrapped := false // the proxy's BEGIN opened the block the statements run in
	failed := false
	for i, st := range a.Statements {
		control := ""
		if o, ok := seq.Statements[i].(*plan.Session); ok && o.Kind == "transaction" {
			control = o.Name
		}
		ends := control == "begin" || control == "commit" || control == "rollback"
		if !wrapped && ss.txStatus == 'I' && !ends {
			var err error
			if failed, err = ss.subStatement(snap, "BEGIN"); err != nil || failed {
				return ss.endSequence(err)
			}
			ss.dropTag("BEGIN")
			wrapped = true
		}
		var err error
		switch {
		case wrapped && control == "begin":
			if !plainBegin(st.SQL) {
				ss.sendError(toErrorFields(oneByOneUnsupported("a BEGIN with transaction modes after other statements")))
				failed = true
				break
			}
			wrapped = false // the block is the client's now
			ss.txBegin = st.SQL
			ss.out = appendCommandComplete(ss.out, "BEGIN")
		case wrapped && (control == "commit" || control == "rollback"):
			ss.out = appendWarning(ss.out, "25P01", "there is no transaction in progress")
			wrapped = false
			failed, err = ss.subStatement(snap, strings.ToUpper(control))
		case wrapped && savepointStatement[control] != "":
			ss.sendError(errorFields{Code: "25P01", Message: savepointStatement[control] + " can only be used in transaction blocks"})
			failed = true
		default:
			failed, err = ss.subStatement(snap, st.SQL)
		}
		if err != nil {
			return err
		}
		if failed {
			break
		}
	}
	if wrapped {
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

// savepointStatement names the savepoint statements in PostgreSQL's
// errors, by the planner's Session name.
var savepointStatement = map[string]string{"savepoint": "SAVEPOINT", "release": "RELEASE SAVEPOINT", "rollback_to": "ROLLBACK TO SAVEPOINT"}

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
