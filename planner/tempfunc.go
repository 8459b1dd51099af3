package planner

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"

	pg_query "github.com/pganalyze/pg_query_go/v6"
)

// TempInsertFunction is the query string an ORM sends to insert one row
// and catch a unique violation inside a transaction without aborting it
// (Sequelize's create with exception handling, which findOrCreate uses):
//
//	CREATE OR REPLACE FUNCTION pg_temp.testfunc(OUT response "t", OUT sequelize_caught_exception text)
//	RETURNS RECORD AS $func_…$ BEGIN INSERT INTO "t" … RETURNING * INTO response;
//	EXCEPTION WHEN unique_violation THEN … END $func_…$ LANGUAGE plpgsql;
//	SELECT … FROM pg_temp.testfunc(); DROP FUNCTION IF EXISTS pg_temp.testfunc();
//
// The whole string belongs on the shard of the inserted row: the proxy
// plans Insert (giving it its key if the key is left to its default) and
// sends WithInsert of the planned text there.
type TempInsertFunction struct {
	// Insert is the INSERT inside the function body, without its
	// RETURNING * INTO clause.
	Insert string
	prefix string // the string up to Insert
	suffix string // the string after Insert
}

// tempInsertFunctionRE matches Sequelize's template (query-generator.js,
// insertQuery with options.exception); the groups are the text before the
// INSERT (2: its dollar-quote delimiter), the INSERT, and the rest (5: the
// closing delimiter, which must be the same).
var tempInsertFunctionRE = regexp.MustCompile(`(?s)^(\s*CREATE OR REPLACE FUNCTION pg_temp\.testfunc\(OUT response [^,]+, OUT sequelize_caught_exception text\) RETURNS RECORD AS (\$func_[0-9A-Za-z_]*\$) BEGIN )(INSERT INTO .*?)( RETURNING \* INTO response; EXCEPTION WHEN unique_violation THEN GET STACKED DIAGNOSTICS sequelize_caught_exception = PG_EXCEPTION_DETAIL; END (\$func_[0-9A-Za-z_]*\$) LANGUAGE plpgsql; SELECT [^;]* FROM pg_temp\.testfunc\(\); DROP FUNCTION IF EXISTS pg_temp\.testfunc\(\);?\s*)$`)

// ParseTempInsertFunction recognizes a TempInsertFunction string whose
// INSERT is a single statement without dollar quotes of its own.
func ParseTempInsertFunction(sql string) (*TempInsertFunction, bool) {
	m := tempInsertFunctionRE.FindStringSubmatch(sql)
	if m == nil || m[2] != m[5] || strings.Contains(m[3], m[2]) {
		return nil, false
	}
	if res, err := pg_query.Parse(m[3]); err != nil || len(res.Stmts) != 1 || res.Stmts[0].Stmt.GetInsertStmt() == nil {
		return nil, false
	}
	return &TempInsertFunction{Insert: m[3], prefix: m[1], suffix: m[4]}, true
}

// WithInsert returns the string with insert in place of the function's
// INSERT.
func (f *TempInsertFunction) WithInsert(insert string) string {
	return f.prefix + insert + f.suffix
}

// FillParams returns sql with each parameter $n (first ≤ n < first +
// len(values)) replaced by values[n-first], which must be integers (the
// keys an AllocateKeys plan was given): the statement runs where
// parameters cannot be bound, inside a function body.
func FillParams(sql string, first int, values []string) (string, error) {
	for _, v := range values {
		if _, err := strconv.ParseInt(v, 10, 64); err != nil {
			return "", fmt.Errorf("planner: %q is not an integer key", v)
		}
	}
	sc, err := pg_query.Scan(sql)
	if err != nil {
		return "", err
	}
	toks, _ := paramTokens(sql, 0, sc.Tokens)
	var b strings.Builder
	at := 0
	for _, t := range toks {
		i := t.n - first
		if i < 0 || i >= len(values) {
			return "", fmt.Errorf("planner: parameter $%d has no value", t.n)
		}
		b.WriteString(sql[at:t.start])
		b.WriteString(values[i])
		at = t.end
	}
	b.WriteString(sql[at:])
	return b.String(), nil
}
