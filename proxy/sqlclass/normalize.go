package sqlclass

import "strconv"

// Type OIDs of the numeric literals NormalizeNumbers replaces: the types
// PostgreSQL gives the same literals in SQL text.
const (
	OIDInt4    = 23
	OIDInt8    = 20
	OIDNumeric = 1700
)

// Literal is one numeric literal NormalizeNumbers took out of a statement:
// where its text is in the statement (sql[Start:End], a valid input for
// its type) and its type OID.
type Literal struct {
	Start, End int
	OID        uint32
}

// maxIdentLen is PostgreSQL's NAMEDATALEN-1: a longer identifier is
// truncated with a NOTICE while the statement is parsed, which a prepared
// statement would raise only once per server connection.
const maxIdentLen = 63

// maxLiterals bounds the parameters of one normalized statement; a
// statement with more numbers is left alone.
const maxLiterals = 100

// NormalizeNumbers replaces every numeric literal of sql with a parameter
// ($1, $2, … in order) and returns the new text appended to dst and the
// literals appended to lits. Each literal gets the type PostgreSQL gives
// the same token in SQL text (an integer that fits int4 is int4, a larger
// one int8 and beyond that numeric; one with a point or an exponent
// numeric), so the statement prepared with those parameter types resolves
// every operator and function the same way as the text with the literal.
// String literals stay in the text: an unknown-typed parameter does not
// always resolve like an unknown-typed literal.
//
// ok is false, and sql must be sent as it is, when the text has anything
// the replacement could change: a '$' (parameters, dollar quotes,
// identifiers with '$'), a number glued to letters, the two integers
// whose negation PostgreSQL types differently from the negated parameter
// (2147483648 and 9223372036854775808), more than 100 numbers, an
// identifier longer than 63 bytes (PostgreSQL truncates it with a notice
// at each parse), or an unterminated comment or quote. It is a lexical step only: whether the
// parameters stand where a constant means something else (ORDER BY 1,
// varchar(10)) is for a parser to decide on the result.
func NormalizeNumbers(sql string, dst []byte, lits []Literal) ([]byte, []Literal, bool) {
	lx := lexer{s: sql}
	last := 0
	for {
		t := lx.next()
		switch t.kind {
		case tEOF:
			return append(dst, sql[last:]...), lits, true
		case tParam, tBadEnd:
			return dst, lits, false
		case tString:
			if sql[t.start] == '$' || (t.end > t.start && sql[t.end-1] != '\'') {
				return dst, lits, false // dollar quote, or an unterminated string
			}
		case tQIdent:
			if t.end-t.start > maxIdentLen+2 {
				return dst, lits, false
			}
		case tIdent:
			if t.end-t.start > maxIdentLen {
				return dst, lits, false
			}
			for i := t.start; i < t.end; i++ {
				if sql[i] == '$' {
					return dst, lits, false
				}
			}
		case tPunct:
			if sql[t.start] == '$' {
				return dst, lits, false
			}
		case tNumber:
			oid, ok := literalType(sql[t.start:t.end])
			if !ok || len(lits) == maxLiterals {
				return dst, lits, false
			}
			lits = append(lits, Literal{Start: t.start, End: t.end, OID: oid})
			dst = append(dst, sql[last:t.start]...)
			dst = append(dst, '$')
			dst = strconv.AppendInt(dst, int64(len(lits)), 10)
			last = t.end
		}
	}
}

// literalType returns the type PostgreSQL 15 gives a numeric token:
// digits [ '.' digits ] [ e [+-] digits ] (also ".5" and "5."). Tokens
// with letters, underscores or other shapes are refused.
func literalType(tok string) (uint32, bool) {
	i, digits, point, exp := 0, 0, false, false
	for i < len(tok) && isDigit(tok[i]) {
		i++
		digits++
	}
	if i < len(tok) && tok[i] == '.' {
		point = true
		i++
		for i < len(tok) && isDigit(tok[i]) {
			i++
			digits++
		}
	}
	if digits == 0 {
		return 0, false
	}
	if i < len(tok) && (tok[i] == 'e' || tok[i] == 'E') {
		exp = true
		i++
		if i < len(tok) && (tok[i] == '+' || tok[i] == '-') {
			i++
		}
		n := 0
		for i < len(tok) && isDigit(tok[i]) {
			i++
			n++
		}
		if n == 0 {
			return 0, false
		}
	}
	if i != len(tok) {
		return 0, false
	}
	if point || exp {
		return OIDNumeric, true
	}
	// PostgreSQL folds a minus sign into the literal: -2147483648 is int4
	// and -9223372036854775808 int8, while the parameter would be int8 and
	// numeric. Refuse those two so the negation cannot change the type.
	switch trimZeros(tok) {
	case "2147483648", "9223372036854775808":
		return 0, false
	}
	if v, err := strconv.ParseInt(tok, 10, 64); err == nil {
		if v <= 1<<31-1 {
			return OIDInt4, true
		}
		return OIDInt8, true
	}
	return OIDNumeric, true
}

func trimZeros(s string) string {
	for len(s) > 1 && s[0] == '0' {
		s = s[1:]
	}
	return s
}
