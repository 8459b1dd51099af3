package test

import (
	"encoding/json"
	"os/exec"
	"strings"
	"testing"
)

const module = "github.com/shardproxy/shardproxy"

// importRule says which module-internal packages (prefixes, relative to the
// module) and which external packages a package tree may import directly.
type importRule struct {
	tree     string   // package prefix this rule covers, relative to module
	internal []string // allowed module-internal prefixes (besides the tree itself)
	external []string // allowed non-stdlib import prefixes
	banned   []string // stdlib packages that signal I/O and are not allowed
}

// rules mirror the "Packages and what each may import" table of
// ../shared/DESIGN.md. The most specific tree wins.
var rules = []importRule{
	{tree: "proxy", internal: []string{"planner", "router", "topology"}, external: []string{
		"github.com/jackc/pgx/v5", "github.com/prometheus/", "gopkg.in/yaml.v3", "golang.org/x/"}},
	// pg_query_go's parse trees are protobuf messages: the planner copies
	// them (to rewrite a statement) with protobuf's own deep copy.
	{tree: "planner", internal: []string{"router", "topology"}, external: []string{
		"github.com/pganalyze/pg_query_go/v6", "google.golang.org/protobuf/proto", "github.com/jackc/pgx/v5/pgtype", "github.com/prometheus/"},
		banned: []string{"net", "net/http", "os/exec"}},
	{tree: "router", internal: []string{"topology"}, banned: []string{"net", "net/http", "os/exec", "os"}},
	{tree: "topology", internal: nil},
	{tree: "topology/raftstore", internal: []string{"topology"}, external: []string{
		"github.com/hashicorp/", "go.etcd.io/bbolt", "github.com/boltdb/", "github.com/prometheus/"}},
	{tree: "rebalance", internal: []string{"topology", "router"}, external: []string{
		"github.com/jackc/pgx/v5", "github.com/prometheus/"}},
	{tree: "test", internal: []string{""}, external: []string{""}},
	{tree: "cmd", internal: []string{""}, external: []string{""}},
	// docker holds only compose_test.go (test imports are not checked): it imports nothing.
	{tree: "docker"},
}

type listedPackage struct {
	ImportPath string
	Imports    []string
	Standard   bool
	Deps       []string
}

func listPackages(t *testing.T) []listedPackage {
	t.Helper()
	cmd := exec.Command("go", "list", "-deps=false", "-json", module+"/...")
	cmd.Dir = ".."
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	dec := json.NewDecoder(strings.NewReader(string(out)))
	var pkgs []listedPackage
	for dec.More() {
		var p listedPackage
		if err := dec.Decode(&p); err != nil {
			t.Fatalf("decode go list output: %v", err)
		}
		pkgs = append(pkgs, p)
	}
	if len(pkgs) < 8 {
		t.Fatalf("go list found only %d packages; expected the whole module", len(pkgs))
	}
	return pkgs
}

func ruleFor(rel string) *importRule {
	var best *importRule
	for i := range rules {
		r := &rules[i]
		if rel == r.tree || strings.HasPrefix(rel, r.tree+"/") {
			if best == nil || len(r.tree) > len(best.tree) {
				best = r
			}
		}
	}
	return best
}

func isStdlib(path string) bool {
	first := strings.SplitN(path, "/", 2)[0]
	return !strings.Contains(first, ".")
}

func hasPrefixAny(s string, prefixes []string) bool {
	for _, p := range prefixes {
		if p == "" || s == p || strings.HasPrefix(s, strings.TrimSuffix(p, "/")+"/") || (strings.HasSuffix(p, "/") && strings.HasPrefix(s, p)) {
			return true
		}
	}
	return false
}

// TestImportDirections fails when a package imports against the arrows of
// DESIGN.md: e.g. router importing proxy, planner doing network I/O, or
// anything but cmd (and the test suites) importing proxy.
func TestImportDirections(t *testing.T) {
	for _, p := range listPackages(t) {
		rel := strings.TrimPrefix(strings.TrimPrefix(p.ImportPath, module), "/")
		rule := ruleFor(rel)
		if rule == nil {
			t.Errorf("package %s is not covered by any import rule; add it to DESIGN.md and rules", p.ImportPath)
			continue
		}
		for _, imp := range p.Imports {
			switch {
			case strings.HasPrefix(imp, module):
				irel := strings.TrimPrefix(strings.TrimPrefix(imp, module), "/")
				if irel == rule.tree || strings.HasPrefix(irel, rule.tree+"/") {
					continue
				}
				if irel == "proxy" || strings.HasPrefix(irel, "proxy/") {
					if !(strings.HasPrefix(rel, "cmd") || strings.HasPrefix(rel, "test")) {
						t.Errorf("%s imports %s: nothing but cmd imports proxy", rel, irel)
					}
					continue
				}
				if !hasPrefixAny(irel, rule.internal) {
					t.Errorf("%s imports %s: %s may import only %v", rel, irel, rule.tree, rule.internal)
				}
			case isStdlib(imp):
				for _, b := range rule.banned {
					if imp == b {
						t.Errorf("%s imports %s: %s does no I/O", rel, imp, rule.tree)
					}
				}
			default:
				if strings.HasPrefix(imp, "github.com/spf13/cobra") && !strings.HasPrefix(rel, "cmd") {
					t.Errorf("%s imports cobra: only cmd uses cobra", rel)
					continue
				}
				if !hasPrefixAny(imp, rule.external) {
					t.Errorf("%s imports %s: %s may import only %v outside the module", rel, imp, rule.tree, rule.external)
				}
			}
		}
	}
}

// TestRuleCatchesViolation makes sure the checker is not vacuous.
func TestRuleCatchesViolation(t *testing.T) {
	r := ruleFor("router")
	if r == nil || hasPrefixAny("proxy", r.internal) || hasPrefixAny("planner", r.internal) {
		t.Fatalf("router rule would allow importing proxy or planner: %+v", r)
	}
	if ruleFor("topology/raftstore").tree != "topology/raftstore" {
		t.Fatalf("most specific rule not chosen")
	}
	if hasPrefixAny("github.com/spf13/cobra", ruleFor("proxy/pool").external) {
		t.Fatalf("proxy may not import cobra")
	}
}
