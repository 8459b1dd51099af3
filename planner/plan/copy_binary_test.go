package plan

import (
	"encoding/binary"
	"errors"
	"testing"

	"github.com/shardproxy/shardproxy/router"
	"github.com/shardproxy/shardproxy/topology"
)

// binaryTuple encodes one binary COPY tuple; a nil field is NULL.
func binaryTuple(fields ...[]byte) []byte {
	b := binary.BigEndian.AppendUint16(nil, uint16(len(fields)))
	for _, f := range fields {
		if f == nil {
			b = binary.BigEndian.AppendUint32(b, 0xFFFFFFFF)
			continue
		}
		b = binary.BigEndian.AppendUint32(b, uint32(len(f)))
		b = append(b, f...)
	}
	return b
}

func int8Field(v int64) []byte { return binary.BigEndian.AppendUint64(nil, uint64(v)) }

// binaryHeader is the signature, flags and a header extension of ext bytes.
func binaryHeader(ext int) []byte {
	h := append([]byte(nil), copySignature...)
	h = binary.BigEndian.AppendUint32(h, 0)
	h = binary.BigEndian.AppendUint32(h, uint32(ext))
	return append(h, make([]byte, ext)...)
}

// TestCopySplitBinary: every chunking of a binary COPY stream (header with
// an extension, tuples with NULLs outside the key, the trailer) gives each
// shard the header, exactly its tuples in order, and the trailer.
func TestCopySplitBinary(t *testing.T) {
	snap := copySnap(t)
	cs := &CopySplit{Table: "public.x", Distribution: "d", KeyColumn: "id", KeyType: topology.Int, KeyColumnIndex: 1,
		Format: "binary", Shards: []string{"a", "b", "c"}}
	header := binaryHeader(3)
	trailer := []byte{0xFF, 0xFF}
	input := append([]byte(nil), header...)
	want := map[string][]byte{}
	for _, s := range cs.Shards {
		want[s] = append([]byte(nil), header...)
	}
	for k := int64(-3); k <= 12; k++ {
		var note []byte // a NULL and an empty value outside the key
		if k%3 == 0 {
			note = []byte{}
		}
		tup := binaryTuple([]byte("row"), int8Field(k), note)
		input = append(input, tup...)
		s := shardOf(t, snap, "d", router.IntKey(k))
		want[s] = append(want[s], tup...)
	}
	input = append(input, trailer...)
	for _, s := range cs.Shards {
		want[s] = append(want[s], trailer...)
	}
	got := split(t, cs, snap, string(input))
	for _, s := range cs.Shards {
		if got[s] != string(want[s]) {
			t.Fatalf("shard %s got %x\nwant %x", s, got[s], want[s])
		}
	}

	// int4 keys (4 bytes) route like int8 ones.
	got4 := split(t, cs, snap, string(append(append(binaryHeader(0), binaryTuple(nil, binary.BigEndian.AppendUint32(nil, 7))...), trailer...)))
	if s := shardOf(t, snap, "d", router.IntKey(7)); len(got4[s]) != len(binaryHeader(0))+2+4+4+4+2 {
		t.Fatalf("int4 key 7 not on shard %s: %q", s, got4)
	}
}

func TestCopySplitBinaryErrors(t *testing.T) {
	snap := copySnap(t)
	cs := &CopySplit{Table: "public.x", Distribution: "d", KeyColumn: "id", KeyType: topology.Int, KeyColumnIndex: 1,
		Format: "binary", Shards: []string{"a", "b", "c"}}
	run := func(input []byte) error {
		s, err := NewCopySplitter(cs, snap)
		if err != nil {
			t.Fatal(err)
		}
		emit := func(string, []byte) error { return nil }
		if err := s.Write(input, emit); err != nil {
			return err
		}
		return s.Close(emit)
	}
	code := func(err error) string {
		var pe *Error
		if errors.As(err, &pe) {
			return pe.Code
		}
		var ke *router.KeyError
		if errors.As(err, &ke) {
			return "22P02"
		}
		return ""
	}
	cases := []struct {
		name  string
		input []byte
		code  string
	}{
		{"text instead of binary", []byte("1\tone\n2\ttwo\n"), "22P04"},
		{"NULL key", append(binaryHeader(0), binaryTuple(int8Field(1), nil)...), "23502"},
		{"too few fields", append(binaryHeader(0), binaryTuple(int8Field(1))...), "22P04"},
		{"ends inside a tuple", append(binaryHeader(0), binaryTuple([]byte("x"), int8Field(1))[:9]...), "22P04"},
		{"bad key width", append(binaryHeader(0), binaryTuple([]byte("x"), []byte{1, 2, 3})...), "22P02"},
	}
	for _, c := range cases {
		if err := run(c.input); code(err) != c.code {
			t.Errorf("%s: %v, want %s", c.name, err, c.code)
		}
	}
}
