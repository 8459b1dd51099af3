package sqlclass

import (
	"strconv"
	"strings"
)

// Kind is what a statement means to the pooler.
type Kind uint8

// Statement kinds. Name, Value and Body are set as each comment says and
// empty otherwise.
const (
	Other          Kind = iota
	Begin               // BEGIN / START TRANSACTION (any options; Value = the options text, ReadOnly set for READ ONLY)
	Commit              // COMMIT / END (also AND CHAIN); COMMIT PREPARED is Other
	Rollback            // ROLLBACK / ABORT (also AND CHAIN); ROLLBACK PREPARED is Other
	Savepoint           // SAVEPOINT / RELEASE [SAVEPOINT] / ROLLBACK [WORK|TRANSACTION] TO [SAVEPOINT] — Name = the savepoint
	Set                 // session-scope SET: Name, Value = the value text ("'UTC'", "a, b")
	SetLocal            // SET LOCAL, SET TRANSACTION, SET CONSTRAINTS, set_config(..., true): transaction scope — Name
	Reset               // RESET name, SET name TO DEFAULT, SET ROLE NONE, SET SESSION AUTHORIZATION DEFAULT — Name
	ResetAll            // RESET ALL
	Discard             // DISCARD ALL|PLANS|SEQUENCES|TEMP — Name = which, lower case ("temp" for TEMPORARY)
	Prepare             // PREPARE name [(types)] AS body — Name, Body = the text after AS
	Execute             // EXECUTE name [(args)] — Name
	Deallocate          // DEALLOCATE [PREPARE] name — Name
	DeallocateAll       // DEALLOCATE [PREPARE] ALL
	Listen              // LISTEN channel — Name
	Unlisten            // UNLISTEN channel — Name
	UnlistenAll         // UNLISTEN *
	CreateTemp          // creates a temporary object: CREATE TEMP ..., CREATE ... pg_temp.x, SELECT ... INTO TEMP
	DeclareHold         // DECLARE name ... WITH HOLD ... — Name
	DeclareCursor       // DECLARE name ... without WITH HOLD — Name
	CloseCursor         // CLOSE name | CLOSE ALL (Name "")
	AdvisoryLock        // calls pg_[try_]advisory_lock[_shared] (session level; the _xact_ ones are Other)
	AdvisoryUnlock      // calls pg_advisory_unlock[_shared|_all] (and no lock function)
	SetConfig           // SELECT set_config('name', 'value', false) — Name (lower case), Value (the literal's value)
	Copy                // COPY ...; CopyFrom says FROM (STDIN, file or program) vs TO
	Show                // SHOW name — Name (SHOW ALL: "all")

	// SetConfigDynamic is a statement calling set_config whose arguments
	// are not all literals (or that calls it more than once): it changes
	// session state the pooler cannot know, so the session should be
	// pinned.
	SetConfigDynamic
)

var kindNames = [...]string{"Other", "Begin", "Commit", "Rollback", "Savepoint", "Set", "SetLocal", "Reset",
	"ResetAll", "Discard", "Prepare", "Execute", "Deallocate", "DeallocateAll", "Listen", "Unlisten",
	"UnlistenAll", "CreateTemp", "DeclareHold", "DeclareCursor", "CloseCursor", "AdvisoryLock",
	"AdvisoryUnlock", "SetConfig", "Copy", "Show", "SetConfigDynamic"}

func (k Kind) String() string {
	if int(k) < len(kindNames) {
		return kindNames[k]
	}
	return "Kind(" + strconv.Itoa(int(k)) + ")"
}

// Statement is one classified statement. Its strings are substrings of
// (or, for folded names, derived from) the input; it holds no other state.
type Statement struct {
	Kind Kind
	// Text is the statement's own text: from its first token (leading
	// comments included) to its last non-comment token, without the ';'.
	Text string
	// Name is normalized: unquoted identifiers folded to lower case,
	// quoted ones as written (without quotes), dotted names joined by '.'.
	Name     string
	Value    string
	Body     string
	CopyFrom bool
	ReadOnly bool // Begin / SetLocal "transaction" with READ ONLY
}

// Split splits a simple-query string into statements, honoring '…' (”
// escapes), E'…' (backslash escapes), "…" identifiers, $tag$…$tag$ dollar
// quotes, -- and nested /* */ comments. Like psql it does not split inside
// parentheses or inside the BEGIN … END body of CREATE FUNCTION/PROCEDURE
// (PostgreSQL rejects the whole string in the first case and keeps the body
// in the second). Each piece is a substring of sql as Statement.Text
// describes; statements holding only comments are dropped.
//
// Strings are lexed as with standard_conforming_strings on (the default
// since PostgreSQL 9.1): backslashes escape only in E'…'.
func Split(sql string) []string {
	var buf [8]span
	spans := splitSpans(sql, buf[:0])
	if len(spans) == 0 {
		return nil
	}
	out := make([]string, len(spans))
	for i, sp := range spans {
		out[i] = sql[sp.start:sp.end]
	}
	return out
}

// Classify returns one Statement per statement of sql, in order (see
// Split). For one ordinary statement it allocates only the result slice.
func Classify(sql string) []Statement {
	var buf [4]span
	spans := splitSpans(sql, buf[:0])
	if len(spans) == 0 {
		return nil
	}
	out := make([]Statement, len(spans))
	for i, sp := range spans {
		out[i] = classify(sql[sp.start:sp.end])
	}
	return out
}

// ClassifyOne classifies text known to hold one statement (the query of an
// extended-protocol Parse). If it holds several, the first counts; if none,
// the result is Kind Other with empty Text. It does not allocate for
// ordinary statements.
func ClassifyOne(sql string) Statement {
	var buf [2]span
	spans := splitSpans(sql, buf[:0])
	if len(spans) == 0 {
		return Statement{}
	}
	return classify(sql[spans[0].start:spans[0].end])
}

// classify classifies one statement's text (as produced by splitSpans).
func classify(text string) Statement {
	st := Statement{Text: text}
	p := parser{lx: lexer{s: text}}
	first := p.next()
	if first.kind != tIdent {
		// "(SELECT ...)", "VALUES" in parentheses, garbage: only scans.
		p.scanCalls(&st, scanMentions(text))
		return st
	}
	var w [16]byte
	switch string(lowerWord(&w, text[first.start:first.end])) {
	case "begin":
		st.Kind = Begin
		p.txnOptions(&st, "work", "transaction")
	case "start":
		if p.peekWord("transaction") {
			st.Kind = Begin
			p.txnOptions(&st, "transaction")
		}
	case "commit", "end":
		st.Kind = Commit
		if p.peekWord("prepared") {
			st.Kind = Other
		}
	case "abort":
		st.Kind = Rollback
	case "rollback":
		st.Kind = Rollback
		p.acceptWord("work", "transaction")
		switch {
		case p.peekWord("prepared"):
			st.Kind = Other
		case p.acceptWord("to"):
			st.Kind = Savepoint
			p.acceptWord("savepoint")
			st.Name = p.name()
		}
	case "savepoint":
		st.Kind = Savepoint
		st.Name = p.name()
	case "release":
		st.Kind = Savepoint
		p.acceptWord("savepoint")
		st.Name = p.name()
	case "set":
		p.set(&st)
	case "reset":
		p.reset(&st)
	case "discard":
		t := p.next()
		if t.kind == tIdent {
			st.Kind = Discard
			st.Name = strings.ToLower(text[t.start:t.end])
			if st.Name == "temporary" {
				st.Name = "temp"
			}
		}
	case "prepare":
		p.prepare(&st)
	case "execute":
		st.Kind = Execute
		st.Name = p.name()
	case "deallocate":
		st.Kind = Deallocate
		if p.acceptWord("prepare") && p.peek().kind == tEOF {
			st.Name = "prepare" // DEALLOCATE prepare: a statement named "prepare"
			break
		}
		if p.acceptWord("all") {
			st.Kind = DeallocateAll
		} else {
			st.Name = p.name()
		}
	case "listen":
		st.Kind = Listen
		st.Name = p.name()
	case "unlisten":
		st.Kind = Unlisten
		if p.acceptPunct('*') {
			st.Kind = UnlistenAll
		} else {
			st.Name = p.name()
		}
	case "create":
		p.create(&st)
	case "declare":
		p.declare(&st)
	case "close":
		st.Kind = CloseCursor
		if !p.acceptWord("all") {
			st.Name = p.name()
		}
	case "copy":
		p.copy(&st)
	case "show":
		st.Kind = Show
		st.Name = p.varName()
	case "do":
		// The body is a string: look into it for session-level locks.
		if hasLockCall(text) {
			st.Kind = AdvisoryLock
		}
	case "select", "with":
		m := scanMentions(text)
		p.scanCalls(&st, m)
		if st.Kind == Other && m.into {
			p2 := parser{lx: lexer{s: text}}
			if p2.selectIntoTemp() {
				st.Kind = CreateTemp
			}
		}
	default:
		p.scanCalls(&st, scanMentions(text))
	}
	return st
}

// hasLockCall reports whether text mentions a session-level advisory lock
// function anywhere (strings included).
func hasLockCall(text string) bool {
	for i := 0; i+len("advisory_") <= len(text); i++ {
		if text[i]|0x20 != 'a' || !eqFold(text[i:i+len("advisory_")], "advisory_") {
			continue
		}
		rest := text[i+len("advisory_"):]
		if len(rest) >= 4 && eqFold(rest[:4], "lock") {
			return true
		}
	}
	return false
}

// lowerWord folds an ASCII word into buf; words longer than buf (never a
// keyword we look for) come back empty.
func lowerWord(buf *[16]byte, w string) []byte {
	if len(w) > len(buf) {
		return nil
	}
	for i := 0; i < len(w); i++ {
		c := w[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		buf[i] = c
	}
	return buf[:len(w)]
}
