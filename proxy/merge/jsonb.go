package merge

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"slices"
)

// jsonb values are ordered and compared as PostgreSQL's jsonb_cmp and
// jsonb_eq do (jsonb_util.c, compareJsonbContainers):
//
//   - by type first: null < string < number < boolean < array < object;
//   - strings by the database collation (the merge requires a byte-order
//     one, as for text), numbers as numeric, false < true;
//   - arrays by their number of elements, then element by element;
//   - objects by their number of pairs, then pair by pair in storage order
//     (keys sorted by length, then bytes: {"aa": 1, "c": 1} >
//     {"b": 1, "d": 1}), key before value;
//   - a top-level scalar is a one-element "raw scalar" array: it sorts below
//     a real array with one element or more and above an empty one (so
//     '[]' < 'null', PostgreSQL's documented anomaly), and below any
//     object.

// jsonType ranks the kinds of JSON value as PostgreSQL's jbvType enum.
type jsonType uint8

const (
	jNull jsonType = iota
	jString
	jNumber
	jBool
	jArray
	jObject
)

// jsonNode is one parsed JSON value.
type jsonNode struct {
	typ  jsonType
	str  []byte      // string
	num  *decimal    // number
	bool bool        // boolean
	elem []*jsonNode // array elements; object values (in key order)
	keys [][]byte    // object keys, in storage order
}

// parseJSONB parses a jsonb value as a shard sent it: text, or binary
// (a version byte 1, then the text).
func parseJSONB(raw []byte, format int16) (*jsonNode, error) {
	if format == 1 {
		if len(raw) == 0 || raw[0] != 1 {
			return nil, fmt.Errorf("unknown binary jsonb version")
		}
		raw = raw[1:]
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	n, err := parseJSONValue(dec)
	if err != nil {
		return nil, err
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, fmt.Errorf("text after the JSON value")
	}
	return n, nil
}

func parseJSONValue(dec *json.Decoder) (*jsonNode, error) {
	tok, err := dec.Token()
	if err != nil {
		return nil, err
	}
	switch t := tok.(type) {
	case nil:
		return &jsonNode{typ: jNull}, nil
	case bool:
		return &jsonNode{typ: jBool, bool: t}, nil
	case string:
		return &jsonNode{typ: jString, str: []byte(t)}, nil
	case json.Number:
		d, err := parseDecimal(string(t))
		if err != nil {
			return nil, err
		}
		return &jsonNode{typ: jNumber, num: d}, nil
	case json.Delim:
		switch t {
		case '[':
			n := &jsonNode{typ: jArray}
			for dec.More() {
				e, err := parseJSONValue(dec)
				if err != nil {
					return nil, err
				}
				n.elem = append(n.elem, e)
			}
			_, err := dec.Token() // ]
			return n, err
		case '{':
			n := &jsonNode{typ: jObject}
			byKey := map[string]int{}
			for dec.More() {
				kt, err := dec.Token()
				if err != nil {
					return nil, err
				}
				k, _ := kt.(string)
				v, err := parseJSONValue(dec)
				if err != nil {
					return nil, err
				}
				if i, ok := byKey[k]; ok { // jsonb keeps the last of duplicate keys
					n.elem[i] = v
					continue
				}
				byKey[k] = len(n.keys)
				n.keys = append(n.keys, []byte(k))
				n.elem = append(n.elem, v)
			}
			if _, err := dec.Token(); err != nil { // }
				return nil, err
			}
			n.sortKeys()
			return n, nil
		}
	}
	return nil, fmt.Errorf("unexpected JSON token %v", tok)
}

// sortKeys puts an object's pairs in jsonb's storage order: shorter keys
// first, then by bytes.
func (n *jsonNode) sortKeys() {
	idx := make([]int, len(n.keys))
	for i := range idx {
		idx[i] = i
	}
	slices.SortStableFunc(idx, func(a, b int) int {
		if la, lb := len(n.keys[a]), len(n.keys[b]); la != lb {
			return la - lb
		}
		return bytes.Compare(n.keys[a], n.keys[b])
	})
	keys, elem := make([][]byte, len(idx)), make([]*jsonNode, len(idx))
	for i, j := range idx {
		keys[i], elem[i] = n.keys[j], n.elem[j]
	}
	n.keys, n.elem = keys, elem
}

func (n *jsonNode) scalar() bool { return n.typ < jArray }

// compareJSONB orders two top-level jsonb values as jsonb_cmp.
func compareJSONB(a, b *jsonNode) int {
	switch {
	case a.scalar() && b.scalar():
		return compareJSON(a, b)
	case a.scalar() && b.typ == jArray:
		return rawScalarVsArray(len(b.elem))
	case b.scalar() && a.typ == jArray:
		return -rawScalarVsArray(len(a.elem))
	}
	return compareJSON(a, b) // a scalar against an object: the type decides
}

// rawScalarVsArray is a top-level scalar (a one-element raw-scalar array)
// against a top-level array of n elements: the element counts decide, and
// on equal counts the raw scalar is smaller.
func rawScalarVsArray(n int) int {
	if n == 0 {
		return 1
	}
	return -1
}

// compareJSON orders two values below the top level.
func compareJSON(a, b *jsonNode) int {
	if a.typ != b.typ {
		return cmpInt(int64(a.typ), int64(b.typ))
	}
	switch a.typ {
	case jNull:
		return 0
	case jString:
		return bytes.Compare(a.str, b.str)
	case jNumber:
		return cmpDecimal(a.num, b.num)
	case jBool:
		switch {
		case a.bool == b.bool:
			return 0
		case a.bool:
			return 1
		}
		return -1
	}
	if r := cmpInt(int64(len(a.elem)), int64(len(b.elem))); r != 0 {
		return r
	}
	for i := range a.elem {
		if a.typ == jObject {
			if r := bytes.Compare(a.keys[i], b.keys[i]); r != 0 {
				return r
			}
		}
		if r := compareJSON(a.elem[i], b.elem[i]); r != 0 {
			return r
		}
	}
	return 0
}

// appendJSONBKey appends an equality key of a top-level jsonb value: equal
// exactly when jsonb_eq says so (numbers by value, so 1.0 and 1.00 match;
// a top-level scalar differs from a one-element array).
func appendJSONBKey(dst []byte, n *jsonNode) []byte {
	if n.scalar() {
		dst = append(dst, 's')
	}
	return appendJSONKey(dst, n)
}

func appendJSONKey(dst []byte, n *jsonNode) []byte {
	dst = append(dst, byte(n.typ))
	switch n.typ {
	case jString:
		return appendLen(dst, n.str)
	case jNumber:
		return appendLen(dst, []byte(n.num.key()))
	case jBool:
		if n.bool {
			return append(dst, 1)
		}
		return append(dst, 0)
	case jArray, jObject:
		dst = binary.BigEndian.AppendUint32(dst, uint32(len(n.elem)))
		for i, e := range n.elem {
			if n.typ == jObject {
				dst = appendLen(dst, n.keys[i])
			}
			dst = appendJSONKey(dst, e)
		}
	}
	return dst
}
