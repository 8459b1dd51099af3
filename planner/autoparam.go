package planner

import (
	"fmt"
	"reflect"

	pg_query "github.com/pganalyze/pg_query_go/v6"
)

// CheckParameterized reports whether sql — one statement whose numeric
// literals were replaced by the parameters $1 … $n (sqlclass
// NormalizeNumbers) — means the same as the original text when it runs
// as a prepared statement with those literals as typed parameter values.
// A nil error means it does: it is a single SELECT (without INTO),
// INSERT, UPDATE or DELETE, holds exactly n parameters, and none of them
// stands where PostgreSQL gives a constant another meaning than its
// value:
//   - ORDER BY, GROUP BY (also inside GROUPING SETS, ROLLUP, CUBE) and
//     DISTINCT ON items, where an integer names an output column;
//   - type modifiers (numeric(10,2)), which must be constants;
//   - the WHERE clause of an ON CONFLICT target, which must match a
//     partial index's predicate.
//
// The error says which rule failed (for logs and tests); callers send the
// original text instead. returnsRows tells whether the statement has a
// result (a SELECT, or RETURNING): only those can meet PostgreSQL's
// "cached plan must not change result type" after a table changes shape.
func CheckParameterized(sql string, n int) (returnsRows bool, err error) {
	tree, err := pg_query.Parse(sql)
	if err != nil {
		return false, err
	}
	if len(tree.Stmts) != 1 {
		return false, fmt.Errorf("%d statements", len(tree.Stmts))
	}
	root := tree.Stmts[0].Stmt
	switch x := root.Node.(type) {
	case *pg_query.Node_SelectStmt:
		if x.SelectStmt.IntoClause != nil {
			return false, fmt.Errorf("SELECT INTO")
		}
		returnsRows = true
	case *pg_query.Node_InsertStmt:
		if oc := x.InsertStmt.OnConflictClause; oc != nil && oc.Infer != nil && countParams(oc.Infer.WhereClause) > 0 {
			return false, fmt.Errorf("parameter in the WHERE clause of ON CONFLICT")
		}
		returnsRows = len(x.InsertStmt.ReturningList) > 0
	case *pg_query.Node_UpdateStmt:
		returnsRows = len(x.UpdateStmt.ReturningList) > 0
	case *pg_query.Node_DeleteStmt:
		returnsRows = len(x.DeleteStmt.ReturningList) > 0
	default:
		return false, fmt.Errorf("not a SELECT, INSERT, UPDATE or DELETE")
	}
	var bad error
	walkNodes(root, func(node *pg_query.Node) bool {
		if bad != nil {
			return false
		}
		switch x := node.Node.(type) {
		case *pg_query.Node_SelectStmt:
			s := x.SelectStmt
			if s.IntoClause != nil {
				bad = fmt.Errorf("SELECT INTO")
			}
			for _, it := range s.SortClause {
				if sb := it.GetSortBy(); sb != nil && isParam(sb.Node) {
					bad = fmt.Errorf("parameter as an ORDER BY item")
				}
			}
			for _, it := range s.DistinctClause {
				if isParam(it) {
					bad = fmt.Errorf("parameter as a DISTINCT ON item")
				}
			}
			for _, it := range s.GroupClause {
				if groupingParam(it) {
					bad = fmt.Errorf("parameter as a GROUP BY item")
				}
			}
		case *pg_query.Node_SortBy:
			// ORDER BY inside aggregates and windows: not positional, but
			// a constant sort key there is meaningless anyway.
			if isParam(x.SortBy.Node) {
				bad = fmt.Errorf("parameter as a sort key")
			}
		}
		return bad == nil
	})
	if bad != nil {
		return false, bad
	}
	if typmodParam(reflect.ValueOf(root)) {
		return false, fmt.Errorf("parameter in a type modifier")
	}
	if got := countParams(root); got != n {
		return false, fmt.Errorf("%d parameters in the parse tree, %d literals replaced", got, n)
	}
	return returnsRows, nil
}

func isParam(n *pg_query.Node) bool { return n != nil && n.GetParamRef() != nil }

// groupingParam reports whether a GROUP BY item is a parameter, directly
// or as an element of GROUPING SETS / ROLLUP / CUBE.
func groupingParam(n *pg_query.Node) bool {
	if isParam(n) {
		return true
	}
	if gs := n.GetGroupingSet(); gs != nil {
		for _, c := range gs.Content {
			if groupingParam(c) {
				return true
			}
		}
	}
	if r := n.GetRowExpr(); r != nil {
		for _, c := range r.Args {
			if groupingParam(c) {
				return true
			}
		}
	}
	if l := n.GetList(); l != nil {
		for _, c := range l.Items {
			if groupingParam(c) {
				return true
			}
		}
	}
	return false
}

// countParams counts the ParamRef nodes under n.
func countParams(n *pg_query.Node) int {
	count := 0
	walkNodes(n, func(x *pg_query.Node) bool {
		if x.GetParamRef() != nil {
			count++
		}
		return true
	})
	return count
}

var typeNameType = reflect.TypeOf((*pg_query.TypeName)(nil))

// typmodParam reports whether a TypeName anywhere under v (casts, column
// definition lists; TypeNames are not wrapped in Nodes, so walkNodes does
// not show them) has a parameter among its modifiers.
func typmodParam(v reflect.Value) bool {
	switch v.Kind() {
	case reflect.Pointer:
		if v.IsNil() {
			return false
		}
		if v.Type() == typeNameType {
			for _, m := range v.Interface().(*pg_query.TypeName).Typmods {
				if countParams(m) > 0 {
					return true
				}
			}
		}
		return typmodParam(v.Elem())
	case reflect.Interface:
		return !v.IsNil() && typmodParam(v.Elem())
	case reflect.Slice:
		if v.Type().Elem().Kind() != reflect.Pointer {
			return false
		}
		for i := 0; i < v.Len(); i++ {
			if typmodParam(v.Index(i)) {
				return true
			}
		}
	case reflect.Struct:
		t := v.Type()
		for i := 0; i < t.NumField(); i++ {
			if !t.Field(i).IsExported() {
				continue
			}
			switch t.Field(i).Type.Kind() {
			case reflect.Pointer, reflect.Interface, reflect.Slice:
				if typmodParam(v.Field(i)) {
					return true
				}
			}
		}
	}
	return false
}
