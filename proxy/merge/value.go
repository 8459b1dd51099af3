package merge

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"math"
	"math/big"
	"strconv"
	"strings"
)

// PostgreSQL type OIDs the merge understands.
const (
	oidBool        = 16
	oidBytea       = 17
	oidChar        = 18
	oidName        = 19
	oidInt8        = 20
	oidInt2        = 21
	oidInt4        = 23
	oidText        = 25
	oidOID         = 26
	oidFloat4      = 700
	oidFloat8      = 701
	oidUnknown     = 705
	oidJSON        = 114
	oidJSONB       = 3802
	oidBpchar      = 1042
	oidVarchar     = 1043
	oidDate        = 1082
	oidTime        = 1083
	oidTimestamp   = 1114
	oidTimestamptz = 1184
	oidInterval    = 1186
	oidNumeric     = 1700
	oidUUID        = 2950
)

// arrayElem maps array type OIDs to their element types.
var arrayElem = map[uint32]uint32{
	1000: oidBool, 1001: oidBytea, 1002: oidChar, 1003: oidName, 1016: oidInt8, 1005: oidInt2, 1007: oidInt4,
	1009: oidText, 1028: oidOID, 1021: oidFloat4, 1022: oidFloat8, 1014: oidBpchar, 1015: oidVarchar,
	1182: oidDate, 1183: oidTime, 1115: oidTimestamp, 1185: oidTimestamptz, 1187: oidInterval,
	1231: oidNumeric, 2951: oidUUID,
}

type kind uint8

const (
	kOther kind = iota // unknown type: equality of the raw bytes only
	kInt
	kFloat
	kNumeric
	kText
	kBpchar
	kBytea
	kBool
	kDate
	kTime
	kTimestamp
	kTimestamptz
	kInterval
	kUUID
	kArray
	kJSONB // v.b the raw value, v.j parsed (jsonb.go)
)

func kindOf(oid uint32) kind {
	switch oid {
	case oidInt2, oidInt4, oidInt8, oidOID:
		return kInt
	case oidFloat4, oidFloat8:
		return kFloat
	case oidNumeric:
		return kNumeric
	case oidText, oidVarchar, oidName, oidChar, oidUnknown:
		return kText
	case oidBpchar:
		return kBpchar
	case oidBytea:
		return kBytea
	case oidBool:
		return kBool
	case oidDate:
		return kDate
	case oidTime:
		return kTime
	case oidTimestamp:
		return kTimestamp
	case oidTimestamptz:
		return kTimestamptz
	case oidInterval:
		return kInterval
	case oidUUID:
		return kUUID
	case oidJSONB:
		return kJSONB
	}
	if _, ok := arrayElem[oid]; ok {
		return kArray
	}
	return kOther
}

// value is one decoded non-NULL column value (or null). For an array, i
// is its lower bound.
type value struct {
	null bool
	i    int64   // ints, bool (0/1), date (days), time/timestamp(tz) (µs), interval µs
	f    float64 // floats
	d    *decimal
	b    []byte // text, bytea, uuid, raw bytes of unknown types
	mon  int32  // interval months
	day  int32  // interval days
	arr  []value
	j    *jsonNode // jsonb, parsed (v.b holds it as the shard sent it)
}

// codec decodes, compares, hashes and encodes the values of one type.
type codec struct {
	oid  uint32
	kind kind
	elem *codec // arrays
}

func codecFor(oid uint32) *codec {
	c := &codec{oid: oid, kind: kindOf(oid)}
	if c.kind == kArray {
		c.elem = codecFor(arrayElem[oid])
	}
	return c
}

func (c *codec) ordered() bool {
	if c.kind == kArray {
		return c.elem.ordered()
	}
	return c.kind != kOther
}

func errDecode(c *codec, raw []byte, err error) error {
	return &Error{Code: "XX000", Message: fmt.Sprintf("shardproxy merge: cannot decode a value of type %d (%q): %v", c.oid, truncate(raw), err)}
}

func truncate(b []byte) string {
	if len(b) > 40 {
		return string(b[:40]) + "..."
	}
	return string(b)
}

// decode reads raw (nil = NULL) in format (0 text, 1 binary).
func (c *codec) decode(raw []byte, format int16) (value, error) {
	if raw == nil {
		return value{null: true}, nil
	}
	v, err := c.decode1(raw, format)
	if err != nil {
		return value{}, errDecode(c, raw, err)
	}
	return v, nil
}

func (c *codec) decode1(raw []byte, format int16) (value, error) {
	var v value
	bin := format == 1
	switch c.kind {
	case kInt:
		if bin {
			switch len(raw) {
			case 2:
				v.i = int64(int16(binary.BigEndian.Uint16(raw)))
			case 4:
				if c.oid == oidOID {
					v.i = int64(binary.BigEndian.Uint32(raw))
				} else {
					v.i = int64(int32(binary.BigEndian.Uint32(raw)))
				}
			case 8:
				v.i = int64(binary.BigEndian.Uint64(raw))
			default:
				return v, fmt.Errorf("bad integer length %d", len(raw))
			}
			return v, nil
		}
		n, err := strconv.ParseInt(string(raw), 10, 64)
		v.i = n
		return v, err
	case kFloat:
		if bin {
			switch len(raw) {
			case 4:
				v.f = float64(math.Float32frombits(binary.BigEndian.Uint32(raw)))
			case 8:
				v.f = math.Float64frombits(binary.BigEndian.Uint64(raw))
			default:
				return v, fmt.Errorf("bad float length %d", len(raw))
			}
			return v, nil
		}
		switch string(raw) {
		case "NaN":
			v.f = math.NaN()
		case "Infinity":
			v.f = math.Inf(1)
		case "-Infinity":
			v.f = math.Inf(-1)
		default:
			bits := 64
			if c.oid == oidFloat4 {
				bits = 32
			}
			f, err := strconv.ParseFloat(string(raw), bits)
			v.f = f
			return v, err
		}
		return v, nil
	case kNumeric:
		var err error
		if bin {
			v.d, err = decodeNumericBinary(raw)
		} else {
			v.d, err = parseDecimal(string(raw))
		}
		return v, err
	case kText, kBpchar, kOther:
		v.b = raw
		return v, nil
	case kJSONB:
		var err error
		v.b = raw
		v.j, err = parseJSONB(raw, format)
		return v, err
	case kBytea:
		if bin {
			v.b = raw
			return v, nil
		}
		if !bytes.HasPrefix(raw, []byte(`\x`)) {
			return v, fmt.Errorf("bytea in escape format (set bytea_output = hex)")
		}
		b := make([]byte, hex.DecodedLen(len(raw)-2))
		_, err := hex.Decode(b, raw[2:])
		v.b = b
		return v, err
	case kBool:
		if bin {
			if len(raw) != 1 {
				return v, fmt.Errorf("bad bool")
			}
			v.i = int64(raw[0])
			return v, nil
		}
		switch string(raw) {
		case "t":
			v.i = 1
		case "f":
		default:
			return v, fmt.Errorf("bad bool")
		}
		return v, nil
	case kUUID:
		if bin {
			if len(raw) != 16 {
				return v, fmt.Errorf("bad uuid")
			}
			v.b = raw
			return v, nil
		}
		s := strings.Trim(strings.ReplaceAll(string(raw), "-", ""), "{}")
		b, err := hex.DecodeString(s)
		if err == nil && len(b) != 16 {
			err = fmt.Errorf("bad uuid")
		}
		v.b = b
		return v, err
	case kDate:
		if bin {
			if len(raw) != 4 {
				return v, fmt.Errorf("bad date")
			}
			v.i = int64(int32(binary.BigEndian.Uint32(raw)))
			return v, nil
		}
		d, err := parseDate(string(raw))
		v.i, v.b = d, raw // the text, for encoding back to text (see encode)
		return v, err
	case kTime:
		if bin {
			if len(raw) != 8 {
				return v, fmt.Errorf("bad time")
			}
			v.i = int64(binary.BigEndian.Uint64(raw))
			return v, nil
		}
		t, err := parseClock(string(raw))
		v.i, v.b = t, raw
		return v, err
	case kTimestamp, kTimestamptz:
		if bin {
			if len(raw) != 8 {
				return v, fmt.Errorf("bad timestamp")
			}
			v.i = int64(binary.BigEndian.Uint64(raw))
			return v, nil
		}
		t, err := parseTimestamp(string(raw), c.kind == kTimestamptz)
		v.i, v.b = t, raw
		return v, err
	case kInterval:
		if bin {
			if len(raw) != 16 {
				return v, fmt.Errorf("bad interval")
			}
			v.i = int64(binary.BigEndian.Uint64(raw))
			v.day = int32(binary.BigEndian.Uint32(raw[8:]))
			v.mon = int32(binary.BigEndian.Uint32(raw[12:]))
			return v, nil
		}
		return parseInterval(string(raw))
	case kArray:
		var err error
		if bin {
			v.arr, v.i, err = decodeArrayBinary(raw, c.elem)
		} else {
			v.arr, v.i, err = decodeArrayText(raw, c.elem)
		}
		return v, err
	}
	return v, fmt.Errorf("unsupported type")
}

// compare orders two decoded values of this type (NULLs are handled by
// the caller). Text compares bytewise (collation "C").
func (c *codec) compare(a, b value) int {
	switch c.kind {
	case kInt, kBool, kDate, kTime, kTimestamp, kTimestamptz:
		return cmpInt(a.i, b.i)
	case kFloat:
		return cmpFloat(a.f, b.f)
	case kNumeric:
		return cmpDecimal(a.d, b.d)
	case kBpchar:
		return bytes.Compare(bytes.TrimRight(a.b, " "), bytes.TrimRight(b.b, " "))
	case kInterval:
		return intervalSpan(a).Cmp(intervalSpan(b))
	case kArray:
		return c.compareArrays(a, b)
	case kJSONB:
		return compareJSONB(a.j, b.j)
	}
	return bytes.Compare(a.b, b.b)
}

// compareArrays orders one-dimensional arrays as array_cmp: element by
// element (a NULL element is larger than any other), then the shorter
// (an empty array has no dimension) first, then by lower bound.
func (c *codec) compareArrays(a, b value) int {
	for i := 0; i < len(a.arr) && i < len(b.arr); i++ {
		x, y := a.arr[i], b.arr[i]
		switch {
		case x.null && y.null:
			continue
		case x.null:
			return 1
		case y.null:
			return -1
		}
		if r := c.elem.compare(x, y); r != 0 {
			return r
		}
	}
	if r := cmpInt(int64(len(a.arr)), int64(len(b.arr))); r != 0 {
		return r
	}
	if len(a.arr) == 0 {
		return 0
	}
	return cmpInt(a.i, b.i)
}

func cmpInt(a, b int64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// cmpFloat orders like float8_cmp: NaN is larger than everything and
// equal to itself.
func cmpFloat(a, b float64) int {
	an, bn := math.IsNaN(a), math.IsNaN(b)
	switch {
	case an && bn:
		return 0
	case an:
		return 1
	case bn:
		return -1
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

var (
	usecPerDay = big.NewInt(86400000000)
	daysPerMon = big.NewInt(30)
)

// intervalSpan is interval_cmp's key: months as 30 days, days as 24 h.
func intervalSpan(v value) *big.Int {
	s := big.NewInt(int64(v.mon))
	s.Mul(s, daysPerMon)
	s.Add(s, big.NewInt(int64(v.day)))
	s.Mul(s, usecPerDay)
	return s.Add(s, big.NewInt(v.i))
}

// appendKey appends a canonical encoding of v for hashing: values that
// compare equal give equal keys (1.0 = 1.00, -0 = 0, '1 mon' = '30 days',
// bpchar without trailing blanks).
func (c *codec) appendKey(dst []byte, v value) []byte {
	if v.null {
		return append(dst, 0)
	}
	dst = append(dst, 1)
	switch c.kind {
	case kInt, kBool, kDate, kTime, kTimestamp, kTimestamptz:
		return binary.BigEndian.AppendUint64(dst, uint64(v.i))
	case kFloat:
		f := v.f
		if f == 0 {
			f = 0
		}
		if math.IsNaN(f) {
			f = math.NaN()
		}
		return binary.BigEndian.AppendUint64(dst, math.Float64bits(f))
	case kNumeric:
		return appendLen(dst, []byte(v.d.key()))
	case kBpchar:
		return appendLen(dst, bytes.TrimRight(v.b, " "))
	case kInterval:
		return appendLen(dst, []byte(intervalSpan(v).String()))
	case kArray:
		dst = binary.BigEndian.AppendUint32(dst, uint32(len(v.arr)))
		if len(v.arr) > 0 { // as array_eq: the lower bound counts too
			dst = binary.BigEndian.AppendUint64(dst, uint64(v.i))
		}
		for _, e := range v.arr {
			dst = c.elem.appendKey(dst, e)
		}
		return dst
	case kJSONB:
		return appendJSONBKey(dst, v.j)
	}
	return appendLen(dst, v.b)
}

func appendLen(dst, b []byte) []byte {
	dst = binary.BigEndian.AppendUint32(dst, uint32(len(b)))
	return append(dst, b...)
}

// encode appends v in format; NULL is the caller's business.
func (c *codec) encode(dst []byte, v value, format int16) ([]byte, error) {
	bin := format == 1
	switch c.kind {
	case kInt:
		if !bin {
			return strconv.AppendInt(dst, v.i, 10), nil
		}
		switch c.oid {
		case oidInt2:
			return binary.BigEndian.AppendUint16(dst, uint16(v.i)), nil
		case oidInt4, oidOID:
			return binary.BigEndian.AppendUint32(dst, uint32(v.i)), nil
		}
		return binary.BigEndian.AppendUint64(dst, uint64(v.i)), nil
	case kFloat:
		if bin {
			if c.oid == oidFloat4 {
				return binary.BigEndian.AppendUint32(dst, math.Float32bits(float32(v.f))), nil
			}
			return binary.BigEndian.AppendUint64(dst, math.Float64bits(v.f)), nil
		}
		bits := 64
		if c.oid == oidFloat4 {
			bits = 32
		}
		return append(dst, formatFloat(v.f, bits)...), nil
	case kNumeric:
		if bin {
			return encodeNumericBinary(dst, v.d), nil
		}
		return append(dst, v.d.String()...), nil
	case kText, kBpchar:
		return append(dst, v.b...), nil
	case kBytea:
		if bin {
			return append(dst, v.b...), nil
		}
		dst = append(dst, `\x`...)
		return hex.AppendEncode(dst, v.b), nil
	case kBool:
		if bin {
			return append(dst, byte(v.i)), nil
		}
		if v.i != 0 {
			return append(dst, 't'), nil
		}
		return append(dst, 'f'), nil
	case kUUID:
		if bin {
			return append(dst, v.b...), nil
		}
		h := hex.EncodeToString(v.b)
		return append(dst, h[:8]+"-"+h[8:12]+"-"+h[12:16]+"-"+h[16:20]+"-"+h[20:]...), nil
	case kInterval:
		if bin {
			dst = binary.BigEndian.AppendUint64(dst, uint64(v.i))
			dst = binary.BigEndian.AppendUint32(dst, uint32(v.day))
			return binary.BigEndian.AppendUint32(dst, uint32(v.mon)), nil
		}
		return append(dst, formatInterval(v)...), nil
	case kDate, kTime, kTimestamp:
		if bin {
			if c.kind == kDate {
				return binary.BigEndian.AppendUint32(dst, uint32(v.i)), nil
			}
			return binary.BigEndian.AppendUint64(dst, uint64(v.i)), nil
		}
		if v.b != nil { // decoded from text: that text, in the session's DateStyle (and TimeZone)
			return append(dst, v.b...), nil
		}
	case kTimestamptz:
		if bin {
			return binary.BigEndian.AppendUint64(dst, uint64(v.i)), nil
		}
		if v.b != nil {
			return append(dst, v.b...), nil
		}
	case kArray:
		if bin {
			return encodeArrayBinary(dst, v.arr, c.elem)
		}
		return encodeArrayText(dst, v.arr, c.elem)
	}
	return nil, &Error{Code: "0A000", Message: fmt.Sprintf("shardproxy merge: cannot convert a value of type %d to format %d", c.oid, format)}
}

// formatFloat prints like float8out/float4out with extra_float_digits ≥ 1
// (the default since PostgreSQL 12): the shortest exact digits, in
// exponent form when the decimal exponent is < -4 or ≥ 15 (6 for float4).
func formatFloat(f float64, bits int) string {
	switch {
	case math.IsNaN(f):
		return "NaN"
	case math.IsInf(f, 1):
		return "Infinity"
	case math.IsInf(f, -1):
		return "-Infinity"
	}
	e := strconv.FormatFloat(f, 'e', -1, bits)
	mant, exps, _ := strings.Cut(e, "e")
	exp, _ := strconv.Atoi(exps)
	limit := 15
	if bits == 32 {
		limit = 6
	}
	if exp < -4 || exp >= limit {
		return e
	}
	return fixed(mant, exp)
}

// fixed writes mantissa "d.ddd" (maybe signed) times 10^exp without an
// exponent.
func fixed(mant string, exp int) string {
	neg := strings.HasPrefix(mant, "-")
	mant = strings.TrimPrefix(mant, "-")
	digits := strings.Replace(mant, ".", "", 1)
	point := 1 + exp // digits before the point
	var s string
	switch {
	case point <= 0:
		s = "0." + strings.Repeat("0", -point) + digits
	case point >= len(digits):
		s = digits + strings.Repeat("0", point-len(digits))
	default:
		s = digits[:point] + "." + digits[point:]
	}
	if neg {
		s = "-" + s
	}
	return s
}

// Dates and times in text form assume DateStyle ISO (PostgreSQL's default).

// parseDate reads YYYY-MM-DD [BC] or ±infinity into days since 2000-01-01.
func parseDate(s string) (int64, error) {
	switch s {
	case "infinity":
		return math.MaxInt32, nil
	case "-infinity":
		return math.MinInt32, nil
	}
	bc := strings.HasSuffix(s, " BC")
	s = strings.TrimSuffix(s, " BC")
	parts := strings.Split(s, "-")
	if len(parts) != 3 {
		return 0, fmt.Errorf("date %q is not in ISO format (DateStyle must be ISO)", s)
	}
	y, e1 := strconv.Atoi(parts[0])
	m, e2 := strconv.Atoi(parts[1])
	d, e3 := strconv.Atoi(parts[2])
	if e1 != nil || e2 != nil || e3 != nil {
		return 0, fmt.Errorf("bad date %q", s)
	}
	if bc {
		y = 1 - y
	}
	return daysFromCivil(y, m, d) - daysFromCivil(2000, 1, 1), nil
}

// daysFromCivil counts days from 1970-01-01 in the proleptic Gregorian
// calendar (year 0 = 1 BC).
func daysFromCivil(y, m, d int) int64 {
	if m <= 2 {
		y--
	}
	era := y / 400
	if y < 0 && y%400 != 0 {
		era = (y - 399) / 400
	}
	yoe := y - era*400
	mp := (m + 9) % 12
	doy := (153*mp+2)/5 + d - 1
	doe := yoe*365 + yoe/4 - yoe/100 + doy
	return int64(era)*146097 + int64(doe) - 719468
}

// parseClock reads HH:MM:SS[.ffffff] into microseconds.
func parseClock(s string) (int64, error) {
	parts := strings.Split(s, ":")
	if len(parts) < 2 || len(parts) > 3 {
		return 0, fmt.Errorf("bad time %q", s)
	}
	h, e1 := strconv.ParseInt(parts[0], 10, 64)
	m, e2 := strconv.ParseInt(parts[1], 10, 64)
	if e1 != nil || e2 != nil {
		return 0, fmt.Errorf("bad time %q", s)
	}
	var us int64
	if len(parts) == 3 {
		sec, frac, _ := strings.Cut(parts[2], ".")
		sv, err := strconv.ParseInt(sec, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("bad time %q", s)
		}
		us = sv * 1e6
		if frac != "" {
			frac = (frac + "000000")[:6]
			fv, err := strconv.ParseInt(frac, 10, 64)
			if err != nil {
				return 0, fmt.Errorf("bad time %q", s)
			}
			us += fv
		}
	}
	return (h*60+m)*60*1e6 + us, nil
}

// parseTimestamp reads "YYYY-MM-DD HH:MM:SS[.f][±TZ][ BC]" into µs since
// 2000-01-01 00:00 (UTC for timestamptz).
func parseTimestamp(s string, tz bool) (int64, error) {
	switch s {
	case "infinity":
		return math.MaxInt64, nil
	case "-infinity":
		return math.MinInt64, nil
	}
	bc := strings.HasSuffix(s, " BC")
	s = strings.TrimSuffix(s, " BC")
	date, clock, ok := strings.Cut(s, " ")
	if !ok {
		return 0, fmt.Errorf("timestamp %q is not in ISO format (DateStyle must be ISO)", s)
	}
	if bc {
		date += " BC"
	}
	days, err := parseDate(date)
	if err != nil {
		return 0, err
	}
	var off int64
	if tz {
		i := strings.LastIndexAny(clock, "+-")
		if i < 0 {
			return 0, fmt.Errorf("timestamptz %q without offset", s)
		}
		sign := int64(1)
		if clock[i] == '-' {
			sign = -1
		}
		zp := strings.Split(clock[i+1:], ":")
		clock = clock[:i]
		mult := []int64{3600, 60, 1}
		for j, p := range zp {
			if j >= 3 {
				break
			}
			n, err := strconv.ParseInt(p, 10, 64)
			if err != nil {
				return 0, fmt.Errorf("bad offset in %q", s)
			}
			off += n * mult[j]
		}
		off *= sign * 1e6
	}
	us, err := parseClock(clock)
	if err != nil {
		return 0, err
	}
	return days*86400*1e6 + us - off, nil
}

// parseInterval reads IntervalStyle postgres output: "1 year 2 mons
// -3 days +04:05:06.5".
func parseInterval(s string) (value, error) {
	var v value
	f := strings.Fields(s)
	for i := 0; i < len(f); i++ {
		t := f[i]
		if strings.Contains(t, ":") {
			neg := strings.HasPrefix(t, "-")
			us, err := parseClock(strings.TrimLeft(t, "+-"))
			if err != nil {
				return v, err
			}
			if neg {
				us = -us
			}
			v.i += us
			continue
		}
		n, err := strconv.ParseInt(t, 10, 64)
		if err != nil || i+1 >= len(f) {
			return v, fmt.Errorf("interval %q is not in IntervalStyle postgres", s)
		}
		i++
		switch strings.TrimSuffix(f[i], "s") {
		case "year":
			v.mon += int32(n * 12)
		case "mon":
			v.mon += int32(n)
		case "day":
			v.day += int32(n)
		default:
			return v, fmt.Errorf("interval %q is not in IntervalStyle postgres", s)
		}
	}
	return v, nil
}

// formatInterval prints like interval_out with IntervalStyle postgres.
func formatInterval(v value) string {
	var b strings.Builder
	isZero, isBefore := true, false
	part := func(n int64, unit string) {
		if n == 0 {
			return
		}
		if !isZero {
			b.WriteByte(' ')
		}
		if isBefore && n > 0 {
			b.WriteByte('+')
		}
		b.WriteString(strconv.FormatInt(n, 10))
		b.WriteByte(' ')
		b.WriteString(unit)
		if n != 1 {
			b.WriteByte('s')
		}
		isBefore = n < 0
		isZero = false
	}
	part(int64(v.mon/12), "year")
	part(int64(v.mon%12), "mon")
	part(int64(v.day), "day")
	us := v.i
	if isZero || us != 0 {
		minus := us < 0
		if minus {
			us = -us
		}
		h := us / 3600e6
		m := us / 60e6 % 60
		sec := us / 1e6 % 60
		frac := us % 1e6
		if !isZero {
			b.WriteByte(' ')
		}
		if minus {
			b.WriteByte('-')
		} else if isBefore {
			b.WriteByte('+')
		}
		fmt.Fprintf(&b, "%02d:%02d:%02d", h, m, sec)
		if frac != 0 {
			fs := strings.TrimRight(fmt.Sprintf("%06d", frac), "0")
			b.WriteString("." + fs)
		}
	}
	return b.String()
}
