package planner

import (
	"strings"

	pg_query "github.com/pganalyze/pg_query_go/v6"

	"github.com/shardproxy/shardproxy/planner/plan"
)

// COPY (query) TO STDOUT whose query needs more than concatenating the
// shards' output (ORDER BY, LIMIT, aggregates, DISTINCT, windows over
// shards): the query is planned as the SELECT it is and the proxy writes
// its merged rows as COPY data itself (plan.CopyOut).

// copyQueryText returns the query of COPY (query) TO …: the text between
// the parenthesis after COPY and the one that closes it ("" if not found).
func copyQueryText(text string) string {
	sc, err := pg_query.Scan(text)
	if err != nil {
		return ""
	}
	depth, start := 0, -1
	for _, t := range sc.Tokens {
		switch t.Token {
		case pg_query.Token_ASCII_40:
			if depth == 0 && start < 0 {
				start = int(t.End)
			}
			depth++
		case pg_query.Token_ASCII_41:
			depth--
			if depth == 0 && start >= 0 {
				return strings.TrimSpace(text[start:t.Start])
			}
		}
	}
	return ""
}

// planCopyOut plans a COPY (query) TO STDOUT the shards cannot answer by
// concatenation; refusal is the COPY's own planning error, returned when
// the query cannot be run through the proxy either.
func (p *Planner) planCopyOut(b *binding, ci *copyInfo, params *Params, refusal error) (plan.Operator, error) {
	if _, ok := refusal.(*plan.Unsupported); !ok || ci.query == "" || ci.from || !ci.stdio ||
		(ci.format != "text" && ci.format != "csv") {
		return nil, refusal
	}
	if ci.otherOpts {
		return nil, unsupported("COPY (query) TO over several shards with options other than FORMAT, DELIMITER, NULL, HEADER, QUOTE and ESCAPE is not supported",
			"drop the other options, or add a condition on the distribution key that selects one shard")
	}
	inner, err := p.Analyze(ci.query)
	if err != nil || len(inner.Statements) != 1 || inner.Statements[0].Kind != KindSelect {
		return nil, refusal
	}
	op, err := p.planSingle(b.snap, inner, params)
	if err != nil {
		return nil, err // the query's own refusal says what to change
	}
	if sc, ok := op.(*plan.Scatter); ok && sc.Write {
		return nil, refusal
	}
	return &plan.CopyOut{Query: op, Format: ci.format, Delimiter: ci.delim, Quote: ci.quote, Escape: ci.escape,
		Null: ci.null, Header: ci.header}, nil
}
