package proxy

import (
	"bytes"
	"encoding/hex"
	"hash/maphash"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/shardproxy/shardproxy/proxy/sqlclass"
)

// stmtEntry is one distinct prepared statement (query text + parameter
// OIDs) under its server-side name. Entries are interned process-wide and
// immutable: many clients' names may point at the same entry.
type stmtEntry struct {
	name      string // server-side name, "sp_<hash>" (or "sps_<hash>" for SQL PREPARE)
	key       string // query text + NUL + raw OID block (or the PREPARE text)
	parseBody []byte // ready-made Parse body naming name (protocol-level entries only)

	validated atomic.Bool            // a server accepted the statement (its Parse succeeded)
	shape     atomic.Pointer[string] // resultShape its clients were shown by a Describe (shape.go); nil until then

	classOnce sync.Once
	class     []sqlclass.Statement

	routeOnce sync.Once
	route     *routeInfo // planner analysis and parameter types (sharded topologies)

	deallocOnce sync.Once
	dealloc     *sqlclass.Statement // the text is this one DEALLOCATE (deallocate.go)
	sqlNamed    bool                // the text is one PREPARE or EXECUTE of an SQL prepared statement
}

// isQuery reports whether e is the protocol-level entry of query (any
// parameter types).
func (e *stmtEntry) isQuery(query string) bool {
	return len(e.key) > len(query) && e.key[len(query)] == 0 && e.key[:len(query)] == query
}

// text is the statement's SQL (its key without the parameter types).
func (e *stmtEntry) text() string {
	if i := strings.IndexByte(e.key, 0); i >= 0 {
		return e.key[:i]
	}
	return e.key
}

// classes returns the classification of the statement text, computed once.
func (e *stmtEntry) classes() []sqlclass.Statement {
	e.classOnce.Do(func() { e.class = sqlclass.Classify(e.text()) })
	return e.class
}

// stmtIntern maps statement content to a stable server-side name, so every
// server connection and every client uses the same name for the same
// statement. The map only grows; it holds each distinct statement once.
type stmtIntern struct {
	mu      sync.Mutex
	seed    maphash.Seed
	byKey   map[string]*stmtEntry
	byName  map[string]bool // names given out in this generation
	collide int
	gen     int // generations so far: retireAll starts a new one
}

func newStmtIntern() *stmtIntern {
	return &stmtIntern{seed: maphash.MakeSeed(), byKey: make(map[string]*stmtEntry), byName: make(map[string]bool)}
}

// protocol returns the entry for a protocol-level Parse of query with the
// raw parameter-OID block oids.
func (in *stmtIntern) protocol(query, oids []byte) *stmtEntry {
	var h maphash.Hash
	h.SetSeed(in.seed)
	h.Write(query)
	h.WriteByte(0)
	h.Write(oids)
	sum := h.Sum64()
	in.mu.Lock()
	defer in.mu.Unlock()
	// Lookup without allocating the key string.
	key := make([]byte, 0, len(query)+1+len(oids))
	key = append(append(append(key, query...), 0), oids...)
	if e, ok := in.byKey[string(key)]; ok {
		return e
	}
	name := in.uniqueName("sp_", sum)
	e := &stmtEntry{name: name, key: string(key)}
	e.parseBody = buildParseBody(name, query, oids)
	in.byKey[e.key] = e
	return e
}

// sql returns the entry for an SQL-level PREPARE whose text, with the
// statement name removed, is body.
func (in *stmtIntern) sql(body string) *stmtEntry {
	key := "\x00sql\x00" + body
	in.mu.Lock()
	defer in.mu.Unlock()
	if e, ok := in.byKey[key]; ok {
		return e
	}
	sum := maphash.String(in.seed, key)
	e := &stmtEntry{name: in.uniqueName("sps_", sum), key: key}
	in.byKey[key] = e
	return e
}

// retire takes e out of the intern after a server reported that its plan
// went stale ("cached plan must not change result type": a table it reads
// changed shape): the next Parse of the same text gets a new entry under a
// new server-side name, prepared afresh wherever it runs, instead of
// meeting the stale copy that server connections keep under the old name.
// Clients still bound to e keep it, as they would keep their statement on
// PostgreSQL (where it fails the same way until they prepare it again).
func (in *stmtIntern) retire(e *stmtEntry) {
	in.mu.Lock()
	defer in.mu.Unlock()
	if in.byKey[e.key] == e {
		delete(in.byKey, e.key)
	}
}

// retireAll retires every entry (see retire): after a command that may
// change the columns a statement's text yields (schemaChangeTag), the
// next Parse of any text is prepared afresh, as it is on PostgreSQL,
// instead of meeting a copy a server connection prepared before the
// change and failing with 0A000 "cached plan must not change result type".
// Clients keep the entries they prepared before, and those fail as on
// PostgreSQL.
//
// Names of a new generation carry its number, so they never meet the
// old ones (still prepared on server connections) and the name set only
// holds the current generation's.
func (in *stmtIntern) retireAll() {
	in.mu.Lock()
	defer in.mu.Unlock()
	clear(in.byKey)
	clear(in.byName)
	in.gen++
}

// schemaChangeTag reports whether a CommandComplete tag is one of a
// command that can change the result columns of statements reading the
// objects it names (ALTER/DROP of tables, views, types, domains, schemas;
// CREATE OR REPLACE VIEW).
func schemaChangeTag(tag string) bool {
	switch tag {
	case "ALTER TABLE", "DROP TABLE", "ALTER VIEW", "DROP VIEW", "CREATE VIEW",
		"ALTER MATERIALIZED VIEW", "DROP MATERIALIZED VIEW", "ALTER TYPE", "DROP TYPE",
		"ALTER DOMAIN", "DROP DOMAIN", "ALTER SCHEMA", "DROP SCHEMA":
		return true
	}
	return false
}

// isStalePlanError reports whether an ErrorResponse body is PostgreSQL's
// "cached plan must not change result type" (0A000), raised when a
// prepared statement meets a table that changed shape since its Parse.
func isStalePlanError(body []byte) bool {
	return errorCode(body) == codeFeatureNotSupported && bytes.Contains(body, []byte("cached plan must not change result type"))
}

func (in *stmtIntern) uniqueName(prefix string, sum uint64) string {
	var b [8]byte
	for i := range b {
		b[i] = byte(sum >> (56 - 8*i))
	}
	base := prefix + hex.EncodeToString(b[:])
	if in.gen > 0 {
		base += "g" + strconv.Itoa(in.gen)
	}
	name := base
	for in.byName[name] { // hash collision between different texts, or a retired entry's name
		in.collide++
		name = base + "_" + strconv.Itoa(in.collide)
	}
	in.byName[name] = true
	return name
}

// isServerStmtName reports whether a name has the shape of one the proxy
// generates; client names of that shape cannot be passed through raw.
func isServerStmtName(name string) bool {
	return len(name) >= 19 && (name[:3] == "sp_" || (len(name) >= 20 && name[:4] == "sps_"))
}
