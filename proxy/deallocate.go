package proxy

import (
	"fmt"
	"maps"

	"github.com/shardproxy/shardproxy/proxy/sqlclass"
)

// DEALLOCATE sent with the extended protocol (psycopg 3 evicts its
// statement cache with "DEALLOCATE _pg3_N" and sends "DEALLOCATE ALL" after
// a failed transaction) is answered by the proxy, as the simple-query path
// does: the statements it names are the client's, while the server copies
// belong to the connection's LRU, which other clients share. Forwarded,
// "DEALLOCATE ALL" would drop every client's statements on that server
// connection behind the LRU's back (later Binds there failed with 26000),
// and "DEALLOCATE name" would name a statement the server knows by another
// name.

// deallocation returns the statement's DEALLOCATE when the text is exactly
// one DEALLOCATE statement.
func (e *stmtEntry) deallocation() (*sqlclass.Statement, bool) {
	e.classifySQLNamed()
	return e.dealloc, e.dealloc != nil
}

// runsSQLNamed reports whether the text is exactly one PREPARE or EXECUTE
// of an SQL prepared statement.
func (e *stmtEntry) runsSQLNamed() bool {
	e.classifySQLNamed()
	return e.sqlNamed
}

// classifySQLNamed sets dealloc and sqlNamed, once.
func (e *stmtEntry) classifySQLNamed() {
	e.deallocOnce.Do(func() {
		if !mayTrack([]byte(e.text())) {
			return
		}
		if cs := e.classes(); len(cs) == 1 {
			switch cs[0].Kind {
			case sqlclass.Deallocate, sqlclass.DeallocateAll:
				e.dealloc = &cs[0]
			case sqlclass.Prepare, sqlclass.Execute:
				e.sqlNamed = true
			}
		}
	})
}

// errSQLNamedExtended refuses PREPARE and EXECUTE over the extended
// protocol: run as written, PREPARE would create the client's name on a
// pooled server connection, where other clients could EXECUTE it, and
// EXECUTE would not find a statement the proxy prepared under its own name.
var errSQLNamedExtended = errorFields{Code: codeFeatureNotSupported,
	Message: "PREPARE and EXECUTE statements are not supported over the extended query protocol through shardproxy",
	Hint:    "send them as a simple query (psql, Exec without arguments), or use the protocol's own prepared statements (what drivers do by default)"}

// deallocPortal returns the DEALLOCATE bound to the portal named at the
// start of b (a Describe, Execute or Close body after its type byte), nil
// for any other portal.
func (ss *session) deallocPortal(b []byte) (string, *sqlclass.Statement) {
	if len(ss.deallocs) == 0 {
		return "", nil
	}
	name, _, ok := cstring(b)
	if !ok {
		return "", nil
	}
	return string(name), ss.deallocs[string(name)]
}

// bindDeallocate binds portal to a DEALLOCATE the proxy runs itself.
func (ss *session) bindDeallocate(portal string, e *stmtEntry, d *sqlclass.Statement) error {
	if ss.failedBlockBefore() {
		return ss.raiseOnServer(abortedError) // PostgreSQL binds only a transaction's end in a failed block
	}
	delete(ss.multi, portal)
	delete(ss.portals, portal)
	if ss.deallocs == nil {
		ss.deallocs = make(map[string]*sqlclass.Statement)
	}
	ss.deallocs[portal] = d
	if portal == "" {
		ss.portalStmt = e
	}
	ss.batch = true
	ss.push(expect{kind: expSynthBind})
	return nil
}

// executeDeallocate runs a DEALLOCATE portal: the client's statements go,
// as PostgreSQL would drop them at this point of the batch (an error
// earlier in the batch skips it and restores them: undo).
func (ss *session) executeDeallocate(d *sqlclass.Statement) error {
	ss.batch = true
	if ss.txStatus == 'E' {
		return ss.failExtended(&sqlError{abortedError})
	}
	if d.Kind == sqlclass.DeallocateAll {
		stmts, sqlStmts := maps.Clone(ss.stmts), maps.Clone(ss.sqlStmts)
		unnamed, hasUnnamed := ss.stmts[""]
		clear(ss.stmts)
		clear(ss.sqlStmts)
		if hasUnnamed { // the unnamed statement is not a prepared statement DEALLOCATE drops
			ss.stmts[""] = unnamed
		}
		ss.push(expect{kind: expSynthDone, name: "DEALLOCATE ALL", restore: func() {
			ss.stmts, ss.sqlStmts = stmts, sqlStmts
		}})
		return nil
	}
	name := d.Name
	if prev, ok := ss.sqlStmts[name]; ok {
		delete(ss.sqlStmts, name)
		ss.push(expect{kind: expSynthDone, name: "DEALLOCATE", restore: func() { ss.sqlStmts[name] = prev }})
		return nil
	}
	if prev, ok := ss.stmts[name]; ok && name != "" {
		delete(ss.stmts, name)
		ss.push(expect{kind: expSynthDone, name: "DEALLOCATE", restore: func() { ss.stmts[name] = prev }})
		return nil
	}
	// Raised on the server too: inside a transaction block the error
	// aborts it, as PostgreSQL's does.
	return ss.raiseOnServer(errorFields{Code: codeUndefinedPrepared, Message: fmt.Sprintf("prepared statement %q does not exist", name)})
}
