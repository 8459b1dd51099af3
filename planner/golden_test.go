package planner

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/shardproxy/shardproxy/planner/plan"
)

var update = flag.Bool("update", false, "rewrite planner/testdata/*_cases.json with the current plans")

// goldenCase is one entry of a testdata/*_cases.json file.
type goldenCase struct {
	Comment string            `json:"comment"`
	Query   string            `json:"query"`
	Params  *caseParams       `json:"params,omitempty"`
	Plan    *plan.Description `json:"plan,omitempty"`
	Error   *caseError        `json:"error,omitempty"`
}

// caseParams: Values are text, or hex when the value's format is 1; null
// is SQL NULL.
type caseParams struct {
	Values      []*string `json:"values,omitempty"`
	Formats     []int16   `json:"formats,omitempty"`
	OIDs        []uint32  `json:"oids,omitempty"`
	ForcedShard string    `json:"forced_shard,omitempty"`
}

type caseError struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

func (c *caseParams) params(t testing.TB) Params {
	var p Params
	if c == nil {
		return p
	}
	p.Formats, p.OIDs, p.ForcedShard = c.Formats, c.OIDs, c.ForcedShard
	for i, v := range c.Values {
		if v == nil {
			p.Values = append(p.Values, nil)
			continue
		}
		if p.format(i) == 1 {
			b, err := hex.DecodeString(*v)
			if err != nil {
				t.Fatalf("param %d: %v", i, err)
			}
			p.Values = append(p.Values, b)
			continue
		}
		p.Values = append(p.Values, []byte(*v))
	}
	return p
}

func loadCases(t testing.TB) map[string][]goldenCase {
	files, err := filepath.Glob("testdata/*_cases.json")
	if err != nil || len(files) == 0 {
		t.Fatalf("no golden files: %v", err)
	}
	out := map[string][]goldenCase{}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var cs []goldenCase
		dec := json.NewDecoder(bytes.NewReader(b))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&cs); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		out[f] = cs
	}
	return out
}

func runCase(p *Planner, c *goldenCase, t testing.TB) (*plan.Description, *caseError) {
	snap := fixture(t)
	a, err := p.Analyze(c.Query)
	var op plan.Operator
	if err == nil {
		op, err = p.Plan(snap, a, c.Params.params(t))
	}
	if err != nil {
		var st interface{ SQLState() string }
		if !errors.As(err, &st) {
			t.Errorf("%q: error without SQLSTATE: %v", c.Query, err)
			return nil, &caseError{Code: "?", Message: err.Error()}
		}
		return nil, &caseError{Code: st.SQLState(), Message: err.Error()}
	}
	d := plan.Tree(op)
	// Round-trip through JSON so numbers compare like the file's.
	b, _ := json.Marshal(d)
	var back plan.Description
	_ = json.Unmarshal(b, &back)
	return &back, nil
}

func TestGolden(t *testing.T) {
	p := New(fixtureOptions())
	total := 0
	for file, cases := range loadCases(t) {
		changed := false
		for i := range cases {
			c := &cases[i]
			total++
			d, e := runCase(p, c, t)
			if *update {
				c.Plan, c.Error = d, e
				changed = true
				continue
			}
			got, _ := json.MarshalIndent(struct {
				P *plan.Description
				E *caseError
			}{d, e}, "", "  ")
			want, _ := json.MarshalIndent(struct {
				P *plan.Description
				E *caseError
			}{c.Plan, c.Error}, "", "  ")
			if !bytes.Equal(got, want) {
				t.Errorf("%s: %s\nquery: %s\ngot:  %s\nwant: %s", file, c.Comment, c.Query, got, want)
			}
		}
		if changed {
			var buf bytes.Buffer
			enc := json.NewEncoder(&buf)
			enc.SetEscapeHTML(false)
			enc.SetIndent("", "  ")
			if err := enc.Encode(cases); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(file, buf.Bytes(), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	t.Logf("%d golden cases", total)
}

// BenchmarkGolden plans every golden case (analysis cached), the cost per
// execution on the proxy's hot path.
func BenchmarkGolden(b *testing.B) {
	p := New(fixtureOptions())
	snap := fixture(b)
	type prepared struct {
		a      *Analysis
		params Params
	}
	var all []prepared
	for _, cases := range loadCases(b) {
		for i := range cases {
			a, err := p.Analyze(cases[i].Query)
			if err != nil {
				continue
			}
			all = append(all, prepared{a, cases[i].Params.params(b)})
		}
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		x := all[i%len(all)]
		_, _ = p.Plan(snap, x.a, x.params)
	}
}

var _ = strings.TrimSpace
