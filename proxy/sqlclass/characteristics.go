package sqlclass

import "strings"

// Setting is one run-time parameter and the value a statement gives it.
type Setting struct {
	Name  string // lower case, e.g. "default_transaction_read_only"
	Value string // as SHOW would print it, e.g. "on", "repeatable read"
}

// CharacteristicsSettings translates the transaction modes of SET SESSION
// CHARACTERISTICS AS TRANSACTION (the Value of a Set statement named
// "session_characteristics") into the parameters PostgreSQL sets for them:
// default_transaction_isolation, default_transaction_read_only and
// default_transaction_deferrable, in the order the modes appear (a mode
// given twice: the later wins, as in PostgreSQL). ok is false when modes
// is not a list of transaction modes.
func CharacteristicsSettings(modes string) (settings []Setting, ok bool) {
	words := strings.Fields(strings.ToLower(strings.ReplaceAll(modes, ",", " ")))
	for i := 0; i < len(words); {
		w := words[i]
		rest := words[i+1:]
		switch {
		case w == "isolation" && len(rest) >= 2 && rest[0] == "level":
			level, n := isolationLevel(rest[1:])
			if n == 0 {
				return nil, false
			}
			settings = append(settings, Setting{"default_transaction_isolation", level})
			i += 2 + n
		case w == "read" && len(rest) >= 1 && (rest[0] == "only" || rest[0] == "write"):
			settings = append(settings, Setting{"default_transaction_read_only", onOff(rest[0] == "only")})
			i += 2
		case w == "deferrable":
			settings = append(settings, Setting{"default_transaction_deferrable", "on"})
			i++
		case w == "not" && len(rest) >= 1 && rest[0] == "deferrable":
			settings = append(settings, Setting{"default_transaction_deferrable", "off"})
			i += 2
		default:
			return nil, false
		}
	}
	return settings, len(settings) > 0
}

// isolationLevel reads an isolation level name from words: the level as
// PostgreSQL spells it and the number of words it took (0: none).
func isolationLevel(words []string) (string, int) {
	switch {
	case words[0] == "serializable":
		return "serializable", 1
	case len(words) >= 2 && words[0] == "repeatable" && words[1] == "read":
		return "repeatable read", 2
	case len(words) >= 2 && words[0] == "read" && words[1] == "committed":
		return "read committed", 2
	case len(words) >= 2 && words[0] == "read" && words[1] == "uncommitted":
		return "read uncommitted", 2
	}
	return "", 0
}

func onOff(b bool) string {
	if b {
		return "on"
	}
	return "off"
}
