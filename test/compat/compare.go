package compat

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5/pgconn"
)

// Mode is how a case is sent: the simple protocol, or the extended one
// with text or binary result formats.
type Mode int

// The protocol modes every case runs in.
const (
	Simple Mode = iota
	ExtendedText
	ExtendedBinary
)

// Modes lists every Mode.
var Modes = []Mode{Simple, ExtendedText, ExtendedBinary}

func (m Mode) String() string {
	return [...]string{"simple", "extended/text", "extended/binary"}[m]
}

// Outcome is what one statement returned, in comparable form.
type Outcome struct {
	Code    string   // SQLSTATE of the error, "" on success
	Message string   // error message
	Columns []string // name, type OID, type modifier, format of each column
	Rows    []string // each row's values, quoted and comma-separated
	Tag     string   // command tag
}

// Run sends sql with args (text values for $1, $2, …) over conn in mode.
func Run(ctx context.Context, conn *pgconn.PgConn, sql string, args []string, mode Mode) Outcome {
	var res *pgconn.Result
	if mode == Simple {
		results, err := conn.Exec(ctx, inlineArgs(sql, args)).ReadAll()
		switch {
		case err != nil:
			return failed(err)
		case len(results) != 1:
			return Outcome{Code: "XX000", Message: fmt.Sprintf("%d results for one statement", len(results))}
		}
		res = results[0]
	} else {
		values := make([][]byte, len(args))
		for i, a := range args {
			values[i] = []byte(a)
		}
		format := int16(0)
		if mode == ExtendedBinary {
			format = 1
		}
		res = conn.ExecParams(ctx, sql, values, nil, nil, []int16{format}).Read()
	}
	return outcomeOf(res)
}

// outcomeOf puts one result in comparable form.
func outcomeOf(res *pgconn.Result) Outcome {
	if res.Err != nil {
		return failed(res.Err)
	}
	var o Outcome
	for _, f := range res.FieldDescriptions {
		o.Columns = append(o.Columns, fmt.Sprintf("%s:%d:%d:%d", f.Name, f.DataTypeOID, f.TypeModifier, f.Format))
	}
	for _, row := range res.Rows {
		vals := make([]string, len(row))
		for i, v := range row {
			if v == nil {
				vals[i] = "NULL"
			} else {
				vals[i] = strconv.Quote(string(v))
			}
		}
		o.Rows = append(o.Rows, strings.Join(vals, ","))
	}
	o.Tag = res.CommandTag.String()
	return o
}

func failed(err error) Outcome {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return Outcome{Code: pe.Code, Message: pe.Message}
	}
	return Outcome{Code: "connection", Message: err.Error()}
}

// inlineArgs replaces $n by args[n-1] as a quoted literal (for the simple
// protocol, which has no parameters).
func inlineArgs(sql string, args []string) string {
	for i := len(args); i >= 1; i-- {
		lit := "'" + strings.ReplaceAll(args[i-1], "'", "''") + "'"
		sql = strings.ReplaceAll(sql, "$"+strconv.Itoa(i), lit)
	}
	return sql
}

// Ordered reports whether sql has an ORDER BY at the top level (outside
// parentheses), so the order of its rows is defined.
func Ordered(sql string) bool {
	up := strings.ToUpper(sql)
	depth := 0
	inStr := false
	for i := 0; i < len(up); i++ {
		switch c := up[i]; {
		case c == '\'':
			inStr = !inStr
		case inStr:
		case c == '(':
			depth++
		case c == ')':
			depth--
		case depth == 0 && strings.HasPrefix(up[i:], "ORDER BY"):
			return true
		}
	}
	return false
}

// Diff compares the proxy's outcome with the reference's and describes the
// first difference ("" when equal). Rows are compared in order when
// ordered, else as multisets.
func Diff(ref, got Outcome, ordered bool) string {
	if ref.Code != got.Code {
		return fmt.Sprintf("error: reference %q (%s), proxy %q (%s)", ref.Code, ref.Message, got.Code, got.Message)
	}
	if ref.Code != "" {
		return ""
	}
	if a, b := strings.Join(ref.Columns, " "), strings.Join(got.Columns, " "); a != b {
		return fmt.Sprintf("columns: reference [%s], proxy [%s]", a, b)
	}
	if ref.Tag != got.Tag {
		return fmt.Sprintf("command tag: reference %q, proxy %q", ref.Tag, got.Tag)
	}
	a, b := ref.Rows, got.Rows
	if !ordered {
		a = append([]string(nil), a...)
		b = append([]string(nil), b...)
		sort.Strings(a)
		sort.Strings(b)
	}
	if len(a) != len(b) {
		return fmt.Sprintf("%d rows from the reference, %d through the proxy", len(a), len(b))
	}
	for i := range a {
		if a[i] != b[i] {
			return fmt.Sprintf("row %d: reference %s, proxy %s", i+1, a[i], b[i])
		}
	}
	return ""
}
