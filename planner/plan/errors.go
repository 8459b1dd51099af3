package plan

// Error is a planning error a client may see. Code is its SQLSTATE; the
// proxy turns it into an ErrorResponse (Position is 1-based in characters
// of the query string, 0 when unknown).
type Error struct {
	Code     string
	Message  string
	Detail   string
	Hint     string
	Position int
}

func (e *Error) Error() string { return e.Message }

// SQLState returns Code.
func (e *Error) SQLState() string { return e.Code }

// Unsupported is a statement the proxy cannot run correctly yet (SQLSTATE
// 0A000, feature_not_supported). Message says what is not supported and
// Hint what to change so it runs (for example which key condition to add).
type Unsupported struct {
	Message string
	Hint    string
}

func (e *Unsupported) Error() string {
	if e.Hint != "" {
		return e.Message + " (" + e.Hint + ")"
	}
	return e.Message
}

// SQLState returns "0A000".
func (e *Unsupported) SQLState() string { return "0A000" }
