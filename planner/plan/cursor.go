package plan

// DeclareCursor is DECLARE … CURSOR over a query that needs several
// shards. The executor runs Query (a read Scatter, or merge operators over
// one) as a cursor-backed read: each shard's part is bound to a portal on
// the shard's connection inside the client's transaction block, and rows
// are fetched from the shards in batches as FETCH asks for them, so the
// cursor lives until CLOSE or the end of the transaction like a
// PostgreSQL cursor. A WITH HOLD cursor (Hold) instead runs Query to the
// end at DECLARE and keeps the rows in a temporary file, as PostgreSQL
// materializes a WITH HOLD cursor when its transaction commits; it lives
// until CLOSE or the end of the session, also outside a transaction block.
// Only forward fetching is supported (SCROLL is refused by the planner).
type DeclareCursor struct {
	Name   string   // the cursor's name as PostgreSQL folds it
	Binary bool     // DECLARE … BINARY: rows in binary format
	Hold   bool     // DECLARE … WITH HOLD
	Query  Operator // the read plan of the cursor's query
	SQL    string   // the DECLARE statement
}

func (o *DeclareCursor) Inputs() []Operator { return []Operator{o.Query} }
func (o *DeclareCursor) Describe() Description {
	f := map[string]any{"name": o.Name}
	if o.Binary {
		f["binary"] = true
	}
	if o.Hold {
		f["hold"] = true
	}
	return Description{Name: "DeclareCursor", Fields: f}
}

// Fetch is what a FETCH or MOVE statement asks of a cursor (Session.Fetch).
type Fetch struct {
	// Forward is true for FETCH [FORWARD|NEXT] n and FETCH [FORWARD] ALL
	// with n > 0: the only forms a cross-shard cursor supports.
	Forward bool
	All     bool  // ALL rows
	Count   int64 // rows asked for when not All
	Move    bool  // MOVE: skip the rows instead of returning them
}

var _ Operator = (*DeclareCursor)(nil)
