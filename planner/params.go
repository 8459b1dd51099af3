package planner

import (
	"encoding/binary"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/shardproxy/shardproxy/planner/plan"
	"github.com/shardproxy/shardproxy/router"
	"github.com/shardproxy/shardproxy/topology"
)

// Params are the values of one execution: the Bind message's parameter
// values, format codes and types, and the session's routing override.
type Params struct {
	// Values are the Bind parameter values; nil is SQL NULL.
	Values [][]byte
	// Formats follow Bind: none (all text), one (applies to all) or one
	// per value; 0 text, 1 binary.
	Formats []int16
	// OIDs are the parameter types from Parse (0 or missing: unspecified,
	// the key column's type is assumed).
	OIDs []uint32
	// ForcedShard is the session's `SET shardproxy.shard = 'NAME'`: every
	// statement that is not handled by the proxy itself goes to that shard.
	// A hint comment in the statement wins over it.
	ForcedShard string
}

func (p *Params) format(i int) int16 {
	switch len(p.Formats) {
	case 0:
		return 0
	case 1:
		return p.Formats[0]
	}
	if i < len(p.Formats) {
		return p.Formats[i]
	}
	return 0
}

func (p *Params) oid(i int) uint32 {
	if i < len(p.OIDs) {
		return p.OIDs[i]
	}
	return 0
}

// AppendKeys returns params extended by keys (canonical text, format 0), as
// an AllocateKeys plan requires: the original values keep their positions
// and the i-th key becomes parameter $(len(params.Values)+1+i).
func AppendKeys(params Params, keys []string) Params {
	n := len(params.Values)
	out := Params{ForcedShard: params.ForcedShard}
	out.Values = make([][]byte, 0, n+len(keys))
	out.Values = append(out.Values, params.Values...)
	out.Formats = make([]int16, n, n+len(keys))
	for i := 0; i < n; i++ {
		out.Formats[i] = params.format(i)
	}
	out.OIDs = make([]uint32, n, n+len(keys))
	copy(out.OIDs, params.OIDs)
	for _, k := range keys {
		out.Values = append(out.Values, []byte(k))
		out.Formats = append(out.Formats, 0)
		out.OIDs = append(out.OIDs, 0)
	}
	return out
}

// PostgreSQL type OIDs the planner understands for key parameters.
const (
	oidBool    = 16
	oidName    = 19
	oidInt8    = 20
	oidInt2    = 21
	oidInt4    = 23
	oidText    = 25
	oidBpchar  = 1042
	oidVarchar = 1043
	oidUUID    = 2950
	oidNumeric = 1700
)

// oidFits reports whether a parameter of type oid can be decoded as a key
// of type kt (0 = unspecified fits everything).
func oidFits(kt topology.KeyType, oid uint32) bool {
	switch oid {
	case 0:
		return true
	case oidInt2, oidInt4, oidInt8:
		return kt == topology.Int
	case oidText, oidVarchar, oidBpchar, oidName:
		return kt == topology.Text
	case oidUUID:
		return kt == topology.UUID
	}
	return false
}

var errUnknownKey = fmt.Errorf("key value not usable for routing")

// paramKey decodes Bind value i as a key. null is true for SQL NULL.
// errUnknownKey means "cannot tell" (type we do not decode); other errors
// are client errors.
func paramKey(p *Params, i int, kt topology.KeyType) (v router.Value, null bool, err error) {
	if i < 0 || i >= len(p.Values) {
		return router.Value{}, false, &plan.Error{Code: "08P01",
			Message: fmt.Sprintf("bind message supplies %d parameters, but the statement uses $%d", len(p.Values), i+1)}
	}
	b := p.Values[i]
	if b == nil {
		return router.Value{}, true, nil
	}
	oid := p.oid(i)
	f := p.format(i)
	if !oidFits(kt, oid) {
		if f == 0 && oid == oidNumeric && kt == topology.Int {
			// text numeric: usable when integral
			v, err := router.KeyFromText(kt, string(b))
			if err != nil {
				return router.Value{}, false, errUnknownKey
			}
			return v, false, nil
		}
		return router.Value{}, false, errUnknownKey
	}
	if oid == oidBpchar {
		b = []byte(strings.TrimRight(string(b), " "))
	}
	if f == 1 && kt == topology.Int {
		if err := binaryIntWidth(oid, len(b), i); err != nil {
			return router.Value{}, false, err
		}
	}
	v, err = router.KeyFromParam(kt, f, b)
	return v, false, err
}

// CheckParams returns the error PostgreSQL's Bind would raise for a
// parameter value of p that the proxy can judge without the server: text
// that is not UTF-8 or holds a NUL (22021), and a binary integer of the
// wrong width for its declared type (08P01, 22P03). For statements the
// proxy runs itself (over several shards), whose Bind it answers: the
// shards would see the values only at Execute, or not at all.
func CheckParams(p Params) error {
	for i, v := range p.Values {
		if v == nil {
			continue
		}
		if p.format(i) == 0 {
			text := string(v)
			if err := router.CheckText(text); err != nil {
				return err
			}
			if err := textInt(p.oid(i), text); err != nil {
				return err
			}
			continue
		}
		switch oid := p.oid(i); oid {
		case oidInt2, oidInt4, oidInt8:
			if err := binaryIntWidth(oid, len(v), i); err != nil {
				return err
			}
		}
	}
	return nil
}

// textInt returns PostgreSQL 15's input error for text v as a parameter
// of declared type oid when that is smallint, integer or bigint (nil for
// other types): 22P02 unless v is optional ASCII white space, a sign and
// decimal digits, 22003 outside the type's range.
func textInt(oid uint32, v string) error {
	var bits int
	var name string
	switch oid {
	case oidInt2:
		bits, name = 16, "smallint"
	case oidInt4:
		bits, name = 32, "integer"
	case oidInt8:
		bits, name = 64, "bigint"
	default:
		return nil
	}
	_, err := strconv.ParseInt(strings.Trim(v, " \t\n\v\f\r"), 10, bits)
	if errors.Is(err, strconv.ErrRange) {
		return &plan.Error{Code: "22003", Message: fmt.Sprintf("value %q is out of range for type %s", v, name)}
	}
	if err != nil {
		return &plan.Error{Code: "22P02", Message: fmt.Sprintf("invalid input syntax for type %s: %q", name, v)}
	}
	return nil
}

// binaryIntWidth returns PostgreSQL's Bind error for a binary integer
// parameter i of n bytes where its type (oid; unspecified is taken as the
// bigint of a key column) reads a fixed width: 08P01 when short, 22P03
// when long; nil when n is the width.
func binaryIntWidth(oid uint32, n, i int) error {
	width := 8
	switch oid {
	case oidInt4:
		width = 4
	case oidInt2:
		width = 2
	}
	switch {
	case n < width:
		return &plan.Error{Code: "08P01", Message: "insufficient data left in message"}
	case n > width:
		return &plan.Error{Code: "22P03", Message: fmt.Sprintf("incorrect binary data format in bind parameter %d", i+1)}
	}
	return nil
}

// paramArray decodes Bind value i as an array of keys (= ANY($n)). A nil
// element is NULL.
func paramArray(p *Params, i int, kt topology.KeyType) ([]*router.Value, error) {
	if i < 0 || i >= len(p.Values) {
		return nil, &plan.Error{Code: "08P01",
			Message: fmt.Sprintf("bind message supplies %d parameters, but the statement uses $%d", len(p.Values), i+1)}
	}
	b := p.Values[i]
	if b == nil {
		return nil, nil
	}
	if p.format(i) == 0 {
		elems, ok := parseTextArray(string(b))
		if !ok {
			return nil, errUnknownKey
		}
		out := make([]*router.Value, len(elems))
		for j, e := range elems {
			if e == nil {
				continue
			}
			v, err := router.KeyFromText(kt, *e)
			if err != nil {
				return nil, errUnknownKey
			}
			out[j] = &v
		}
		return out, nil
	}
	return parseBinaryArray(b, kt)
}

// parseBinaryArray decodes array_send output: ndim, has-null flag, element
// type, (size, lower bound) per dimension, then (length, bytes) per
// element with length -1 for NULL. Multi-dimensional arrays are flattened.
func parseBinaryArray(b []byte, kt topology.KeyType) ([]*router.Value, error) {
	if len(b) < 12 {
		return nil, errUnknownKey
	}
	ndim := int(int32(binary.BigEndian.Uint32(b)))
	elemOID := binary.BigEndian.Uint32(b[8:])
	if ndim < 0 || ndim > 6 || !oidFits(kt, elemOID) {
		return nil, errUnknownKey
	}
	pos := 12
	n := 1
	if ndim == 0 {
		n = 0
	}
	for d := 0; d < ndim; d++ {
		if len(b) < pos+8 {
			return nil, errUnknownKey
		}
		sz := int(int32(binary.BigEndian.Uint32(b[pos:])))
		if sz < 0 || sz > 1<<24 {
			return nil, errUnknownKey
		}
		n *= sz
		pos += 8
	}
	out := make([]*router.Value, 0, n)
	for j := 0; j < n; j++ {
		if len(b) < pos+4 {
			return nil, errUnknownKey
		}
		l := int(int32(binary.BigEndian.Uint32(b[pos:])))
		pos += 4
		if l < 0 {
			out = append(out, nil)
			continue
		}
		if len(b) < pos+l {
			return nil, errUnknownKey
		}
		eb := b[pos : pos+l]
		if elemOID == oidBpchar {
			eb = []byte(strings.TrimRight(string(eb), " "))
		}
		v, err := router.KeyFromBinary(kt, eb)
		if err != nil {
			return nil, errUnknownKey
		}
		out = append(out, &v)
		pos += l
	}
	return out, nil
}

// parseTextArray parses a one-dimensional array literal in PostgreSQL's
// text form: {a,b,"c d",NULL}. Unquoted NULL (any case) is a nil element.
// Nested arrays are flattened.
func parseTextArray(s string) ([]*string, bool) {
	s = strings.TrimSpace(s)
	if len(s) < 2 || s[0] != '{' || s[len(s)-1] != '}' {
		return nil, false
	}
	body := s[1 : len(s)-1]
	var out []*string
	i := 0
	for i < len(body) {
		for i < len(body) && (body[i] == ' ' || body[i] == '{' || body[i] == '}') {
			i++
		}
		if i >= len(body) {
			break
		}
		var b strings.Builder
		quoted := false
		if body[i] == '"' {
			quoted = true
			i++
			for i < len(body) && body[i] != '"' {
				if body[i] == '\\' && i+1 < len(body) {
					i++
				}
				b.WriteByte(body[i])
				i++
			}
			if i >= len(body) {
				return nil, false
			}
			i++ // closing quote
		} else {
			for i < len(body) && body[i] != ',' && body[i] != '}' {
				if body[i] == '\\' && i+1 < len(body) {
					i++
				}
				b.WriteByte(body[i])
				i++
			}
		}
		e := b.String()
		if !quoted {
			e = strings.TrimSpace(e)
		}
		if !quoted && strings.EqualFold(e, "null") {
			out = append(out, nil)
		} else {
			out = append(out, &e)
		}
		for i < len(body) && (body[i] == ' ' || body[i] == '}') {
			i++
		}
		if i < len(body) {
			if body[i] != ',' {
				return nil, false
			}
			i++
		}
	}
	return out, true
}

func quoteIdent(s string) string {
	simple := s != ""
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c == '_' || ('a' <= c && c <= 'z') || (i > 0 && '0' <= c && c <= '9')) {
			simple = false
			break
		}
	}
	if simple {
		return s
	}
	return `"` + strings.ReplaceAll(s, `"`, `""`) + `"`
}

var _ = strconv.Itoa
