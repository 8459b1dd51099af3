package sqlclass

import (
	"reflect"
	"testing"
)

func TestCharacteristicsSettings(t *testing.T) {
	cases := []struct {
		modes string
		want  []Setting
	}{
		{"READ ONLY", []Setting{{"default_transaction_read_only", "on"}}},
		{"read write", []Setting{{"default_transaction_read_only", "off"}}},
		{"ISOLATION LEVEL SERIALIZABLE", []Setting{{"default_transaction_isolation", "serializable"}}},
		{"ISOLATION LEVEL REPEATABLE READ, READ ONLY, DEFERRABLE", []Setting{
			{"default_transaction_isolation", "repeatable read"},
			{"default_transaction_read_only", "on"},
			{"default_transaction_deferrable", "on"},
		}},
		{"isolation level read committed not deferrable read write", []Setting{
			{"default_transaction_isolation", "read committed"},
			{"default_transaction_deferrable", "off"},
			{"default_transaction_read_only", "off"},
		}},
		{"ISOLATION LEVEL READ UNCOMMITTED", []Setting{{"default_transaction_isolation", "read uncommitted"}}},
		{"READ ONLY, READ WRITE", []Setting{{"default_transaction_read_only", "on"}, {"default_transaction_read_only", "off"}}},
	}
	for _, c := range cases {
		got, ok := CharacteristicsSettings(c.modes)
		if !ok || !reflect.DeepEqual(got, c.want) {
			t.Errorf("CharacteristicsSettings(%q) = %v, %v; want %v", c.modes, got, ok, c.want)
		}
	}
	for _, bad := range []string{"", "READ", "ISOLATION LEVEL", "ISOLATION LEVEL REPEATABLE", "LEVEL SERIALIZABLE", "READ ONLY, FOO"} {
		if got, ok := CharacteristicsSettings(bad); ok {
			t.Errorf("CharacteristicsSettings(%q) = %v, want not ok", bad, got)
		}
	}
}
