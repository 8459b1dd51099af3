package sqlclass

import "strings"

// Access is what read/write splitting needs to know about a statement.
type Access uint8

const (
	// AccessWrite statements must run on the primary: writes, DDL,
	// locking reads, calls of functions not known to be read-only, and
	// anything this lexer cannot prove to be a plain read.
	AccessWrite Access = iota
	// AccessRead statements only read (SELECT, VALUES, TABLE, WITH
	// without data-modifying parts) and call only read-only functions:
	// a replica may answer them.
	AccessRead
	// AccessNeutral statements touch no data: transaction control, SET,
	// RESET, SHOW. They run wherever the session's connection is.
	AccessNeutral
)

var accessNames = [...]string{"write", "read", "neutral"}

func (a Access) String() string {
	if int(a) < len(accessNames) {
		return accessNames[a]
	}
	return "Access(?)"
}

// ReplicaAccess classifies a simple-query string (one or several
// statements) for read/write splitting. readOnlyFunc reports whether a
// function (lower-case unqualified name, or a quoted name as written) is
// read-only; nil allows only the built-in list (ReadOnlyBuiltin). A string
// is AccessRead only when every statement in it is; AccessNeutral only
// when every statement is; anything mixed is AccessWrite.
func ReplicaAccess(sql string, readOnlyFunc func(string) bool) Access {
	var buf [4]span
	spans := splitSpans(sql, buf[:0])
	if len(spans) == 0 {
		return AccessNeutral
	}
	first := statementAccess(sql[spans[0].start:spans[0].end], readOnlyFunc)
	for _, sp := range spans[1:] {
		if statementAccess(sql[sp.start:sp.end], readOnlyFunc) != first {
			return AccessWrite
		}
	}
	return first
}

// statementAccess classifies one statement's text.
func statementAccess(text string, readOnlyFunc func(string) bool) Access {
	p := parser{lx: lexer{s: text}}
	first := p.peek()
	if first.kind == tIdent {
		var w [16]byte
		switch string(lowerWord(&w, text[first.start:first.end])) {
		case "select", "values", "table", "with":
		case "copy":
			p.next()
			return copyAccess(&p, readOnlyFunc)
		case "explain":
			p.next()
			return explainAccess(&p, readOnlyFunc)
		case "begin", "start", "commit", "end", "rollback", "abort", "savepoint", "release", "show":
			return AccessNeutral
		case "set", "reset":
			if st := classify(text); st.Kind == Set || st.Kind == SetLocal || st.Kind == Reset || st.Kind == ResetAll {
				return AccessNeutral
			}
			return AccessWrite
		default:
			return AccessWrite
		}
	} else if !p.isPunct(first, '(') {
		return AccessWrite
	}
	var prev, prev2 token // the two significant tokens before t
	for t := p.next(); t.kind != tEOF; prev2, prev, t = prev, t, p.next() {
		switch t.kind {
		case tBadEnd:
			return AccessWrite
		case tIdent:
			var w [16]byte
			switch string(lowerWord(&w, text[t.start:t.end])) {
			case "insert", "update", "delete", "merge", "into", "share", "nowait", "copy", "call", "do", "lock", "execute":
				return AccessWrite
			case "for":
				// FOR UPDATE / NO KEY UPDATE / SHARE / KEY SHARE: a locking
				// read needs the primary (and takes row locks).
				if p.peekWord("update") || p.peekWord("share") || p.peekWord("no") || p.peekWord("key") {
					return AccessWrite
				}
			}
			if p.isPunct(p.peek(), '(') && !callKeyword(text[t.start:t.end]) && !castContext(&p, prev, prev2) {
				if !funcReadOnly(p.identName(t), readOnlyFunc) {
					return AccessWrite
				}
			}
		case tQIdent:
			if p.isPunct(p.peek(), '(') && !castContext(&p, prev, prev2) {
				if !funcReadOnly(p.identName(t), readOnlyFunc) {
					return AccessWrite
				}
			}
		}
	}
	return AccessRead
}

// copyAccess classifies COPY (its first token consumed): COPY table TO
// STDOUT, and COPY (query) TO STDOUT when the query is a read, are reads;
// COPY FROM, and COPY TO a server file or program, are writes.
func copyAccess(p *parser, readOnlyFunc func(string) bool) Access {
	t := p.next()
	if p.isPunct(t, '(') {
		inner, ok := p.skipParens(t)
		if !ok || statementAccess(inner, readOnlyFunc) != AccessRead {
			return AccessWrite
		}
	} else {
		if t.kind != tIdent && t.kind != tQIdent {
			return AccessWrite
		}
		for p.acceptPunct('.') { // schema.table
			if n := p.next(); n.kind != tIdent && n.kind != tQIdent {
				return AccessWrite
			}
		}
		if c := p.peek(); p.isPunct(c, '(') { // column list
			p.next()
			if _, ok := p.skipParens(c); !ok {
				return AccessWrite
			}
		}
	}
	if p.acceptWord("to") && p.acceptWord("stdout") {
		return AccessRead
	}
	return AccessWrite
}

// skipParens consumes the tokens after the opening parenthesis open up to
// its closing one and returns the text between them.
func (p *parser) skipParens(open token) (string, bool) {
	depth := 1
	for t := p.next(); t.kind != tEOF && t.kind != tBadEnd; t = p.next() {
		switch {
		case p.isPunct(t, '('):
			depth++
		case p.isPunct(t, ')'):
			depth--
			if depth == 0 {
				return p.lx.s[open.end:t.start], true
			}
		}
	}
	return "", false
}

// explainAccess classifies EXPLAIN (its first token consumed). EXPLAIN
// without ANALYZE only plans, which a replica can do for any statement
// PostgreSQL plans (SELECT, VALUES, TABLE, WITH, INSERT, UPDATE, DELETE,
// MERGE): it is a read. EXPLAIN ANALYZE runs the statement, so it is a
// read only when the statement is. Anything else (EXPLAIN EXECUTE of a
// prepared statement, EXPLAIN CREATE TABLE AS) is a write.
func explainAccess(p *parser, readOnlyFunc func(string) bool) Access {
	analyze := false
	if p.acceptPunct('(') {
		for {
			name := p.next()
			if name.kind != tIdent {
				return AccessWrite
			}
			on := true
			if v := p.peek(); !p.isPunct(v, ',') && !p.isPunct(v, ')') {
				p.next()
				var w [16]byte
				switch string(lowerWord(&w, strings.Trim(p.text(v), "'"))) {
				case "false", "off", "0", "no":
					on = false
				}
			}
			if p.isWord(name, "analyze") || p.isWord(name, "analyse") {
				analyze = on
			}
			if p.acceptPunct(')') {
				break
			}
			if !p.acceptPunct(',') {
				return AccessWrite
			}
		}
	} else {
		analyze = p.acceptWord("analyze", "analyse")
		p.acceptWord("verbose")
	}
	inner := p.rest()
	if analyze {
		if statementAccess(inner, readOnlyFunc) == AccessRead {
			return AccessRead
		}
		return AccessWrite
	}
	first := p.peek()
	if p.isPunct(first, '(') {
		return AccessRead
	}
	var w [16]byte
	switch string(lowerWord(&w, p.text(first))) {
	case "select", "values", "table", "with", "insert", "update", "delete", "merge":
		if first.kind == tIdent {
			return AccessRead
		}
	}
	return AccessWrite
}

// castContext reports whether an identifier followed by '(' is a type name
// with modifiers (x::numeric(10,2), CAST(x AS varchar(20))), not a call.
func castContext(p *parser, prev, prev2 token) bool {
	if prev.kind == tPunct && p.lx.s[prev.start] == ':' && prev2.kind == tPunct && p.lx.s[prev2.start] == ':' {
		return true
	}
	return p.isWord(prev, "as")
}

func funcReadOnly(name string, readOnlyFunc func(string) bool) bool {
	if ReadOnlyBuiltin(name) {
		return true
	}
	return readOnlyFunc != nil && readOnlyFunc(name)
}

// callKeyword reports whether a word followed by '(' is SQL syntax rather
// than a function call (IN (...), EXISTS (...), OVER (...), AS (...) ...).
func callKeyword(word string) bool {
	var w [16]byte
	_, ok := parenKeywords[string(lowerWord(&w, word))]
	return ok
}

var parenKeywords = map[string]struct{}{
	"in": {}, "exists": {}, "any": {}, "all": {}, "some": {}, "values": {}, "cast": {}, "coalesce": {},
	"nullif": {}, "greatest": {}, "least": {}, "row": {}, "array": {}, "over": {}, "filter": {},
	"within": {}, "using": {}, "on": {}, "and": {}, "or": {}, "not": {}, "select": {}, "where": {},
	"from": {}, "join": {}, "lateral": {}, "as": {}, "then": {}, "else": {}, "when": {}, "case": {},
	"between": {}, "like": {}, "ilike": {}, "by": {}, "distinct": {}, "is": {}, "interval": {},
	"extract": {}, "position": {}, "substring": {}, "trim": {}, "overlay": {}, "union": {},
	"intersect": {}, "except": {}, "limit": {}, "offset": {}, "having": {}, "with": {},
	"recursive": {}, "materialized": {}, "rows": {}, "range": {}, "groups": {}, "grouping": {},
	"sets": {}, "cube": {}, "rollup": {}, "escape": {}, "collate": {}, "zone": {}, "only": {},
	"fetch": {}, "first": {}, "next": {}, "return": {}, "returning": {}, "similar": {}, "to": {},
	"table": {}, "normalize": {}, "treat": {}, "xmlelement": {}, "xmlforest": {}, "unique": {},
	"numeric": {}, "decimal": {}, "varchar": {}, "char": {}, "character": {}, "bit": {}, "varying": {},
	"time": {}, "timestamp": {}, "float": {}, "precision": {}, "asc": {}, "desc": {}, "nulls": {},
	"order": {}, "group": {}, "partition": {}, "inner": {}, "left": {}, "right": {}, "full": {},
	"outer": {}, "cross": {}, "natural": {}, "if": {},
}

// ReadOnlyBuiltin reports whether name (lower case) is a built-in
// function known to neither write nor hold session state, so a SELECT
// calling it may run on a replica.
func ReadOnlyBuiltin(name string) bool {
	_, ok := readOnlyFuncs[name]
	return ok
}

var readOnlyFuncs = func() map[string]struct{} {
	m := map[string]struct{}{}
	for _, n := range []string{
		// aggregates and window functions
		"count", "sum", "avg", "min", "max", "array_agg", "string_agg", "bool_and", "bool_or", "every",
		"json_agg", "jsonb_agg", "json_object_agg", "jsonb_object_agg", "stddev", "stddev_pop",
		"stddev_samp", "variance", "var_pop", "var_samp", "percentile_cont", "percentile_disc", "mode",
		"bit_and", "bit_or", "corr", "covar_pop", "covar_samp", "any_value", "row_number", "rank",
		"dense_rank", "percent_rank", "cume_dist", "ntile", "lag", "lead", "first_value", "last_value",
		"nth_value",
		// math
		"abs", "ceil", "ceiling", "floor", "round", "trunc", "sign", "sqrt", "cbrt", "power", "pow",
		"exp", "ln", "log", "log10", "mod", "div", "pi", "degrees", "radians", "sin", "cos", "tan",
		"asin", "acos", "atan", "atan2", "random", "width_bucket", "scale", "gcd", "lcm",
		// strings
		"lower", "upper", "length", "char_length", "character_length", "octet_length", "bit_length",
		"substr", "left", "right", "lpad", "rpad", "ltrim", "rtrim", "btrim", "replace", "split_part",
		"strpos", "concat", "concat_ws", "format", "initcap", "repeat", "reverse", "translate", "md5",
		"sha224", "sha256", "sha384", "sha512", "encode", "decode", "to_hex", "ascii", "chr",
		"quote_ident", "quote_literal", "quote_nullable", "regexp_replace", "regexp_match",
		"regexp_matches", "regexp_split_to_array", "regexp_split_to_table", "regexp_like",
		"regexp_count", "starts_with", "string_to_array", "string_to_table", "array_to_string",
		"to_tsvector", "to_tsquery", "plainto_tsquery", "phraseto_tsquery", "websearch_to_tsquery",
		"ts_rank", "ts_rank_cd", "ts_headline", "setweight",
		// arrays and sets
		"array_length", "array_upper", "array_lower", "array_ndims", "array_dims", "cardinality", "unnest",
		"array_position", "array_positions", "array_append", "array_prepend", "array_cat",
		"array_remove", "array_replace", "generate_series", "generate_subscripts",
		// dates and times
		"now", "clock_timestamp", "statement_timestamp", "transaction_timestamp", "timeofday",
		"date_trunc", "date_part", "date_bin", "age", "make_date", "make_time", "make_timestamp",
		"make_timestamptz", "make_interval", "to_timestamp", "to_char", "to_date", "to_number",
		"justify_days", "justify_hours", "justify_interval", "isfinite", "date",
		// json
		"to_json", "to_jsonb", "row_to_json", "array_to_json", "json_build_object", "jsonb_build_object",
		"json_build_array", "jsonb_build_array", "json_object", "jsonb_object", "json_array_length",
		"jsonb_array_length", "json_extract_path", "jsonb_extract_path", "json_extract_path_text",
		"jsonb_extract_path_text", "jsonb_set", "jsonb_insert", "jsonb_pretty", "json_typeof",
		"jsonb_typeof", "jsonb_path_query", "jsonb_path_query_array", "jsonb_path_query_first",
		"jsonb_path_exists", "jsonb_path_match", "json_each", "jsonb_each", "json_each_text",
		"jsonb_each_text", "json_array_elements", "jsonb_array_elements", "json_array_elements_text",
		"jsonb_array_elements_text", "jsonb_strip_nulls", "json_strip_nulls", "jsonb_object_keys",
		"json_object_keys",
		// system information (answer the same, or truthfully, on a replica)
		"version", "current_database", "current_schema", "current_schemas", "current_setting",
		"inet_server_port", "inet_server_addr", "inet_client_addr", "inet_client_port",
		"pg_backend_pid", "pg_is_in_recovery", "pg_last_wal_replay_lsn", "pg_last_wal_receive_lsn",
		"pg_last_xact_replay_timestamp", "pg_postmaster_start_time", "pg_conf_load_time", "pg_typeof",
		"format_type", "pg_size_pretty", "pg_relation_size", "pg_total_relation_size", "pg_table_size",
		"pg_indexes_size", "pg_database_size", "obj_description", "col_description",
		"has_table_privilege", "has_schema_privilege", "has_column_privilege", "pg_get_indexdef",
		"pg_get_viewdef", "pg_get_constraintdef", "pg_get_userbyid", "pg_table_is_visible",
		"pg_encoding_to_char", "pg_get_expr", "gen_random_uuid", "hashtext", "hashint8extended",
		"hashtextextended", "uuid_hash_extended",
	} {
		m[n] = struct{}{}
	}
	return m
}()
