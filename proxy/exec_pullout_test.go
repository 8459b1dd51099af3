package proxy

import (
	"errors"
	"testing"

	"github.com/shardproxy/shardproxy/planner/plan"
	"github.com/shardproxy/shardproxy/proxy/merge"
)

// TestPulledRowsBounds: a subquery's captured values stay within
// plan.MaxPulledRows+1 values and the byte limit (53200 beyond it);
// notices pass on to the client.
func TestPulledRowsBounds(t *testing.T) {
	ss := &session{}
	p := &pulledRows{}
	ss.out = appendEncoded(nil, explainRowDesc()) // one text column
	ss.out = appendMsg(ss.out, msgNoticeResponse, []byte("SNOTICE\x00\x00"))
	for i := 0; i < plan.MaxPulledRows+5; i++ {
		ss.out = appendMsg(ss.out, msgDataRow, dataRowText("v"))
	}
	p.take(ss)
	if p.typeOID != 25 || p.rows != plan.MaxPulledRows+5 || len(p.values) != plan.MaxPulledRows+1 || p.bad != nil || len(ss.out) != 0 {
		t.Fatalf("type %d, %d rows, %d values kept, %v, %d bytes left", p.typeOID, p.rows, len(p.values), p.bad, len(ss.out))
	}
	if len(p.keep) == 0 || p.keep[0] != msgNoticeResponse {
		t.Errorf("notice not kept for the client: %q", p.keep)
	}

	p = &pulledRows{limit: 100}
	for i := 0; i < 10; i++ {
		ss.out = appendMsg(ss.out, msgDataRow, dataRowText("0123456789"))
	}
	p.take(ss)
	var me *merge.Error
	if !errors.As(p.bad, &me) || me.Code != "53200" || len(p.values) > 3 {
		t.Errorf("over the byte limit: %v with %d values kept, want 53200", p.bad, len(p.values))
	}
}
