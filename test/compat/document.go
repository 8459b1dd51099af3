package compat

import (
	"fmt"
	"strings"
)

// Document renders docs/compatibility.md from the corpus: per category
// what is supported (every statement that answers exactly like one
// PostgreSQL server) and what is refused with 0A000, and why.
func Document(corpus []Case) string {
	var b strings.Builder
	b.WriteString(`# Cross-shard SQL compatibility

Generated from the differential compatibility suite (` + "`test/compat`" + `) by
` + "`go test ./test/compat -run TestCompatibilityDoc -update`" + `; do not edit by hand.

Every statement below runs against one plain PostgreSQL database holding all
the data and through shardproxy over 4 shards (the social-app schema of
` + "`test/compat/schema.go`" + `, sharded like ` + "`test/socialapp/sharding.yaml`" + `: users, follows,
posts, comments and likes colocated by user id, emails by address, countries
a reference table), in the simple protocol and the extended protocol with
text and binary results. ` + "`go test ./test/compat -run TestCompat`" + ` fails when a
supported statement answers differently in any way (rows, order under
ORDER BY, column names, types and formats, command tag, SQLSTATE of an
error), or when a refused one does not get SQLSTATE 0A000.

Not covered by the suite: text ordering under collations other than C,
POSIX and C.UTF-8 (the proxy refuses text sort keys and text min/max under
other collations with 0A000 and the hint to add COLLATE "C"); float sums and
averages may differ in the last bits (float addition is not associative);
string_agg/array_agg/jsonb_agg without ORDER BY concatenate in arrival order (unspecified
in PostgreSQL too).

`)
	type catStats struct {
		name            string
		ok, errs, refus []Case
	}
	var cats []*catStats
	byName := map[string]*catStats{}
	total := map[string]int{}
	for _, c := range corpus {
		cs := byName[c.Category]
		if cs == nil {
			cs = &catStats{name: c.Category}
			byName[c.Category] = cs
			cats = append(cats, cs)
		}
		switch c.Expect {
		case Refused:
			cs.refus = append(cs.refus, c)
		case "error":
			cs.errs = append(cs.errs, c)
		default:
			cs.ok = append(cs.ok, c)
		}
		total[c.Expect]++
	}
	fmt.Fprintf(&b, "%d statements: %d answered exactly like PostgreSQL, %d failing with PostgreSQL's own error, %d refused with 0A000.\n\n",
		len(corpus), total[""], total["error"], total[Refused])
	b.WriteString("| category | same answer | same error | refused (0A000) |\n|---|---|---|---|\n")
	for _, cs := range cats {
		fmt.Fprintf(&b, "| %s | %d | %d | %d |\n", cs.name, len(cs.ok), len(cs.errs), len(cs.refus))
	}
	b.WriteString("\n## Refused (SQLSTATE 0A000)\n\n")
	note := ""
	for _, cs := range cats {
		for _, c := range cs.refus {
			if c.Note != note {
				note = c.Note
				fmt.Fprintf(&b, "\n%s:\n\n", upperFirst(note))
			}
			fmt.Fprintf(&b, "- `%s`\n", c.SQL)
		}
	}
	b.WriteString("\n## Supported\n")
	for _, cs := range cats {
		if len(cs.ok)+len(cs.errs) == 0 {
			continue
		}
		fmt.Fprintf(&b, "\n### %s\n\n", cs.name)
		for _, c := range cs.ok {
			fmt.Fprintf(&b, "- `%s`%s\n", c.SQL, argsText(c.Args))
		}
		for _, c := range cs.errs {
			fmt.Fprintf(&b, "- `%s` (fails like PostgreSQL)\n", c.SQL)
		}
	}
	return b.String()
}

func argsText(args []string) string {
	if len(args) == 0 {
		return ""
	}
	q := make([]string, len(args))
	for i, a := range args {
		q[i] = fmt.Sprintf("$%d = %s", i+1, a)
	}
	return " with " + strings.Join(q, ", ")
}

func upperFirst(s string) string {
	if s == "" {
		return s
	}
	return strings.ToUpper(s[:1]) + s[1:]
}
