package plan

import (
	"math"
	"strings"
	"testing"

	"github.com/shardproxy/shardproxy/router"
	"github.com/shardproxy/shardproxy/topology"
)

func copySnap(t *testing.T) *topology.Snapshot {
	t.Helper()
	shards := []string{"a", "b", "c"}
	b := topology.NewBuilder(1)
	for _, s := range shards {
		b.AddShard(topology.Shard{Name: s, Primary: "127.0.0.1:1"})
	}
	b.AddDistribution(topology.Distribution{Name: "d", Scheme: topology.Hash, KeyType: topology.Int, Ranges: topology.HashLayout(shards, 0)})
	b.AddDistribution(topology.Distribution{Name: "t", Scheme: topology.RangeScheme, KeyType: topology.Text,
		TextRanges: []topology.TextRange{{From: "", To: "m", Shard: "a"}, {From: "m", Shard: "b"}}})
	b.AddTable(topology.Table{Name: "x", Kind: topology.Distributed, KeyColumn: "id", Distribution: "d"})
	s, err := b.Build()
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// split feeds input in chunks of every size and checks every chunking
// gives the same per-shard output.
func split(t *testing.T, cs *CopySplit, snap *topology.Snapshot, input string) map[string]string {
	t.Helper()
	var first map[string]string
	for chunk := 1; chunk <= len(input)+1; chunk++ {
		s, err := NewCopySplitter(cs, snap)
		if err != nil {
			t.Fatal(err)
		}
		out := map[string]string{}
		emit := func(shard string, row []byte) error { out[shard] += string(row); return nil }
		for i := 0; i < len(input); i += chunk {
			end := int(math.Min(float64(i+chunk), float64(len(input))))
			if err := s.Write([]byte(input[i:end]), emit); err != nil {
				t.Fatalf("chunk %d: %v", chunk, err)
			}
		}
		if err := s.Close(emit); err != nil {
			t.Fatal(err)
		}
		if first == nil {
			first = out
			continue
		}
		for k, v := range first {
			if out[k] != v {
				t.Fatalf("chunk size %d changes shard %s output:\n%q\nvs\n%q", chunk, k, out[k], v)
			}
		}
	}
	return first
}

func shardOf(t *testing.T, snap *topology.Snapshot, dist string, v router.Value) string {
	s, err := router.For(snap).ShardForKey(dist, v)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestCopySplitText(t *testing.T) {
	snap := copySnap(t)
	cs := &CopySplit{Table: "public.x", Distribution: "d", KeyColumn: "id", KeyType: topology.Int, KeyColumnIndex: 1,
		Format: "text", Delimiter: '\t', Null: `\N`, Shards: snap.ShardNames()}
	rows := []struct {
		line string
		key  int64
	}{
		{"a\t1\tx\n", 1},
		{"tab\\there\t2\tline\\nbreak\n", 2},
		{"escaped\\\nnewline\t3\t\\N\n", 3},
		{"\\\\\t4\t\r\n", 4},
		{"q\t5\tlast\n", 5},
	}
	var in strings.Builder
	want := map[string]string{}
	for _, r := range rows {
		in.WriteString(r.line)
		want[shardOf(t, snap, "d", router.IntKey(r.key))] += r.line
	}
	in.WriteString("\\.\nignored\t9\n")
	got := split(t, cs, snap, in.String())
	for k, v := range want {
		if got[k] != v {
			t.Fatalf("shard %s: %q, want %q", k, got[k], v)
		}
	}
	if len(got) != len(want) {
		t.Fatalf("extra output: %v", got)
	}
}

func TestCopySplitCSV(t *testing.T) {
	snap := copySnap(t)
	cs := &CopySplit{Table: "public.x", Distribution: "t", KeyColumn: "k", KeyType: topology.Text, KeyColumnIndex: 0,
		Format: "csv", Delimiter: ',', Quote: '"', Escape: '"', Header: true, Shards: snap.ShardNames()}
	header := "k,v\n"
	rows := []struct{ line, key string }{
		{"apple,1\n", "apple"},
		{"\"zebra, striped\",\"multi\nline \"\"quoted\"\" value\"\n", "zebra, striped"},
		{"\"m\"\"q\",2\r\n", "m\"q"},
		{"banana,\"3,4\"\n", "banana"},
	}
	in := header
	want := map[string]string{}
	for _, s := range snap.ShardNames() {
		want[s] = header
	}
	for _, r := range rows {
		in += r.line
		want[shardOf(t, snap, "t", router.TextKey(r.key))] += r.line
	}
	in += "zz,no newline at end"
	want[shardOf(t, snap, "t", router.TextKey("zz"))] += "zz,no newline at end"
	got := split(t, cs, snap, in)
	for k, v := range want {
		if got[k] != v {
			t.Fatalf("shard %s: %q, want %q", k, got[k], v)
		}
	}
}

func TestCopySplitCSVBackslashEscape(t *testing.T) {
	snap := copySnap(t)
	cs := &CopySplit{Distribution: "t", KeyColumn: "k", KeyType: topology.Text, KeyColumnIndex: 1,
		Format: "csv", Delimiter: ',', Quote: '"', Escape: '\\'}
	line := "\"x \\\" still, quoted\n\",\"q\\\"k\"\n"
	got := split(t, cs, snap, line)
	s := shardOf(t, snap, "t", router.TextKey(`q"k`))
	if got[s] != line {
		t.Fatalf("got %q", got)
	}
}

func TestCopySplitErrors(t *testing.T) {
	snap := copySnap(t)
	cs := &CopySplit{Table: "public.x", Distribution: "d", KeyColumn: "id", KeyType: topology.Int, KeyColumnIndex: 0,
		Format: "text", Delimiter: '\t', Null: `\N`}
	for in, code := range map[string]string{"\\N\tx\n": "23502", "abc\tx\n": "22P02"} {
		s, _ := NewCopySplitter(cs, snap)
		err := s.Write([]byte(in), func(string, []byte) error { return nil })
		st, ok := err.(interface{ SQLState() string })
		if !ok || st.SQLState() != code {
			t.Fatalf("%q: %v, want %s", in, err, code)
		}
	}
	cs.KeyColumnIndex = 3
	s, _ := NewCopySplitter(cs, snap)
	if err := s.Write([]byte("1\t2\n"), func(string, []byte) error { return nil }); err == nil {
		t.Fatal("missing column accepted")
	}
	cs.KeyColumnIndex = -1
	if _, err := NewCopySplitter(cs, snap); err == nil {
		t.Fatal("unresolved key index accepted")
	}
	csv := &CopySplit{Distribution: "t", KeyType: topology.Text, Format: "csv", Delimiter: ',', Quote: '"', Escape: '"'}
	s, _ = NewCopySplitter(csv, snap)
	_ = s.Write([]byte("\"open,1\n"), func(string, []byte) error { return nil })
	if err := s.Close(func(string, []byte) error { return nil }); err == nil {
		t.Fatal("unterminated quote accepted")
	}
}
