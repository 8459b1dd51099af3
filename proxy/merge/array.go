package merge

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"strconv"
)

// One-dimensional arrays, as array_agg returns them. The decoders also
// return the lower bound (1 unless the array says otherwise: '[2:3]={…}'),
// which orders arrays with the same elements.

func decodeArrayBinary(raw []byte, elem *codec) ([]value, int64, error) {
	if len(raw) < 12 {
		return nil, 0, fmt.Errorf("short array")
	}
	ndim := int32(binary.BigEndian.Uint32(raw))
	p := 12
	if ndim == 0 {
		return []value{}, 1, nil
	}
	if ndim != 1 {
		return nil, 0, fmt.Errorf("array with %d dimensions", ndim)
	}
	if len(raw) < p+8 {
		return nil, 0, fmt.Errorf("short array")
	}
	n := int(int32(binary.BigEndian.Uint32(raw[p:])))
	lbound := int64(int32(binary.BigEndian.Uint32(raw[p+4:])))
	p += 8
	out := make([]value, 0, n)
	for i := 0; i < n; i++ {
		if len(raw) < p+4 {
			return nil, 0, fmt.Errorf("short array")
		}
		l := int(int32(binary.BigEndian.Uint32(raw[p:])))
		p += 4
		if l < 0 {
			out = append(out, value{null: true})
			continue
		}
		if len(raw) < p+l {
			return nil, 0, fmt.Errorf("short array")
		}
		v, err := elem.decode1(raw[p:p+l], 1)
		if err != nil {
			return nil, 0, err
		}
		out = append(out, v)
		p += l
	}
	return out, lbound, nil
}

func encodeArrayBinary(dst []byte, arr []value, elem *codec) ([]byte, error) {
	hasNull := uint32(0)
	for _, e := range arr {
		if e.null {
			hasNull = 1
		}
	}
	if len(arr) == 0 {
		dst = binary.BigEndian.AppendUint32(dst, 0)
		dst = binary.BigEndian.AppendUint32(dst, 0)
		return binary.BigEndian.AppendUint32(dst, elem.oid), nil
	}
	dst = binary.BigEndian.AppendUint32(dst, 1)
	dst = binary.BigEndian.AppendUint32(dst, hasNull)
	dst = binary.BigEndian.AppendUint32(dst, elem.oid)
	dst = binary.BigEndian.AppendUint32(dst, uint32(len(arr)))
	dst = binary.BigEndian.AppendUint32(dst, 1)
	for _, e := range arr {
		if e.null {
			dst = binary.BigEndian.AppendUint32(dst, 0xFFFFFFFF)
			continue
		}
		at := len(dst)
		dst = append(dst, 0, 0, 0, 0)
		var err error
		dst, err = elem.encode(dst, e, 1)
		if err != nil {
			return nil, err
		}
		binary.BigEndian.PutUint32(dst[at:], uint32(len(dst)-at-4))
	}
	return dst, nil
}

// decodeArrayText parses array_out's form: {a,"b c",NULL}.
func decodeArrayText(raw []byte, elem *codec) ([]value, int64, error) {
	lbound := int64(1)
	if bytes.HasPrefix(raw, []byte("[")) {
		i := bytes.IndexByte(raw, '=')
		if i < 0 {
			return nil, 0, fmt.Errorf("bad array")
		}
		if lb, _, ok := bytes.Cut(raw[1:i], []byte(":")); ok {
			n, err := strconv.ParseInt(string(lb), 10, 32)
			if err != nil {
				return nil, 0, fmt.Errorf("bad array bounds %q", raw[:i])
			}
			lbound = n
		}
		raw = raw[i+1:]
	}
	if len(raw) < 2 || raw[0] != '{' || raw[len(raw)-1] != '}' {
		return nil, 0, fmt.Errorf("bad array %q", truncate(raw))
	}
	body := raw[1 : len(raw)-1]
	out := []value{}
	if len(body) == 0 {
		return out, lbound, nil
	}
	delim := byte(',')
	i := 0
	for {
		var item []byte
		quoted := false
		if i < len(body) && body[i] == '{' {
			return nil, 0, fmt.Errorf("multi-dimensional array")
		}
		if i < len(body) && body[i] == '"' {
			quoted = true
			i++
			for i < len(body) && body[i] != '"' {
				if body[i] == '\\' && i+1 < len(body) {
					i++
				}
				item = append(item, body[i])
				i++
			}
			i++ // closing quote
		} else {
			start := i
			for i < len(body) && body[i] != delim {
				i++
			}
			item = bytes.TrimSpace(body[start:i])
		}
		if !quoted && bytes.EqualFold(item, []byte("NULL")) {
			out = append(out, value{null: true})
		} else {
			if item == nil {
				item = []byte{}
			}
			v, err := elem.decode1(item, 0)
			if err != nil {
				return nil, 0, err
			}
			out = append(out, v)
		}
		if i >= len(body) {
			break
		}
		if body[i] != delim {
			return nil, 0, fmt.Errorf("bad array")
		}
		i++
	}
	return out, lbound, nil
}

// encodeArrayText prints like array_out (quoting elements that need it).
func encodeArrayText(dst []byte, arr []value, elem *codec) ([]byte, error) {
	dst = append(dst, '{')
	var buf []byte
	for i, e := range arr {
		if i > 0 {
			dst = append(dst, ',')
		}
		if e.null {
			dst = append(dst, "NULL"...)
			continue
		}
		var err error
		buf, err = elem.encode(buf[:0], e, 0)
		if err != nil {
			return nil, err
		}
		if needsQuote(buf) {
			dst = append(dst, '"')
			for _, c := range buf {
				if c == '"' || c == '\\' {
					dst = append(dst, '\\')
				}
				dst = append(dst, c)
			}
			dst = append(dst, '"')
		} else {
			dst = append(dst, buf...)
		}
	}
	return append(dst, '}'), nil
}

func needsQuote(b []byte) bool {
	if len(b) == 0 || bytes.EqualFold(b, []byte("NULL")) {
		return true
	}
	for _, c := range b {
		switch c {
		case '{', '}', '"', '\\', ',', ' ', '\t', '\n', '\r', '\v', '\f':
			return true
		}
	}
	return false
}
