package proxy

import (
	"context"
	"errors"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/shardproxy/shardproxy/planner/plan"
	"github.com/shardproxy/shardproxy/proxy/auth"
	"github.com/shardproxy/shardproxy/proxy/pool"
)

// SQLSTATE codes the proxy produces itself.
const (
	codeProtocolViolation    = "08P01"
	codeConnectionFailure    = "08006"
	codeInvalidAuthorization = "28000"
	codeInvalidPassword      = "28P01"
	codeTooManyConnections   = "53300"
	codeAdminShutdown        = "57P01"
	codeQueryCanceled        = "57014"
	codeDuplicatePrepared    = "42P05"
	codeUndefinedPrepared    = "26000"
	codeInternal             = "XX000"
	codeFeatureNotSupported  = "0A000"
)

// toErrorFields turns any error into the fields of an ErrorResponse. It is
// the single place that maps error types to SQLSTATEs: *pool.Error,
// *auth.AuthError and *pgconn.PgError keep their own code; context errors
// and everything else become 08006 (connection-level) or XX000.
func toErrorFields(err error) errorFields {
	var pe *pool.Error
	if errors.As(err, &pe) {
		return errorFields{Severity: pe.Severity, Code: pe.Code, Message: pe.Message, Detail: pe.Detail, Hint: pe.Hint}
	}
	var ae *auth.AuthError
	if errors.As(err, &ae) {
		return errorFields{Severity: "FATAL", Code: ae.Code, Message: ae.Message}
	}
	var pg *pgconn.PgError
	if errors.As(err, &pg) {
		return errorFields{Severity: pg.Severity, Code: pg.Code, Message: pg.Message, Detail: pg.Detail, Hint: pg.Hint}
	}
	var sqe *sqlError
	if errors.As(err, &sqe) {
		return sqe.f
	}
	var pe2 *plan.Error
	if errors.As(err, &pe2) {
		return errorFields{Code: pe2.Code, Message: pe2.Message, Detail: pe2.Detail, Hint: pe2.Hint, Position: pe2.Position}
	}
	var un *plan.Unsupported
	if errors.As(err, &un) {
		return errorFields{Code: un.SQLState(), Message: un.Message, Hint: un.Hint}
	}
	var coded interface{ SQLState() string }
	if errors.As(err, &coded) {
		return errorFields{Code: coded.SQLState(), Message: err.Error()}
	}
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
		return errorFields{Code: codeConnectionFailure, Message: "server connection lost: " + err.Error()}
	}
	return errorFields{Code: codeInternal, Message: err.Error()}
}

// sqlError is an error produced by the proxy that carries a SQLSTATE.
type sqlError struct{ f errorFields }

func (e *sqlError) Error() string { return e.f.Code + ": " + e.f.Message }

func newSQLError(code, msg string) error { return &sqlError{errorFields{Code: code, Message: msg}} }
