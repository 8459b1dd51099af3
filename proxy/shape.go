package proxy

import (
	"bytes"
	"encoding/binary"
)

// Result shapes of prepared statements.
//
// PostgreSQL fixes a protocol-level prepared statement's result columns at
// its Parse: when a table it reads changes shape later, running or
// describing the statement fails with 0A000 "cached plan must not change
// result type", and the client prepares it again. Drivers rely on that:
// pgx, asyncpg and pgjdbc cache a statement's RowDescription and decode
// every later result with it.
//
// Through the proxy a client's statement is prepared lazily on whichever
// server connection runs it next, possibly after the change, where it
// would silently answer with the new columns. So every statement entry
// remembers the shape its clients were shown (the first RowDescription or
// NoData of a Describe of it), and before a connection prepares the entry
// again the proxy describes it there and compares: a different shape
// fails the client's message with PostgreSQL's 0A000, and the entry is
// retired so that the client's next Parse gets a fresh one.

// resultShape is the part of a RowDescription (or NoData) a client decodes
// by: column count, names, types, type sizes and modifiers. Table OIDs and
// column numbers are left out: they differ between shards and after a
// table is created again with the same columns.
func resultShape(typ byte, body []byte) string {
	if typ != msgRowDescription || len(body) < 2 {
		return "" // NoData
	}
	n := int(binary.BigEndian.Uint16(body))
	shape := make([]byte, 0, len(body))
	shape = append(shape, body[:2]...)
	rest := body[2:]
	for i := 0; i < n; i++ {
		end := bytes.IndexByte(rest, 0)
		if end < 0 || len(rest) < end+1+18 {
			return string(body) // malformed: compare it whole
		}
		shape = append(shape, rest[:end+1]...) // name
		f := rest[end+1:]
		shape = append(shape, f[6:16]...) // type OID, size, modifier (skip table OID, attnum; format)
		rest = f[18:]
	}
	return string(shape)
}

// noteShape records the shape a client was shown for e, when none is yet.
// It reports false when e already has another shape: the server
// connection's copy of e was prepared after a table changed.
func (e *stmtEntry) noteShape(typ byte, body []byte) bool {
	s := resultShape(typ, body)
	if old := e.shape.Load(); old != nil {
		return *old == s
	}
	e.shape.CompareAndSwap(nil, &s)
	return true
}

// prepareChecked sends a Parse of e to the attached server connection,
// which lacks it, and when e's clients were shown a shape, also describes
// it there and waits for the answer (the responses to everything the
// session sent before are relayed on the way). It reports false when the
// shape differs: e is retired, the connection's new copy is closed, and
// the caller fails (a client's old statement) or prepares afresh (a
// client's new Parse). kind is expParse for a client's Parse, else
// expParseSwallow. A failed Parse leaves ss.skip set, as any server error
// in a batch does.
func (ss *session) prepareChecked(e *stmtEntry, x expect) (bool, error) {
	ss.addServerStmt(e.name)
	ss.sout = appendMsg(ss.sout, msgParse, e.parseBody)
	x.server, x.stmt = e.name, e
	ss.push(x)
	if e.shape.Load() == nil || x.auto != nil {
		return true, nil
	}
	ss.sout = appendDescribeStmt(ss.sout, e.name)
	ss.push(expect{kind: expShapeCheck, stmt: e})
	ss.sout = appendEmpty(ss.sout, msgFlush)
	ss.shapeChanged = false
	if err := ss.flushServer(); err != nil {
		return false, err
	}
	if err := ss.drain(); err != nil {
		return false, err
	}
	if ss.sc != nil {
		ss.batch, ss.scBatch = true, true // a ReadyForQuery relayed on the way ended the batch
	}
	if !ss.shapeChanged {
		return true, nil
	}
	ss.shapeChanged = false
	ss.srv.intern.retire(e)
	ss.sc.Prepared.Remove(e.name)
	ss.sout = appendCloseStmt(ss.sout, e.name)
	ss.push(expect{kind: expCloseSwallow, server: e.name})
	return false, nil
}

// noteSchemaChange retires the interned statements after a command whose
// tag is that of a schema change (schemaChangeTag).
func (ss *session) noteSchemaChange(tag string) {
	if schemaChangeTag(tag) {
		ss.srv.intern.retireAll()
	}
}

// appendDescribeStmt appends a Describe of the server statement name.
func appendDescribeStmt(dst []byte, name string) []byte {
	dst = append(dst, msgDescribe, 0, 0, 0, 0)
	n := len(dst)
	dst = append(dst, 'S')
	dst = append(dst, name...)
	dst = append(dst, 0)
	putLen(dst[n-4:], len(dst)-n+4)
	return dst
}

// errStaleShape is PostgreSQL's error for a prepared statement whose
// result columns changed since its Parse.
var errStaleShape = newSQLError(codeFeatureNotSupported, "cached plan must not change result type")
