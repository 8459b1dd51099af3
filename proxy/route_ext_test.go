package proxy

import (
	"bytes"
	"math/rand/v2"
	"reflect"
	"testing"

	"github.com/jackc/pgx/v5/pgproto3"
)

// TestBindValuesMatchesPgproto3: bindValues decodes the parameter part of
// every Bind (well-formed, truncated at every byte, with trailing bytes)
// exactly as pgproto3.Bind.Decode does: values (NULL nil, empty non-nil),
// parameter and result format codes, and the verdict on malformed ones.
func TestBindValuesMatchesPgproto3(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	var bodies [][]byte
	for range 400 {
		b := pgproto3.Bind{}
		nf := rng.IntN(3)
		if rng.IntN(8) == 0 {
			nf = 5 + rng.IntN(3) // more than bindArgsInline
		}
		for range nf {
			b.ParameterFormatCodes = append(b.ParameterFormatCodes, int16(rng.IntN(2)))
		}
		np := rng.IntN(4)
		if rng.IntN(8) == 0 {
			np = 5 + rng.IntN(6)
		}
		for range np {
			switch rng.IntN(4) {
			case 0:
				b.Parameters = append(b.Parameters, nil)
			case 1:
				b.Parameters = append(b.Parameters, []byte{})
			default:
				v := make([]byte, rng.IntN(20))
				for i := range v {
					v[i] = byte(rng.IntN(256))
				}
				b.Parameters = append(b.Parameters, v)
			}
		}
		nr := rng.IntN(3)
		if rng.IntN(8) == 0 {
			nr = 5 + rng.IntN(3)
		}
		for range nr {
			b.ResultFormatCodes = append(b.ResultFormatCodes, int16(rng.IntN(2)))
		}
		msg, err := b.Encode(nil)
		if err != nil {
			t.Fatal(err)
		}
		body := msg[5:] // after the type and length
		bodies = append(bodies, body)
		for cut := 0; cut < len(body); cut += 1 + rng.IntN(3) {
			bodies = append(bodies, body[:cut])
		}
		bodies = append(bodies, append(bytes.Clone(body), 1, 2, 3))
	}
	// Negative and oversized value lengths.
	bodies = append(bodies, []byte{0, 0, 0, 0, 1, 0xff, 0xff, 0xff, 0xfe, 0, 0},
		[]byte{0, 0, 0, 0, 1, 0, 0, 0, 9, 'a', 0, 0})
	for _, body := range bodies {
		var want pgproto3.Bind
		wantErr := want.Decode(body)
		_, rest, ok := cstring(body)
		if ok {
			_, rest, ok = cstring(rest)
		}
		if !ok {
			continue // the names are handleBind's to check
		}
		params, rf, ok := bindValues(rest)
		if ok != (wantErr == nil) {
			t.Fatalf("%x: bindValues ok=%v, pgproto3: %v", body, ok, wantErr)
		}
		if !ok {
			continue
		}
		if !reflect.DeepEqual(params.Values, want.Parameters) || !reflect.DeepEqual(params.Formats, want.ParameterFormatCodes) ||
			!reflect.DeepEqual(rf, want.ResultFormatCodes) {
			t.Fatalf("%x:\nbindValues: %q %v %v\npgproto3:   %q %v %v", body, params.Values, params.Formats, rf,
				want.Parameters, want.ParameterFormatCodes, want.ResultFormatCodes)
		}
	}
}

// TestBindValuesAllocations: a Bind of a few values is decoded with one
// allocation.
func TestBindValuesAllocations(t *testing.T) {
	msg, err := (&pgproto3.Bind{Parameters: [][]byte{[]byte("42"), nil}, ParameterFormatCodes: []int16{0},
		ResultFormatCodes: []int16{1}}).Encode(nil)
	if err != nil {
		t.Fatal(err)
	}
	rest := msg[5+2:] // after the two empty names
	if n := testing.AllocsPerRun(100, func() {
		if _, _, ok := bindValues(rest); !ok {
			t.Fatal("not decoded")
		}
	}); n > 1 {
		t.Errorf("bindValues: %v allocations, want 1", n)
	}
}
