package sqlclass

import "strings"

// tokKind is the lexical class of a token.
type tokKind uint8

const (
	tEOF     tokKind = iota
	tComment         // -- line comment or a terminated /* */ comment
	tIdent           // unquoted identifier or keyword
	tQIdent          // "quoted identifier" (also U&"...")
	tString          // '...', E'...', $tag$...$tag$ (also unterminated, to the end)
	tNumber
	tParam  // $1
	tPunct  // any other single byte: ( ) , ; = . * etc.
	tBadEnd // unterminated /* comment or quoted identifier: runs to the end
)

type token struct {
	kind       tokKind
	start, end int
}

// lexer walks SQL text the way PostgreSQL's scanner delimits tokens; it
// only finds token boundaries and never allocates.
type lexer struct {
	s   string
	pos int
}

func isSpace(c byte) bool {
	return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v'
}

func isIdentStart(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || c == '_' || c >= 0x80
}

func isIdentCont(c byte) bool {
	return isIdentStart(c) || '0' <= c && c <= '9' || c == '$'
}

func isDigit(c byte) bool { return '0' <= c && c <= '9' }

// next returns the next token, comments included.
func (lx *lexer) next() token {
	s := lx.s
	i := lx.pos
	for i < len(s) && isSpace(s[i]) {
		i++
	}
	if i >= len(s) {
		lx.pos = i
		return token{kind: tEOF, start: i, end: i}
	}
	start := i
	c := s[i]
	kind := tPunct
	switch {
	case c == '-' && i+1 < len(s) && s[i+1] == '-':
		kind = tComment
		if j := strings.IndexByte(s[i:], '\n'); j >= 0 {
			i += j + 1
		} else {
			i = len(s)
		}
	case c == '/' && i+1 < len(s) && s[i+1] == '*':
		kind = tComment
		depth := 0
		for {
			if i+1 >= len(s) {
				i = len(s)
				kind = tBadEnd
				break
			}
			if s[i] == '/' && s[i+1] == '*' {
				depth++
				i += 2
			} else if s[i] == '*' && s[i+1] == '/' {
				depth--
				i += 2
				if depth == 0 {
					break
				}
			} else {
				i++
			}
		}
	case c == '\'':
		kind = tString
		i = skipQuoted(s, i+1, '\'', false)
	case c == '"':
		kind = tQIdent
		i = skipQuoted(s, i+1, '"', false)
		if i == len(s) && (i-start < 2 || s[i-1] != '"') {
			kind = tBadEnd
		}
	case c == '$':
		i++
		if i < len(s) && isDigit(s[i]) {
			kind = tParam
			for i < len(s) && isDigit(s[i]) {
				i++
			}
			break
		}
		// Dollar quote: $$ or $tag$ where tag is an identifier without '$'.
		j := i
		if j < len(s) && isIdentStart(s[j]) {
			j++
			for j < len(s) && isIdentCont(s[j]) && s[j] != '$' {
				j++
			}
		}
		if j < len(s) && s[j] == '$' {
			kind = tString
			tag := s[start : j+1]
			if k := strings.Index(s[j+1:], tag); k >= 0 {
				i = j + 1 + k + len(tag)
			} else {
				i = len(s)
			}
		}
	case isIdentStart(c):
		i++
		for i < len(s) && isIdentCont(s[i]) {
			i++
		}
		kind = tIdent
		if i-start == 1 && i < len(s) {
			switch {
			case (c == 'e' || c == 'E') && s[i] == '\'':
				kind = tString
				i = skipQuoted(s, i+1, '\'', true)
			case (c == 'u' || c == 'U') && s[i] == '&' && i+1 < len(s) && s[i+1] == '"':
				kind = tQIdent
				i = skipQuoted(s, i+2, '"', false)
			}
		}
	case isDigit(c) || c == '.' && i+1 < len(s) && isDigit(s[i+1]):
		kind = tNumber
		i++
		for i < len(s) {
			d := s[i]
			if isDigit(d) || d == '.' || d == '_' || 'a' <= d && d <= 'z' || 'A' <= d && d <= 'Z' {
				i++
			} else if (d == '+' || d == '-') && (s[i-1] == 'e' || s[i-1] == 'E') && i+1 < len(s) && isDigit(s[i+1]) {
				i++
			} else {
				break
			}
		}
	default:
		i++
	}
	lx.pos = i
	return token{kind: kind, start: start, end: i}
}

// nextSig returns the next token that is not a comment.
func (lx *lexer) nextSig() token {
	for {
		t := lx.next()
		if t.kind != tComment {
			return t
		}
	}
}

// skipQuoted returns the index after the closing quote q of a literal whose
// body starts at i; a doubled quote is an escaped quote, and with
// backslash a backslash escapes the next byte. Unterminated: len(s).
func skipQuoted(s string, i int, q byte, backslash bool) int {
	for i < len(s) {
		c := s[i]
		switch {
		case c == q:
			if i+1 < len(s) && s[i+1] == q {
				i += 2
				continue
			}
			return i + 1
		case c == '\\' && backslash:
			i += 2
			continue
		}
		i++
	}
	return len(s)
}

// span is a statement's extent in the input.
type span struct{ start, end int }

// splitSpans appends the extents of the statements in sql to dst. A
// statement runs from its first token (leading comments included) to the end
// of its last non-comment token; statements holding only comments are
// dropped. Semicolons split only outside parentheses and outside the
// BEGIN ... END body of CREATE FUNCTION/PROCEDURE (as psql splits).
func splitSpans(sql string, dst []span) []span {
	if simple(sql) {
		start, end := 0, len(sql)
		for start < end && isSpace(sql[start]) {
			start++
		}
		for end > start && isSpace(sql[end-1]) {
			end--
		}
		if start < end {
			dst = append(dst, span{start, end})
		}
		return dst
	}
	lx := lexer{s: sql}
	start, end := -1, -1 // first token, end of last significant token
	depth := 0           // parentheses
	var words [4]byte    // first letters of the leading words, for CREATE [OR REPLACE] FUNCTION|PROCEDURE
	nwords := 0
	beginDepth := 0
	for {
		t := lx.next()
		if t.kind == tEOF {
			break
		}
		if t.kind == tPunct {
			switch sql[t.start] {
			case ';':
				if depth == 0 && beginDepth == 0 {
					if end >= 0 {
						dst = append(dst, span{start, end})
					}
					start, end, nwords, beginDepth = -1, -1, 0, 0
					continue
				}
			case '(':
				depth++
			case ')':
				if depth > 0 {
					depth--
				}
			}
		}
		if start < 0 {
			start = t.start
		}
		if t.kind == tComment {
			continue
		}
		end = t.end
		if t.kind != tIdent {
			continue
		}
		w := sql[t.start:t.end]
		if nwords < len(words) {
			var f byte
			switch {
			case eqFold(w, "create"), eqFold(w, "function"), eqFold(w, "procedure"), eqFold(w, "or"), eqFold(w, "replace"):
				f = w[0] | 0x20
			}
			words[nwords] = f
		}
		nwords++
		if depth == 0 && words[0] == 'c' && (words[1] == 'f' || words[1] == 'p' ||
			words[1] == 'o' && words[2] == 'r' && (words[3] == 'f' || words[3] == 'p')) {
			switch {
			case eqFold(w, "begin"):
				beginDepth++
			case eqFold(w, "case"):
				if beginDepth > 0 {
					beginDepth++
				}
			case eqFold(w, "end"):
				if beginDepth > 0 {
					beginDepth--
				}
			}
		}
	}
	if end >= 0 {
		dst = append(dst, span{start, end})
	}
	return dst
}

// eqFold reports whether s equals the lower-case ASCII word w, ignoring
// ASCII case.
func eqFold(s, w string) bool {
	if len(s) != len(w) {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != w[i] {
			return false
		}
	}
	return true
}

// simple reports whether sql has no quotes, comments, dollar quotes or
// semicolons, so it is one statement (or none) whose extent is sql without
// surrounding white space: the common case, decided in one cheap pass.
func simple(sql string) bool {
	for i := 0; i < len(sql); i++ {
		switch sql[i] {
		case ';', '\'', '"':
			return false
		case '$':
			if i+1 >= len(sql) || !isDigit(sql[i+1]) {
				return false
			}
		case '-':
			if i+1 < len(sql) && sql[i+1] == '-' {
				return false
			}
		case '/':
			if i+1 < len(sql) && sql[i+1] == '*' {
				return false
			}
		}
	}
	return true
}
