package merge

import (
	"encoding/binary"
	"errors"
	"math/big"
	"strings"
)

// decimal is an exact PostgreSQL numeric: value = unscaled / 10^scale,
// printed with scale digits after the point (scale is PostgreSQL's dscale).
// special is 0 for finite values, else one of nanSpecial, posInf, negInf.
type decimal struct {
	unscaled big.Int
	scale    int
	special  int8
}

const (
	finite     = 0
	posInf     = 1
	negInf     = -1
	nanSpecial = 2
)

var bigTen = big.NewInt(10)

func pow10(n int) *big.Int {
	return new(big.Int).Exp(bigTen, big.NewInt(int64(n)), nil)
}

// parseDecimal reads numeric's text form (also integers).
func parseDecimal(s string) (*decimal, error) {
	d := &decimal{}
	switch strings.ToLower(s) {
	case "nan":
		d.special = nanSpecial
		return d, nil
	case "infinity", "+infinity", "inf", "+inf":
		d.special = posInf
		return d, nil
	case "-infinity", "-inf":
		d.special = negInf
		return d, nil
	}
	neg := false
	if s != "" && (s[0] == '-' || s[0] == '+') {
		neg = s[0] == '-'
		s = s[1:]
	}
	exp := 0
	if i := strings.IndexAny(s, "eE"); i >= 0 {
		e, ok := atoi(s[i+1:])
		if !ok {
			return nil, errors.New("invalid numeric " + s)
		}
		exp = e
		s = s[:i]
	}
	intPart, frac, _ := strings.Cut(s, ".")
	digits := intPart + frac
	if digits == "" {
		return nil, errors.New("invalid numeric")
	}
	if _, ok := d.unscaled.SetString(digits, 10); !ok {
		return nil, errors.New("invalid numeric " + s)
	}
	d.scale = len(frac) - exp
	if d.scale < 0 {
		d.unscaled.Mul(&d.unscaled, pow10(-d.scale))
		d.scale = 0
	}
	if neg {
		d.unscaled.Neg(&d.unscaled)
	}
	return d, nil
}

func atoi(s string) (int, bool) {
	n, neg := 0, false
	if s != "" && (s[0] == '+' || s[0] == '-') {
		neg = s[0] == '-'
		s = s[1:]
	}
	if s == "" {
		return 0, false
	}
	for _, c := range []byte(s) {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int(c-'0')
	}
	if neg {
		n = -n
	}
	return n, true
}

// String prints d like numeric_out.
func (d *decimal) String() string {
	switch d.special {
	case nanSpecial:
		return "NaN"
	case posInf:
		return "Infinity"
	case negInf:
		return "-Infinity"
	}
	s := new(big.Int).Abs(&d.unscaled).String()
	if d.scale > 0 {
		if len(s) <= d.scale {
			s = strings.Repeat("0", d.scale-len(s)+1) + s
		}
		s = s[:len(s)-d.scale] + "." + s[len(s)-d.scale:]
	}
	if d.unscaled.Sign() < 0 {
		s = "-" + s
	}
	return s
}

// rescale returns d's unscaled value at scale s ≥ d.scale.
func (d *decimal) at(s int) *big.Int {
	if s == d.scale {
		return &d.unscaled
	}
	return new(big.Int).Mul(&d.unscaled, pow10(s-d.scale))
}

// add returns a+b with PostgreSQL's result scale (the larger one).
func addDecimal(a, b *decimal) *decimal {
	if a.special != finite || b.special != finite {
		return addSpecial(a, b)
	}
	s := a.scale
	if b.scale > s {
		s = b.scale
	}
	r := &decimal{scale: s}
	r.unscaled.Add(a.at(s), b.at(s))
	return r
}

func addSpecial(a, b *decimal) *decimal {
	if a.special == nanSpecial || b.special == nanSpecial {
		return &decimal{special: nanSpecial}
	}
	if a.special != finite && b.special != finite && a.special != b.special {
		return &decimal{special: nanSpecial}
	}
	if a.special != finite {
		return &decimal{special: a.special}
	}
	return &decimal{special: b.special}
}

// cmpDecimal orders like numeric_cmp: -Inf < finite < +Inf < NaN.
func cmpDecimal(a, b *decimal) int {
	ra, rb := specialRank(a), specialRank(b)
	if ra != rb {
		if ra < rb {
			return -1
		}
		return 1
	}
	if ra != 0 {
		return 0
	}
	s := a.scale
	if b.scale > s {
		s = b.scale
	}
	return a.at(s).Cmp(b.at(s))
}

func specialRank(d *decimal) int {
	switch d.special {
	case negInf:
		return -1
	case posInf:
		return 1
	case nanSpecial:
		return 2
	}
	return 0
}

// key is a canonical form for hashing: equal values (1.0 and 1.00) give
// equal keys.
func (d *decimal) key() string {
	if d.special != finite {
		return d.String()
	}
	u := new(big.Int).Set(&d.unscaled)
	s := d.scale
	m := new(big.Int)
	for s > 0 {
		q, r := new(big.Int).QuoRem(u, bigTen, m)
		if r.Sign() != 0 {
			break
		}
		u = q
		s--
	}
	return u.String() + "e-" + itoa(s)
}

func itoa(n int) string { return big.NewInt(int64(n)).String() }

// weightAndFirst returns numeric's base-10000 weight and first (most
// significant) base-10000 digit of d (0, 0 for zero).
func (d *decimal) weightAndFirst() (int, int64) {
	if d.unscaled.Sign() == 0 {
		return 0, 0
	}
	s4 := (d.scale + 3) / 4 * 4
	if d.scale <= 0 {
		s4 = 0
	}
	u := new(big.Int).Abs(d.at(s4))
	digits := base10000(u)
	return len(digits) - 1 - s4/4, digits[0]
}

// base10000 returns u's base-10000 digits, most significant first.
func base10000(u *big.Int) []int64 {
	if u.Sign() == 0 {
		return nil
	}
	var out []int64
	x := new(big.Int).Set(u)
	m := new(big.Int)
	b := big.NewInt(10000)
	for x.Sign() > 0 {
		x.QuoRem(x, b, m)
		out = append(out, m.Int64())
	}
	for i, j := 0, len(out)-1; i < j; i, j = i+1, j-1 {
		out[i], out[j] = out[j], out[i]
	}
	return out
}

// divDecimal is numeric_div: a/b rounded (half away from zero) to the
// scale select_div_scale picks.
func divDecimal(a, b *decimal) (*decimal, error) {
	if a.special != finite || b.special != finite {
		switch {
		case a.special == nanSpecial || b.special == nanSpecial:
			return &decimal{special: nanSpecial}, nil
		case a.special != finite && b.special != finite:
			return &decimal{special: nanSpecial}, nil
		case a.special != finite:
			if b.unscaled.Sign() == 0 {
				return nil, &Error{Code: "22012", Message: "division by zero"}
			}
			sp := a.special
			if b.unscaled.Sign() < 0 {
				sp = -sp
			}
			return &decimal{special: sp}, nil
		}
		return &decimal{}, nil // finite / ±Inf = 0
	}
	if b.unscaled.Sign() == 0 {
		return nil, &Error{Code: "22012", Message: "division by zero"}
	}
	w1, f1 := a.weightAndFirst()
	w2, f2 := b.weightAndFirst()
	qweight := w1 - w2
	if f1 <= f2 {
		qweight--
	}
	rscale := 16 - qweight*4
	if a.scale > rscale {
		rscale = a.scale
	}
	if b.scale > rscale {
		rscale = b.scale
	}
	if rscale < 0 {
		rscale = 0
	}
	if rscale > 1000 {
		rscale = 1000
	}
	// a.u/10^a.s ÷ b.u/10^b.s = a.u*10^(b.s+rscale-a.s) / b.u at scale rscale.
	num := new(big.Int).Set(&a.unscaled)
	den := new(big.Int).Set(&b.unscaled)
	e := b.scale + rscale - a.scale
	if e >= 0 {
		num.Mul(num, pow10(e))
	} else {
		den.Mul(den, pow10(-e))
	}
	r := &decimal{scale: rscale}
	r.unscaled.Set(roundDiv(num, den))
	return r, nil
}

// roundDiv returns num/den rounded half away from zero.
func roundDiv(num, den *big.Int) *big.Int {
	neg := (num.Sign() < 0) != (den.Sign() < 0)
	n := new(big.Int).Abs(num)
	d := new(big.Int).Abs(den)
	q, r := new(big.Int).QuoRem(n, d, new(big.Int))
	if new(big.Int).Lsh(r, 1).Cmp(d) >= 0 {
		q.Add(q, big.NewInt(1))
	}
	if neg {
		q.Neg(q)
	}
	return q
}

// Binary numeric: int16 ndigits, int16 weight, uint16 sign, int16 dscale,
// ndigits × int16 base-10000 digits.
const (
	numPos  = 0x0000
	numNeg  = 0x4000
	numNaN  = 0xC000
	numPInf = 0xD000
	numNInf = 0xF000
)

func decodeNumericBinary(b []byte) (*decimal, error) {
	if len(b) < 8 {
		return nil, errors.New("short numeric")
	}
	nd := int(int16(binary.BigEndian.Uint16(b)))
	weight := int(int16(binary.BigEndian.Uint16(b[2:])))
	sign := binary.BigEndian.Uint16(b[4:])
	dscale := int(int16(binary.BigEndian.Uint16(b[6:])))
	switch sign {
	case numNaN:
		return &decimal{special: nanSpecial}, nil
	case numPInf:
		return &decimal{special: posInf}, nil
	case numNInf:
		return &decimal{special: negInf}, nil
	}
	if len(b) < 8+2*nd {
		return nil, errors.New("short numeric")
	}
	u := new(big.Int)
	t := big.NewInt(10000)
	for i := 0; i < nd; i++ {
		u.Mul(u, t)
		u.Add(u, big.NewInt(int64(binary.BigEndian.Uint16(b[8+2*i:]))))
	}
	// u holds digits with the last one at base-10000 position weight-nd+1.
	exp10 := 4 * (weight - nd + 1) // value = u * 10^exp10
	d := &decimal{scale: dscale}
	if exp10+dscale >= 0 {
		d.unscaled.Mul(u, pow10(exp10+dscale))
	} else {
		// more digits than dscale shows: PostgreSQL never sends that, but
		// round to be safe.
		d.unscaled.Set(roundDiv(u, pow10(-(exp10 + dscale))))
	}
	if sign == numNeg {
		d.unscaled.Neg(&d.unscaled)
	}
	return d, nil
}

func encodeNumericBinary(dst []byte, d *decimal) []byte {
	hdr := func(nd, weight int, sign uint16, dscale int) {
		dst = binary.BigEndian.AppendUint16(dst, uint16(nd))
		dst = binary.BigEndian.AppendUint16(dst, uint16(int16(weight)))
		dst = binary.BigEndian.AppendUint16(dst, sign)
		dst = binary.BigEndian.AppendUint16(dst, uint16(dscale))
	}
	switch d.special {
	case nanSpecial:
		hdr(0, 0, numNaN, 0)
		return dst
	case posInf:
		hdr(0, 0, numPInf, 0)
		return dst
	case negInf:
		hdr(0, 0, numNInf, 0)
		return dst
	}
	sign := uint16(numPos)
	if d.unscaled.Sign() < 0 {
		sign = numNeg
	}
	if d.unscaled.Sign() == 0 {
		hdr(0, 0, numPos, d.scale)
		return dst
	}
	s4 := (d.scale + 3) / 4 * 4
	u := new(big.Int).Abs(d.at(s4))
	digits := base10000(u)
	weight := len(digits) - 1 - s4/4
	for len(digits) > 0 && digits[len(digits)-1] == 0 {
		digits = digits[:len(digits)-1]
	}
	hdr(len(digits), weight, sign, d.scale)
	for _, x := range digits {
		dst = binary.BigEndian.AppendUint16(dst, uint16(x))
	}
	return dst
}
