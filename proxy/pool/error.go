package pool

// Error is a failure a client can see, with the SQLSTATE the proxy puts in
// its ErrorResponse. Server-side errors (authentication, unknown database)
// keep the server's code, message, detail and hint.
type Error struct {
	// Severity is "ERROR" or "FATAL" as the server sent it; "" means ERROR.
	Severity string
	Code     string
	Message  string
	Detail   string
	Hint     string
	// cause is the underlying error, reachable through errors.Is/As.
	cause error
}

// Error returns the message with its SQLSTATE.
func (e *Error) Error() string { return e.Message + " (SQLSTATE " + e.Code + ")" }

// Unwrap returns the underlying error (dial error, context error), if any.
func (e *Error) Unwrap() error { return e.cause }

// SQLSTATE codes used by this package.
const (
	CodeTooManyConnections = "53300" // wait for a free server connection timed out
	CodeUnableToConnect    = "08001" // could not reach or log in to the server
	CodeAdminShutdown      = "57P01" // pool closed
	CodeQueryCanceled      = "57014" // the caller's context ended while waiting
	codeCannotConnectNow   = "57P03" // server is starting up or shutting down
)
