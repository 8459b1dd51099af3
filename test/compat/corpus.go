package compat

// Case is one statement of the corpus.
type Case struct {
	Category string
	SQL      string
	Args     []string // text values for $1, $2, … (inlined as literals in the simple protocol)
	// Expect is "" when the proxy must answer exactly like one PostgreSQL
	// server, "0A000" when it refuses the statement (Note says why and
	// what to write instead), "error" when both must fail with the same
	// SQLSTATE.
	Expect string
	Note   string
}

// Refused is the Expect value of a documented refusal.
const Refused = "0A000"

// Corpus is the suite's statements, in the order they run (writes change
// the data on both sides alike, so later cases see the same rows).
var Corpus = buildCorpus()

type corpusBuilder struct {
	cat   string
	cases []Case
}

func (b *corpusBuilder) section(cat string) { b.cat = cat }

// ok adds statements that must answer exactly as on one server.
func (b *corpusBuilder) ok(sqls ...string) {
	for _, s := range sqls {
		b.cases = append(b.cases, Case{Category: b.cat, SQL: s})
	}
}

// args adds one statement with parameters.
func (b *corpusBuilder) args(sql string, args ...string) {
	b.cases = append(b.cases, Case{Category: b.cat, SQL: sql, Args: args})
}

// refused adds statements the proxy refuses with 0A000, for note's reason.
func (b *corpusBuilder) refused(note string, sqls ...string) {
	for _, s := range sqls {
		b.cases = append(b.cases, Case{Category: b.cat, SQL: s, Expect: Refused, Note: note})
	}
}

// fails adds statements that fail on PostgreSQL; the proxy must fail with
// the same SQLSTATE.
func (b *corpusBuilder) fails(sqls ...string) {
	for _, s := range sqls {
		b.cases = append(b.cases, Case{Category: b.cat, SQL: s, Expect: "error"})
	}
}
