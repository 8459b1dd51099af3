package config

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func TestReplicasSectionDefaultsAndErrors(t *testing.T) {
	base := "shards:\n  - {name: s0, primary: {port: 5432}, replicas: [{port: 5433}]}\n"
	cfg, err := Parse([]byte(base))
	if err != nil {
		t.Fatal(err)
	}
	r := cfg.Replicas
	if r.Balance != BalanceSticky || r.TargetRole != RoleAny || r.MaxLagBytes != 16<<20 || r.MaxLag.D() != 10*time.Second ||
		!r.ReadYourWritesOn() || !r.PrimaryTakesReads() || r.CheckInterval.D() != 250*time.Millisecond || r.FailoverTimeout != 0 {
		t.Errorf("defaults: %+v", r)
	}
	cfg, err = Parse([]byte(base + "replicas: {balance: least_busy, read_your_writes: false, primary_reads: false, max_lag_bytes: -1, max_lag: -1s, read_only_functions: [My_Fn]}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if r := cfg.Replicas; r.ReadYourWritesOn() || r.PrimaryTakesReads() || r.Balance != "least_busy" || r.ReadOnlyFunctions[0] != "my_fn" {
		t.Errorf("parsed: %+v", r)
	}
	for doc, key := range map[string]string{
		"replicas: {balance: random}":              "replicas.balance",
		"replicas: {target_role: standby}":         "replicas.target_role",
		"replicas: {max_lag_bytes: -5}":            "replicas.max_lag_bytes",
		"replicas: {check_interval: -1s}":          "replicas.check_interval",
		"replicas: {failover_timeout: -1s}":        "replicas.failover_timeout",
		"replicas: {read_only_functions: ['f()']}": "replicas.read_only_functions[0]",
	} {
		_, err := Parse([]byte(base + doc + "\n"))
		var fe *FieldError
		if !errors.As(err, &fe) || !strings.HasPrefix(fe.Key, key) {
			t.Errorf("%s: error %v, want one for %s", doc, err, key)
		}
	}
}
