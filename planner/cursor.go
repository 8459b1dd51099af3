package planner

import (
	"math"
	"strings"

	pg_query "github.com/pganalyze/pg_query_go/v6"

	"github.com/shardproxy/shardproxy/planner/plan"
	"github.com/shardproxy/shardproxy/topology"
)

// Cursors over several shards.
//
// DECLARE … CURSOR FOR query whose query stays on one shard is a Route of
// the statement (the cursor lives on that shard). When the query needs
// several shards, the query alone is analysed and planned like any read
// and wrapped in a plan.DeclareCursor, which the proxy runs as a
// cursor-backed read (FETCH/MOVE/CLOSE are then answered by the proxy).
// SCROLL cursors over several shards are refused with 0A000; WITH HOLD ones
// are materialized by the proxy (plan.DeclareCursor.Hold).

// DECLARE option bits (PostgreSQL's CURSOR_OPT_*).
const (
	cursorOptBinary = 0x0001
	cursorOptScroll = 0x0002
	cursorOptHold   = 0x0020
)

// declareInfo is what planning needs from DECLARE … CURSOR.
type declareInfo struct {
	name    string
	options int32
	query   string // the text of the cursor's query ("" if not found)
}

// declareOf reads a DECLARE statement; text is the statement's own text.
// The query's text is what follows the FOR that ends the cursor options
// (found with the scanner, so comments and strings cannot confuse it).
func declareOf(d *pg_query.DeclareCursorStmt, text string) *declareInfo {
	di := &declareInfo{name: d.Portalname, options: d.Options}
	sc, err := pg_query.Scan(text)
	if err != nil {
		return di
	}
	seenCursor := false
	for _, t := range sc.Tokens {
		switch t.Token {
		case pg_query.Token_CURSOR:
			seenCursor = true
		case pg_query.Token_FOR:
			if seenCursor {
				di.query = strings.TrimSpace(text[t.End:])
				return di
			}
		}
	}
	return di
}

// fetchOf reads FETCH/MOVE.
func fetchOf(f *pg_query.FetchStmt) *plan.Fetch {
	out := &plan.Fetch{Move: f.Ismove, Count: f.HowMany}
	if f.Direction == pg_query.FetchDirection_FETCH_FORWARD {
		switch {
		case f.HowMany == math.MaxInt64:
			out.Forward, out.All = true, true
		case f.HowMany > 0:
			out.Forward = true
		}
	}
	return out
}

// planDeclare plans DECLARE … CURSOR (see the comment at the top).
func (p *Planner) planDeclare(snap *topology.Snapshot, st *stmtInfo, b *binding, sql string, params *Params) (plan.Operator, error) {
	single, err := p.planRead(st, b, sql, params, true, false)
	if err == nil {
		return single, nil
	}
	d := st.declare
	if _, ok := err.(*plan.Unsupported); !ok || d.query == "" {
		return nil, err
	}
	inner, ierr := p.Analyze(d.query)
	if ierr != nil || len(inner.Statements) != 1 || inner.Statements[0].Kind != KindSelect {
		return nil, err
	}
	op, ierr := p.planStmt(snap, inner, inner.Statements[0].info, params)
	if ierr != nil {
		return nil, ierr
	}
	if sc, ok := op.(*plan.Scatter); ok && sc.Write {
		return nil, err
	}
	if _, ok := op.(*plan.Route); ok {
		return nil, err
	}
	if d.options&cursorOptScroll != 0 {
		return nil, unsupported("a SCROLL cursor over several shards is not supported (only forward FETCH is)",
			"declare the cursor without SCROLL (NO SCROLL) and fetch forward only")
	}
	return &plan.DeclareCursor{Name: d.name, Binary: d.options&cursorOptBinary != 0, Hold: d.options&cursorOptHold != 0, Query: op, SQL: sql}, nil
}
