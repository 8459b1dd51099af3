package admin

import (
	"fmt"
	"net/http"

	"github.com/shardproxy/shardproxy/router"
	"github.com/shardproxy/shardproxy/topology"
)

// getKey answers GET /v1/key?table=T&value=V (or distribution=D&value=V):
// which shard owns the key and why.
func (s *Server) getKey(w http.ResponseWriter, r *http.Request) error {
	q := r.URL.Query()
	value, hasValue := q["value"]
	if !hasValue || len(value) != 1 {
		return badRequest("give the key as ?value=...")
	}
	ans, err := explainKey(s.store.Current(), q.Get("table"), q.Get("distribution"), value[0])
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, ans)
	return nil
}

// explainKey routes value like the proxy would and says why.
func explainKey(snap *topology.Snapshot, table, dist, value string) (KeyAnswer, error) {
	ans := KeyAnswer{Version: snap.Version(), Key: value}
	if dist == "" {
		if table == "" {
			return ans, badRequest("name a table (?table=) or a distribution (?distribution=)")
		}
		ans.Table = topology.QualifyName(table)
		t, ok := snap.Table(ans.Table)
		switch {
		case !ok:
			ans.Kind, ans.Reason, ans.Shard = "other", "default_shard", snap.DefaultShard()
			ans.Explanation = fmt.Sprintf("table %s is neither distributed nor a reference table, so all of it lives on the default shard %s", ans.Table, ans.Shard)
			return ans, nil
		case t.Kind == topology.Reference:
			ans.Kind, ans.Reason, ans.Shards = "reference", "reference", snap.ShardNames()
			ans.Explanation = fmt.Sprintf("table %s is a reference table: every shard has a full copy; reads go to one shard, writes to all", ans.Table)
			return ans, nil
		}
		ans.KeyColumn = t.KeyColumn
		dist = t.Distribution
	}
	ans.Kind = "distributed"
	ans.Distribution = dist
	d, ok := snap.Distribution(dist)
	if !ok {
		return ans, &APIError{Status: http.StatusNotFound, Code: CodeNotFound, Msg: fmt.Sprintf("distribution %q does not exist", dist),
			Hint: "list the distributions with shardctl tables list"}
	}
	ans.KeyType = d.KeyType
	key, err := router.KeyFromText(d.KeyType, value)
	if err != nil {
		return ans, badRequest("key %q is not a valid %s key: %v", value, d.KeyType, err)
	}
	ans.Key = key.Canonical()
	if d.Scheme == topology.Hash {
		h := key.Hash()
		ans.Hash = &h
	}
	shard, rerr := router.For(snap).ShardForKey(dist, key)
	ans.Shard = shard
	if o, ok := d.Overrides[ans.Key]; ok {
		ans.Reason = "override"
		ans.Explanation = fmt.Sprintf("key %s of distribution %s is pinned to shard %s by a directory entry (shardctl directory unset to remove it)", ans.Key, dist, o)
		return ans, nil
	}
	switch {
	case d.Scheme == topology.Hash || (d.Scheme == topology.RangeScheme && d.KeyType == topology.Int):
		v := key.Int
		what := fmt.Sprintf("key %s", ans.Key)
		if d.Scheme == topology.Hash {
			v = *ans.Hash
			what = fmt.Sprintf("hash %d of key %s (%s)", v, ans.Key, hashFunc(d.KeyType))
		}
		if i := topology.FindRange(d.Ranges, v); i >= 0 {
			rg := d.Ranges[i]
			ans.Range, ans.Reason = &rg, "range"
			ans.Explanation = fmt.Sprintf("%s lies in range [%d, %d], owned by shard %s", what, rg.Lo, rg.Hi, rg.Shard)
		}
	case d.Scheme == topology.RangeScheme:
		for _, rg := range d.TextRanges {
			if rg.Contains(ans.Key) {
				rg := rg
				ans.TextRange, ans.Reason = &rg, "text_range"
				ans.Explanation = fmt.Sprintf("key %q lies in range [%q, %q), owned by shard %s", ans.Key, rg.From, rg.To, rg.Shard)
			}
		}
	case d.Scheme == topology.List:
		if sh, ok := d.ListValues[ans.Key]; ok {
			ans.Reason = "list"
			ans.Explanation = fmt.Sprintf("value %q is listed for shard %s", ans.Key, sh)
		}
	}
	if rerr != nil {
		return ans, &APIError{Status: http.StatusUnprocessableEntity, Code: CodeInvalid, Msg: rerr.Error(),
			Hint: "the key maps to no shard: a gap in a range table or a value missing from a list; queries with it fail the same way"}
	}
	return ans, nil
}

func hashFunc(kt topology.KeyType) string {
	switch kt {
	case topology.Text:
		return "hashtextextended(key, 0)"
	case topology.UUID:
		return "uuid_hash_extended(key, 0)"
	}
	return "hashint8extended(key, 0)"
}
