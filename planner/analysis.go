package planner

import (
	pg_query "github.com/pganalyze/pg_query_go/v6"

	"github.com/shardproxy/shardproxy/planner/plan"
)

// Kind is the kind of one SQL statement.
type Kind string

// Statement kinds.
const (
	KindSelect      Kind = "select"
	KindInsert      Kind = "insert"
	KindUpdate      Kind = "update"
	KindDelete      Kind = "delete"
	KindMerge       Kind = "merge"
	KindDDL         Kind = "ddl"
	KindCopy        Kind = "copy"
	KindExplain     Kind = "explain"
	KindTransaction Kind = "transaction"
	KindSet         Kind = "set"
	KindShow        Kind = "show"
	KindCursor      Kind = "cursor"
	KindUtility     Kind = "utility"
)

// Analysis is what the planner knows about a SQL string without a topology:
// its statements, their kinds, tables and the facts routing needs (key
// candidates, VALUES rows, text positions). Analyses are cached by SQL text
// and shared between goroutines: they are immutable, and callers must not
// modify the slices they expose.
type Analysis struct {
	// SQL is the analysed text.
	SQL string
	// Hint is the shard named by a leading `/* shardproxy: shard=NAME */`
	// comment, "" without one.
	Hint string
	// Statements has one entry per statement of SQL (several only in a
	// simple-query string such as "BEGIN; SELECT 1; COMMIT").
	Statements []*StatementAnalysis
}

// StatementAnalysis describes one statement.
type StatementAnalysis struct {
	Kind Kind
	// SQL is this statement's text: all of Analysis.SQL for a single
	// statement (comments and the final semicolon included), otherwise the
	// statement's own part.
	SQL string
	// Tables are the relations the statement names (qualified,
	// lower-case, sorted, without CTE names).
	Tables []string
	// ReadOnly: the statement does not write, as far as its SQL shows
	// (SELECT without FOR UPDATE/SHARE, INTO, data-modifying CTEs and
	// without calls of nextval, setval, set_config, advisory locks ... ;
	// user functions that write are not detected).
	ReadOnly bool

	info *stmtInfo
}

// relKind says what a FROM item is.
type relKind uint8

const (
	relTable   relKind = iota // a named table (or view)
	relCTE                    // a reference to a WITH query
	relDerived                // a subquery in FROM
	relFunc                   // a function in FROM
)

// rel is one FROM item (or a write target).
type rel struct {
	kind    relKind
	name    string // qualified, lower-case (tables only)
	schema  string // as written ("" if none)
	relname string
	refName string // alias, or relname when there is no alias
	aliased bool
	scope   int
	target  bool // INSERT/UPDATE/DELETE/COPY target
}

type scope struct {
	parent int
	depth  int
	ctes   map[string]bool
	rels   []int
	pred   *pred // restriction of this scope's rows (WHERE and inner-join ON), nil = none
}

// colRef is a column reference as written, resolved later against a
// topology (key columns are not known at analysis time).
type colRef struct {
	scope int
	qual  []string // qualifier parts (alias, or schema and table)
	name  string
}

type valKind uint8

const (
	vOther      valKind = iota // an expression we do not evaluate
	vConst                     // literal; text holds its text form
	vParam                     // $n; param holds n-1
	vNull                      // NULL literal
	vDefault                   // DEFAULT in VALUES
	vArrayParam                // = ANY($n)
	vArrayConst                // = ANY('{...}') or ANY(ARRAY[...]); elems
)

type valExpr struct {
	kind  valKind
	text  string
	param int
	elems []valExpr
	str   bool // a string literal (for printing)
	loc   int  // position in the SQL text (-1 unknown)
}

type predOp uint8

const (
	pAnd predOp = iota
	pOr
	pCol // col IN vals (one value: col = v)
)

type pred struct {
	op   predOp
	kids []*pred
	col  colRef
	vals []valExpr
}

type colEq struct{ a, b colRef }

type paramTok struct {
	start, end int
	n          int // 1-based
}

// insertInfo describes INSERT ... VALUES.
type insertInfo struct {
	target        int      // rel index
	cols          []string // column list (lower-case), nil if absent
	colsClose     int      // position of ')' closing the column list, -1 if none
	rows          [][]valExpr
	rowSpans      [][2]int // [start of '(', end after ')'] per row; nil if not found
	fromSelect    bool     // INSERT ... SELECT
	defaultValues bool
	returning     bool
	onConflict    string   // "", "nothing", "update"
	conflictSet   []setCol // DO UPDATE SET
}

type setCol struct {
	name         string
	excludedSame bool // SET col = excluded.col
}

type copyInfo struct {
	target    int // rel index, -1 for COPY (query) TO
	cols      []string
	from      bool
	stdio     bool
	format    string
	delim     byte
	quote     byte
	escape    byte
	null      string
	header    bool
	query     string // COPY (query) TO: the query's text ("" if not found)
	otherOpts bool   // options the proxy does not apply itself (FORCE_QUOTE, ENCODING, …)
}

type ddlInfo struct {
	tables      []string // qualified names the DDL is about
	dropIndex   bool
	noTxn       bool // cannot run in a transaction block
	description string
}

// stmtInfo is the topology-independent analysis of one statement.
type stmtInfo struct {
	kind       Kind
	start, end int // text range in Analysis.SQL
	rels       []rel
	scopes     []scope
	eqs        []colEq
	semiEqs    []colEq                   // col IN (SELECT keycol ...) in WHERE/ON conjuncts (passthrough.go)
	outputs    map[int]map[string]colRef // derived-table or CTE rel → its output columns (passthrough.go)
	params     []paramTok                // filled for INSERT only
	maxParam   int

	// Top-level SELECT shape (for scatter-concat safety).
	mergeNeeds []string // need merging whatever the grouping
	groupNeeds []string // fine when grouped by the key
	groupBy    []colRef
	windows    []windowUse       // window function calls of the top-level SELECT
	topScope   int               // scope of the top-level SELECT (-1 none)
	shapes     map[int]*selShape // SELECT scopes (any depth) that need more than concatenation
	arms       map[int][]int     // set-operation scope → scopes of its leaf SELECTs

	writes       bool // the statement (or a CTE of it) writes
	nestedWrite  bool // a data-modifying CTE
	target       int  // write target rel for UPDATE/DELETE/INSERT, -1 none
	setCols      []string
	ins          *insertInfo
	cp           *copyInfo
	ddl          *ddlInfo
	session      *sessionInfo
	explain      *stmtInfo
	explainPre   string
	explainAnlz  bool
	cursor       bool // DECLARE CURSOR: planned like its query
	declare      *declareInfo
	unsupported  error
	readOnly     bool
	node         *pg_query.Node
	tablesListed []string

	bound boundCache
}

type sessionInfo struct {
	kind, name, value string
	proxy             bool
	fetch             *plan.Fetch // FETCH/MOVE
}
