package sqlclass

import "strings"

// parser reads the significant tokens of one statement's text.
type parser struct {
	lx     lexer
	peeked bool
	pk     token
}

func (p *parser) next() token {
	if p.peeked {
		p.peeked = false
		return p.pk
	}
	return p.lx.nextSig()
}

func (p *parser) peek() token {
	if !p.peeked {
		p.pk = p.lx.nextSig()
		p.peeked = true
	}
	return p.pk
}

func (p *parser) text(t token) string { return p.lx.s[t.start:t.end] }

// isWord reports whether t is the unquoted keyword w (lower case).
func (p *parser) isWord(t token, w string) bool {
	return t.kind == tIdent && eqFold(p.text(t), w)
}

func (p *parser) peekWord(w string) bool { return p.isWord(p.peek(), w) }

// acceptWord consumes the next token if it is one of ws.
func (p *parser) acceptWord(ws ...string) bool {
	t := p.peek()
	for _, w := range ws {
		if p.isWord(t, w) {
			p.peeked = false
			return true
		}
	}
	return false
}

func (p *parser) isPunct(t token, c byte) bool {
	return t.kind == tPunct && p.lx.s[t.start] == c
}

func (p *parser) acceptPunct(c byte) bool {
	if p.isPunct(p.peek(), c) {
		p.peeked = false
		return true
	}
	return false
}

// rest returns the text from the next significant token to the end.
func (p *parser) rest() string {
	t := p.peek()
	if t.kind == tEOF {
		return ""
	}
	return p.lx.s[t.start:]
}

// identName normalizes an identifier token; other tokens give "".
func (p *parser) identName(t token) string {
	switch t.kind {
	case tIdent:
		return lowerASCII(p.text(t))
	case tQIdent:
		s := p.text(t)
		if s[0] != '"' { // U&"..."
			s = s[2:]
		}
		s = strings.TrimPrefix(s, `"`)
		s = strings.TrimSuffix(s, `"`)
		return strings.ReplaceAll(s, `""`, `"`)
	}
	return ""
}

// name reads one identifier.
func (p *parser) name() string { return p.identName(p.next()) }

// varName reads a possibly dotted name (a.b.c).
func (p *parser) varName() string {
	n := p.name()
	for n != "" && p.acceptPunct('.') {
		n += "." + p.name()
	}
	return n
}

// lowerASCII folds ASCII letters, returning s itself when nothing changes.
func lowerASCII(s string) string {
	for i := 0; i < len(s); i++ {
		if 'A' <= s[i] && s[i] <= 'Z' {
			b := []byte(s)
			for j := i; j < len(b); j++ {
				if 'A' <= b[j] && b[j] <= 'Z' {
					b[j] += 'a' - 'A'
				}
			}
			return string(b)
		}
	}
	return s
}

// txnOptions reads BEGIN/START TRANSACTION options after the optional
// noise words.
func (p *parser) txnOptions(st *Statement, noise ...string) {
	p.acceptWord(noise...)
	st.Value = p.rest()
	st.ReadOnly = p.hasReadOnly()
}

// hasReadOnly reports whether READ ONLY follows among the remaining tokens.
func (p *parser) hasReadOnly() bool {
	for t := p.next(); t.kind != tEOF; t = p.next() {
		if p.isWord(t, "read") && p.peekWord("only") {
			return true
		}
	}
	return false
}

// set classifies SET.
func (p *parser) set(st *Statement) {
	kind := Set
	switch {
	case p.acceptWord("local"):
		kind = SetLocal
	case p.acceptWord("session"):
		if p.acceptWord("characteristics") {
			// SET SESSION CHARACTERISTICS AS TRANSACTION ... sets the
			// default_transaction_* settings: session state.
			p.acceptWord("as")
			p.acceptWord("transaction")
			st.Kind = Set
			st.Name = "session_characteristics"
			st.Value = p.rest()
			return
		}
	}
	if kind == Set {
		switch {
		case p.acceptWord("transaction"):
			st.Kind = SetLocal
			st.Name = "transaction"
			st.Value = p.rest()
			st.ReadOnly = p.hasReadOnly()
			return
		case p.acceptWord("constraints"):
			st.Kind = SetLocal
			st.Name = "constraints"
			st.Value = p.rest()
			return
		}
	}
	p.setRest(st, kind)
}

// setRest reads "name {TO|=} value" and the special forms of SET.
func (p *parser) setRest(st *Statement, kind Kind) {
	st.Kind = kind
	special := ""
	switch {
	case p.peekWord("time"):
		p.next()
		if p.acceptWord("zone") {
			special = "timezone"
		} else {
			st.Kind = Other
			return
		}
	case p.peekWord("names"):
		p.next()
		special = "client_encoding"
	case p.peekWord("role"):
		p.next()
		special = "role"
	case p.peekWord("session"):
		p.next()
		if !p.acceptWord("authorization") {
			st.Kind = Other
			return
		}
		special = "session_authorization"
	case p.peekWord("authorization"):
		// After SET [LOCAL] SESSION (consumed by set).
		p.next()
		special = "session_authorization"
	case p.peekWord("xml"):
		p.next()
		if !p.acceptWord("option") {
			st.Kind = Other
			return
		}
		special = "xmloption"
	case p.peekWord("schema"):
		// SET SCHEMA 'x' is SET search_path TO 'x'.
		p.next()
		if t := p.peek(); t.kind == tString {
			special = "search_path"
		} else {
			st.Kind = Other
			return
		}
	}
	if special != "" {
		st.Name = special
	} else {
		st.Name = p.varName()
		if st.Name == "" {
			st.Kind = Other
			return
		}
		switch {
		case p.acceptWord("to"), p.acceptPunct('='):
		case p.peekWord("from"):
			// SET x FROM CURRENT keeps the current value.
			st.Kind = Other
			st.Name = ""
			return
		default:
			st.Kind = Other
			st.Name = ""
			return
		}
	}
	st.Value = p.rest()
	if kind == Set && p.valueIsDefault(st.Name) {
		st.Kind = Reset
		st.Value = ""
	}
}

// valueIsDefault reports whether the remaining value is DEFAULT (or NONE
// for ROLE, LOCAL for time zone), which makes the SET a RESET.
func (p *parser) valueIsDefault(name string) bool {
	t := p.next()
	if p.peek().kind != tEOF {
		return false
	}
	switch {
	case p.isWord(t, "default"):
		return true
	case name == "role" && p.isWord(t, "none"):
		return true
	case name == "timezone" && p.isWord(t, "local"):
		return true
	}
	return false
}

// reset classifies RESET.
func (p *parser) reset(st *Statement) {
	st.Kind = Reset
	switch {
	case p.acceptWord("all"):
		st.Kind = ResetAll
	case p.peekWord("time"):
		p.next()
		p.acceptWord("zone")
		st.Name = "timezone"
	case p.peekWord("session"):
		p.next()
		p.acceptWord("authorization")
		st.Name = "session_authorization"
	case p.peekWord("transaction"):
		// RESET TRANSACTION ISOLATION LEVEL: transaction scope.
		st.Kind = SetLocal
		st.Name = "transaction_isolation"
	default:
		st.Name = p.varName()
		if st.Name == "" {
			st.Kind = Other
		}
	}
}

// prepare classifies PREPARE name [(types)] AS body; PREPARE TRANSACTION
// 'gid' is Other.
func (p *parser) prepare(st *Statement) {
	t := p.next()
	if p.isWord(t, "transaction") && p.peek().kind == tString {
		return
	}
	name := p.identName(t)
	if name == "" {
		return
	}
	if p.acceptPunct('(') {
		depth := 1
		for depth > 0 {
			t := p.next()
			switch {
			case t.kind == tEOF:
				return
			case p.isPunct(t, '('):
				depth++
			case p.isPunct(t, ')'):
				depth--
			}
		}
	}
	as := p.next()
	if !p.isWord(as, "as") {
		return
	}
	st.Kind = Prepare
	st.Name = name
	st.Body = strings.TrimLeft(p.lx.s[as.end:], " \t\r\n\f\v")
}

// create classifies CREATE: temporary objects are CreateTemp.
func (p *parser) create(st *Statement) {
	if p.acceptWord("or") {
		p.acceptWord("replace")
	}
	p.acceptWord("global", "local")
	if p.acceptWord("temp", "temporary") {
		st.Kind = CreateTemp
		return
	}
	// An object created in (or, for views, referring to) pg_temp is
	// temporary too.
	for t := p.next(); t.kind != tEOF; t = p.next() {
		if (t.kind == tIdent || t.kind == tQIdent) && p.identName(t) == "pg_temp" && p.isPunct(p.peek(), '.') {
			st.Kind = CreateTemp
			return
		}
	}
}

// declare classifies DECLARE name ... [WITH HOLD] FOR query.
func (p *parser) declare(st *Statement) {
	st.Name = p.name()
	if st.Name == "" {
		return
	}
	st.Kind = DeclareCursor
	for t := p.next(); t.kind != tEOF && !p.isWord(t, "for"); t = p.next() {
		if p.isWord(t, "with") && p.peekWord("hold") {
			st.Kind = DeclareHold
			return
		}
	}
}

// copy classifies COPY: the first FROM or TO outside parentheses gives the
// direction.
func (p *parser) copy(st *Statement) {
	st.Kind = Copy
	depth := 0
	for t := p.next(); t.kind != tEOF; t = p.next() {
		switch {
		case p.isPunct(t, '('):
			depth++
		case p.isPunct(t, ')'):
			depth--
		case depth == 0 && p.isWord(t, "from"):
			st.CopyFrom = true
			return
		case depth == 0 && p.isWord(t, "to"):
			return
		}
	}
}

// Advisory lock functions, by effect.
func lockFunc(name string) Kind {
	switch name {
	case "pg_advisory_lock", "pg_advisory_lock_shared", "pg_try_advisory_lock", "pg_try_advisory_lock_shared":
		return AdvisoryLock
	case "pg_advisory_unlock", "pg_advisory_unlock_shared", "pg_advisory_unlock_all":
		return AdvisoryUnlock
	}
	return Other
}

// scanCalls looks through an ordinary statement for calls of advisory lock
// functions and set_config. It is a no-op (and allocation-free) unless the
// text mentions "advisory" or "set_config".
func (p *parser) scanCalls(st *Statement, m mentions) {
	text := p.lx.s
	adv, cfg := m.advisory, m.setConfig
	if !adv && !cfg {
		return
	}
	q := parser{lx: lexer{s: text}}
	lock, unlock := false, false
	configs := 0
	var cname, cvalue string
	local, literal := false, true
	for t := q.next(); t.kind != tEOF; t = q.next() {
		if t.kind != tIdent && t.kind != tQIdent {
			continue
		}
		n := q.identName(t)
		if adv {
			switch lockFunc(n) {
			case AdvisoryLock:
				lock = true
			case AdvisoryUnlock:
				unlock = true
			}
		}
		if cfg && n == "set_config" && q.isPunct(q.peek(), '(') {
			q.next()
			configs++
			var ok bool
			cname, cvalue, local, ok = q.setConfigArgs()
			literal = literal && ok
		}
	}
	switch {
	case lock:
		st.Kind = AdvisoryLock
	case configs == 1 && literal:
		st.Kind = SetConfig
		if local {
			st.Kind = SetLocal
		}
		st.Name = lowerASCII(cname)
		st.Value = cvalue
	case configs > 0:
		st.Kind = SetConfigDynamic
	case unlock:
		st.Kind = AdvisoryUnlock
	}
}

// setConfigArgs reads "'name', 'value', bool)" after "set_config(". ok is
// false unless all three are literals.
func (p *parser) setConfigArgs() (name, value string, local, ok bool) {
	n, ok1 := p.literal()
	c1 := p.acceptPunct(',')
	v, ok2 := p.literal()
	c2 := p.acceptPunct(',')
	t := p.next()
	isLocal, ok3 := false, true
	switch {
	case p.isWord(t, "true"):
		isLocal = true
	case p.isWord(t, "false"):
	case t.kind == tString:
		s, ok := p.stringValue(t)
		if !ok {
			ok3 = false
			break
		}
		switch strings.ToLower(strings.TrimSpace(s)) {
		case "t", "tr", "tru", "true", "y", "ye", "yes", "on", "1":
			isLocal = true
		case "f", "fa", "fal", "fals", "false", "n", "no", "of", "off", "0":
		default:
			ok3 = false
		}
	default:
		ok3 = false
	}
	ok = ok1 && ok2 && ok3 && c1 && c2 && p.isPunct(p.peek(), ')')
	return n, v, isLocal, ok
}

// literal reads a string literal and returns its value.
func (p *parser) literal() (string, bool) {
	t := p.next()
	if t.kind != tString {
		return "", false
	}
	return p.stringValue(t)
}

// stringValue decodes a string token: '...' and $tag$...$tag$ exactly,
// E'...' only without backslashes (else ok is false).
func (p *parser) stringValue(t token) (string, bool) {
	s := p.text(t)
	switch s[0] {
	case '\'':
		if len(s) < 2 || s[len(s)-1] != '\'' {
			return "", false
		}
		return strings.ReplaceAll(s[1:len(s)-1], "''", "'"), true
	case '$':
		end := strings.IndexByte(s[1:], '$') + 2
		tag := s[:end]
		if len(s) < 2*len(tag) || !strings.HasSuffix(s, tag) {
			return "", false
		}
		return s[end : len(s)-len(tag)], true
	case 'e', 'E':
		body := s[1:]
		if strings.IndexByte(body, '\\') >= 0 || len(body) < 2 || body[len(body)-1] != '\'' {
			return "", false
		}
		return strings.ReplaceAll(body[1:len(body)-1], "''", "'"), true
	}
	return "", false
}

// selectIntoTemp reports whether a SELECT (possibly after WITH) has
// INTO [GLOBAL|LOCAL] TEMP|TEMPORARY or INTO pg_temp.x at the top level.
func (p *parser) selectIntoTemp() bool {
	depth := 0
	verb := ""
	for t := p.next(); t.kind != tEOF; t = p.next() {
		switch {
		case p.isPunct(t, '('):
			depth++
			continue
		case p.isPunct(t, ')'):
			depth--
			continue
		}
		if depth != 0 || t.kind != tIdent {
			continue
		}
		if verb == "" {
			for _, v := range [...]string{"select", "insert", "update", "delete", "merge", "values", "table"} {
				if p.isWord(t, v) {
					verb = v
					break
				}
			}
			if verb != "" && verb != "select" {
				return false
			}
			continue
		}
		if p.isWord(t, "into") {
			p.acceptWord("global", "local")
			if p.acceptWord("temp", "temporary") {
				return true
			}
			n := p.next()
			return (n.kind == tIdent || n.kind == tQIdent) && p.identName(n) == "pg_temp" && p.isPunct(p.peek(), '.')
		}
	}
	return false
}

// RewritePreparedName returns stmt.Text with the prepared-statement name of
// a Prepare, Execute or Deallocate statement replaced by newName, which is
// inserted verbatim (it must be a valid identifier as written, quoted if
// need be). For other kinds it returns stmt.Text unchanged.
func RewritePreparedName(stmt Statement, newName string) string {
	switch stmt.Kind {
	case Prepare, Execute, Deallocate:
	default:
		return stmt.Text
	}
	p := parser{lx: lexer{s: stmt.Text}}
	p.next() // PREPARE / EXECUTE / DEALLOCATE
	if stmt.Kind == Deallocate && p.peekWord("prepare") {
		p.next()
		if p.peek().kind == tEOF { // DEALLOCATE prepare
			p.lx.pos, p.peeked = 0, false
			p.next()
		}
	}
	t := p.next()
	if t.kind != tIdent && t.kind != tQIdent {
		return stmt.Text
	}
	return stmt.Text[:t.start] + newName + stmt.Text[t.end:]
}

// mentions records which trigger words a statement's text contains
// anywhere (strings and comments included), ignoring ASCII case.
type mentions struct{ advisory, setConfig, into bool }

// scanMentions finds the trigger words in one pass.
func scanMentions(s string) mentions {
	var m mentions
	for i := 0; i < len(s); i++ {
		switch s[i] | 0x20 {
		case 'a':
			if !m.advisory && i+8 <= len(s) && eqFold(s[i:i+8], "advisory") {
				m.advisory = true
			}
		case 's':
			if !m.setConfig && i+10 <= len(s) && eqFold(s[i:i+10], "set_config") {
				m.setConfig = true
			}
		case 'i':
			if !m.into && i+4 <= len(s) && eqFold(s[i:i+4], "into") {
				m.into = true
			}
		}
	}
	return m
}
