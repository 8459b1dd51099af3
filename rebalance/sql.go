package rebalance

import (
	"fmt"
	"hash/fnv"
	"net"
	"strings"
)

// quoteIdent quotes an identifier for SQL.
func quoteIdent(s string) string { return `"` + strings.ReplaceAll(s, `"`, `""`) + `"` }

// quoteLiteral quotes a string literal for SQL (standard_conforming_strings).
func quoteLiteral(s string) string { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }

// qualified quotes "schema.table" (the topology's lower-case name form).
func qualified(name string) string {
	schema, table, ok := strings.Cut(name, ".")
	if !ok {
		return quoteIdent(name)
	}
	return quoteIdent(schema) + "." + quoteIdent(table)
}

// conninfoValue quotes a libpq keyword/value conninfo value.
func conninfoValue(s string) string {
	return "'" + strings.ReplaceAll(strings.ReplaceAll(s, `\`, `\\`), "'", `\'`) + "'"
}

// replicationName is the name of the publication, subscription and slot of
// move id in database db: lower-case, at most 63 bytes, unique per (move,
// database) because slots are per server.
func replicationName(id, db string) string { return replicationNameWith("shardproxy_mv_", id, db) }

// replicationNameWith is replicationName under another prefix (at most 17
// bytes), for other users of logical replication (reference syncs).
func replicationNameWith(prefix, id, db string) string {
	h := fnv.New32a()
	h.Write([]byte(db))
	var b strings.Builder
	for _, r := range strings.ToLower(id) {
		if (r >= 'a' && r <= 'z') || (r >= '0' && r <= '9') || r == '_' {
			b.WriteRune(r)
		} else {
			b.WriteByte('_')
		}
	}
	clean := b.String()
	if len(clean) > 36 {
		clean = clean[:36]
	}
	return fmt.Sprintf("%s%s_%08x", prefix, clean, h.Sum32())
}

func splitHostPort(addr string) (string, string, error) { return net.SplitHostPort(addr) }
