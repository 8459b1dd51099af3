package admin

import "testing"

func TestRewriteConninfo(t *testing.T) {
	cases := []struct{ in, want string }{
		{"host=127.0.0.1 port=61001 user=postgres application_name=shard0_replica1",
			"host='10.0.0.2' port='5433' user='postgres' application_name='shard0_replica1'"},
		{`hostaddr=1.2.3.4 host = 'old' port=1 password='it\'s' sslmode=require`,
			`host='10.0.0.2' port='5433' password='it\'s' sslmode='require'`},
		{`user='a b\'c' host=x`, `host='10.0.0.2' port='5433' user='a b\'c'`},
		{"", "host='10.0.0.2' port='5433'"},
	}
	for _, c := range cases {
		got, err := rewriteConninfo(c.in, "10.0.0.2", "5433")
		if err != nil || got != c.want {
			t.Errorf("rewriteConninfo(%q) = %q, %v; want %q", c.in, got, err, c.want)
		}
	}
	for _, bad := range []string{"host", "user='unterminated", "=x", "password='it''s'"} {
		if got, err := rewriteConninfo(bad, "h", "1"); err == nil {
			t.Errorf("rewriteConninfo(%q) = %q, want an error", bad, got)
		}
	}
}
