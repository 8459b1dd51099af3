package merge

import (
	"encoding/binary"
	"errors"
	"io"
	"strconv"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/shardproxy/shardproxy/planner/plan"
)

type rows struct {
	r [][][]byte
	i int
}

func (s *rows) Next() ([][]byte, error) {
	if s.i >= len(s.r) {
		return nil, io.EOF
	}
	s.i++
	return s.r[s.i-1], nil
}

func textRows(lines ...string) *rows {
	s := &rows{}
	for _, l := range lines {
		var row [][]byte
		for _, f := range strings.Split(l, ",") {
			if f == "NULL" {
				row = append(row, nil)
			} else {
				row = append(row, []byte(f))
			}
		}
		s.r = append(s.r, row)
	}
	return s
}

func desc(oids ...uint32) *pgproto3.RowDescription {
	d := &pgproto3.RowDescription{}
	for i, o := range oids {
		d.Fields = append(d.Fields, pgproto3.FieldDescription{Name: []byte("c" + strconv.Itoa(i)), DataTypeOID: o, TypeModifier: -1})
	}
	return d
}

func collect(t *testing.T, r *Result) []string {
	t.Helper()
	var out []string
	for {
		row, err := r.Next()
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		var f []string
		for _, v := range row {
			if v == nil {
				f = append(f, "NULL")
			} else {
				f = append(f, string(v))
			}
		}
		out = append(out, strings.Join(f, ","))
	}
}

func TestMergeSortNullsDescLimit(t *testing.T) {
	sc := &plan.Scatter{}
	op := &plan.Limit{Count: 5, Offset: 1, CountParam: -1, OffsetParam: -1, Input: &plan.MergeSort{Input: sc,
		Keys: []plan.SortKey{{Column: 0, Desc: true, NullsFirst: true}, {Column: 1}}}}
	a := textRows("NULL,b", "10,a", "2,z")
	b := textRows("NULL,a", "10,b", "9.5,a", "-1,a")
	r, err := New(op, desc(oidNumeric, oidText), []Stream{a, b}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	got := strings.Join(collect(t, r), " ")
	if want := "NULL,b 10,a 10,b 9.5,a 2,z"; got != want {
		t.Fatalf("got %s, want %s", got, want)
	}
}

func TestDistinctOnAndProject(t *testing.T) {
	op := &plan.Project{Hidden: 1, Input: &plan.Distinct{Columns: []int{-1}, On: true, Input: &plan.MergeSort{Input: &plan.Scatter{},
		Keys: []plan.SortKey{{Column: -1}, {Column: 0}}}}}
	a := textRows("1,x", "3,y")
	b := textRows("2,x", "0,y", "5,z")
	r, err := New(op, desc(oidInt4, oidText), []Stream{a, b}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(collect(t, r), " "); got != "1 0 5" {
		t.Fatalf("got %s", got)
	}
	if n := len(r.RowDescription().Fields); n != 1 {
		t.Fatalf("%d visible columns", n)
	}
}

func TestUnorderedStringAndArrayAgg(t *testing.T) {
	op := &plan.Aggregate{Scalar: true, Input: &plan.Scatter{}, Columns: []plan.AggColumn{
		{Func: plan.AggStringAgg, Arg: -1, Sep: ", "}, {Func: plan.AggArrayAgg, Arg: -1}}}
	a := &rows{r: [][][]byte{{[]byte("a, b"), []byte(`{1,NULL}`)}}}
	b := &rows{r: [][][]byte{{nil, nil}, {[]byte("c"), []byte(`{"x y",3}`)}}}
	d := desc(oidText, 1009)
	r, err := New(op, d, []Stream{a, b}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	got := collect(t, r)
	if len(got) != 1 || got[0] != `a, b, c,{1,NULL,"x y",3}` {
		t.Fatalf("got %q", got)
	}
}

func TestScalarAggregateNoRows(t *testing.T) {
	op := &plan.Aggregate{Scalar: true, Input: &plan.Scatter{}, Columns: []plan.AggColumn{
		{Func: plan.AggCount, Arg: -1}, {Func: plan.AggSum, Arg: -1}, {Func: plan.AggCountDst, Arg: -1}}}
	r, err := New(op, desc(oidInt8, oidNumeric, oidText), []Stream{&rows{}, &rows{}}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if got := collect(t, r); len(got) != 1 || got[0] != "0,NULL,0" {
		t.Fatalf("got %q", got)
	}
	if oid := r.RowDescription().Fields[2].DataTypeOID; oid != oidInt8 {
		t.Fatalf("count(DISTINCT) type %d", oid)
	}
}

func TestSumOverflow(t *testing.T) {
	op := &plan.Aggregate{Scalar: true, Input: &plan.Scatter{}, Columns: []plan.AggColumn{{Func: plan.AggSum, Arg: -1}}}
	big := strconv.FormatInt(1<<62, 10)
	r, err := New(op, desc(oidInt8), []Stream{textRows(big), textRows(big)}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	_, err = r.Next()
	var e *Error
	if !errors.As(err, &e) || e.Code != "22003" {
		t.Fatalf("got %v, want 22003", err)
	}
}

func TestMemoryLimit(t *testing.T) {
	// Sort, Distinct, Aggregate and Window (peer groups) count what they
	// buffer against the limit.
	var lines []string
	for i := 0; i < 2000; i++ {
		lines = append(lines, strconv.Itoa(i)+",some text to take room")
	}
	for _, op := range []plan.Operator{
		&plan.Sort{Input: &plan.Scatter{}, Keys: []plan.SortKey{{Column: 0}}},
		&plan.Distinct{Input: &plan.Scatter{}},
		&plan.Aggregate{Input: &plan.Scatter{}, GroupBy: []int{0}, Columns: []plan.AggColumn{{Func: plan.AggKey, Arg: -1}, {Func: plan.AggAny, Arg: -1}}},
		// A window whose peer group is the whole input (no ORDER BY key
		// differs): its buffer grows with it.
		&plan.Window{Input: &plan.MergeSort{Input: &plan.Scatter{}, Keys: []plan.SortKey{{Column: 1}}}, Keys: []plan.SortKey{{Column: 1}}, Columns: []plan.WindowColumn{{Column: 0, Func: "count"}}},
	} {
		r, err := New(op, desc(oidInt4, oidText), []Stream{textRows(lines...)}, Options{MemoryLimit: 16 << 10})
		if err != nil {
			t.Fatal(err)
		}
		var e *Error
		for {
			_, err = r.Next()
			if err != nil {
				break
			}
		}
		if !errors.As(err, &e) || e.Code != "53200" {
			t.Fatalf("%T: got %v, want 53200", op, err)
		}
	}
}

func TestCollationRefused(t *testing.T) {
	op := &plan.MergeSort{Input: &plan.Scatter{}, Keys: []plan.SortKey{{Column: 0}}}
	_, err := New(op, desc(oidText), nil, Options{Collation: "en_US.UTF-8"})
	var e *Error
	if !errors.As(err, &e) || e.Code != "0A000" {
		t.Fatalf("got %v", err)
	}
	op.Keys[0].Collation = "C"
	if _, err := New(op, desc(oidText), nil, Options{Collation: "en_US.UTF-8"}); err != nil {
		t.Fatal(err)
	}
	if _, err := New(op, desc(oidInt4), nil, Options{Collation: "en_US.UTF-8"}); err != nil {
		t.Fatal(err)
	}
}

func TestNumericDivision(t *testing.T) {
	// Values from PostgreSQL 15 (SELECT a::numeric / b).
	cases := []struct{ a, b, want string }{
		{"10", "3", "3.3333333333333333"},
		{"2", "3", "0.66666666666666666667"},
		{"100000", "3", "33333.333333333333"},
		{"1", "8", "0.12500000000000000000"},
		{"-7", "2", "-3.5000000000000000"},
		{"12.50", "4", "3.1250000000000000"},
		{"0", "5", "0.00000000000000000000"},
	}
	for _, c := range cases {
		a, _ := parseDecimal(c.a)
		b, _ := parseDecimal(c.b)
		q, err := divDecimal(a, b)
		if err != nil {
			t.Fatal(err)
		}
		if q.String() != c.want {
			t.Errorf("%s/%s = %s, want %s", c.a, c.b, q, c.want)
		}
	}
}

func TestNumericBinaryRoundTrip(t *testing.T) {
	for _, s := range []string{"0", "0.00", "1", "-1", "10000", "12345.6789", "0.0001", "-0.000012", "123456789012345678901234567890.12", "NaN", "Infinity", "-Infinity", "100.10"} {
		d, err := parseDecimal(s)
		if err != nil {
			t.Fatal(err)
		}
		b := encodeNumericBinary(nil, d)
		back, err := decodeNumericBinary(b)
		if err != nil {
			t.Fatal(err)
		}
		if back.String() != s {
			t.Errorf("%s → %x → %s", s, b, back)
		}
	}
}

func TestFormatFloat(t *testing.T) {
	cases := []struct {
		f    float64
		bits int
		want string
	}{
		{1e15, 64, "1e+15"}, {123456789012345, 64, "123456789012345"}, {0.0001, 64, "0.0001"},
		{1e-5, 64, "1e-05"}, {-0.5, 64, "-0.5"}, {100, 64, "100"}, {0.1, 64, "0.1"},
		{1e6, 32, "1e+06"}, {123456, 32, "123456"}, {1.5, 32, "1.5"},
	}
	for _, c := range cases {
		if got := formatFloat(c.f, c.bits); got != c.want {
			t.Errorf("formatFloat(%v, %d) = %s, want %s", c.f, c.bits, got, c.want)
		}
	}
}

func TestFormatConversion(t *testing.T) {
	// Shards answered in binary, the client wants text.
	d := desc(oidInt8, oidNumeric, oidFloat8, oidBool, oidInterval)
	for i := range d.Fields {
		d.Fields[i].Format = 1
	}
	num, _ := parseDecimal("-12.340")
	row := [][]byte{
		binary.BigEndian.AppendUint64(nil, 42), encodeNumericBinary(nil, num),
		binary.BigEndian.AppendUint64(nil, 0x3ff8000000000000), {1},
		append(binary.BigEndian.AppendUint64(nil, 3723500000), 0, 0, 0, 2, 0, 0, 0, 14),
	}
	r, err := New(&plan.Scatter{}, d, []Stream{&rows{r: [][][]byte{row}}}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if got := collect(t, r); len(got) != 1 || got[0] != "42,-12.340,1.5,t,1 year 2 mons 2 days 01:02:03.5" {
		t.Fatalf("got %q", got)
	}
}

func benchStreams(n, k int) []Stream {
	var out []Stream
	for s := 0; s < k; s++ {
		r := &rows{}
		for i := 0; i < n; i++ {
			r.r = append(r.r, [][]byte{binary.BigEndian.AppendUint64(nil, uint64(i*k+s)), []byte("payload")})
		}
		out = append(out, r)
	}
	return out
}

func binDesc() *pgproto3.RowDescription {
	d := desc(oidInt8, oidText)
	d.Fields[0].Format = 1
	d.Fields[1].Format = 1
	return d
}

// BenchmarkMergeSort: rows/s of a 4-way merge of int8 keys (binary).
func BenchmarkMergeSort(b *testing.B) {
	op := &plan.MergeSort{Input: &plan.Scatter{}, Keys: []plan.SortKey{{Column: 0}}}
	const n = 25000
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		r, err := New(op, binDesc(), benchStreams(n, 4), Options{ResultFormats: []int16{1}})
		if err != nil {
			b.Fatal(err)
		}
		for {
			if _, err := r.Next(); err != nil {
				break
			}
		}
	}
	b.ReportMetric(float64(4*n*b.N)/b.Elapsed().Seconds(), "rows/s")
}

// BenchmarkAggregate: hash GROUP BY with count over 100k rows, 1000 groups.
func BenchmarkAggregate(b *testing.B) {
	op := &plan.Aggregate{Input: &plan.Scatter{}, GroupBy: []int{1}, Columns: []plan.AggColumn{{Func: plan.AggCount, Arg: -1}, {Func: plan.AggKey, Arg: -1}}}
	var lines []string
	for i := 0; i < 25000; i++ {
		lines = append(lines, "1,g"+strconv.Itoa(i%1000))
	}
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		var ss []Stream
		for s := 0; s < 4; s++ {
			ss = append(ss, textRows(lines...))
		}
		b.StartTimer()
		r, err := New(op, desc(oidInt8, oidText), ss, Options{})
		if err != nil {
			b.Fatal(err)
		}
		for {
			if _, err := r.Next(); err != nil {
				break
			}
		}
	}
}
