package plan

import (
	"strconv"
	"strings"
)

// MaxBindParams is PostgreSQL's limit on the parameters of one statement
// (the Bind message counts them in an int16).
const MaxBindParams = 65535

// batchRows is how many rows of perRow parameters one statement carries
// after fixed parameters of its own: limit, fewer when the parameters
// would pass MaxBindParams, and at least 1.
func batchRows(limit, fixed, perRow int) int {
	n := limit
	if perRow > 0 {
		n = min(n, (MaxBindParams-fixed)/perRow)
	}
	return max(1, n)
}

// writeParamRows writes rows parenthesised VALUES rows of columns
// parameters each, numbered from $after+1 in row order:
// "($1, $2), ($3, $4)". With ordinal, each row starts with its 1-based
// number: "(1, $1, $2), (2, $3, $4)".
func writeParamRows(b *strings.Builder, rows, columns, after int, ordinal bool) {
	n := after
	for r := 0; r < rows; r++ {
		if r > 0 {
			b.WriteString(", ")
		}
		b.WriteByte('(')
		if ordinal {
			b.WriteString(strconv.Itoa(r + 1))
		}
		for c := 0; c < columns; c++ {
			if c > 0 || ordinal {
				b.WriteString(", ")
			}
			n++
			b.WriteByte('$')
			b.WriteString(strconv.Itoa(n))
		}
		b.WriteByte(')')
	}
}
