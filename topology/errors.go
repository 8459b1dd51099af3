package topology

import (
	"errors"
	"fmt"
)

// Sentinels for errors.Is. Every error this package returns for a bad
// snapshot or command matches exactly one of them.
var (
	// ErrInvalid: the result would not be a valid topology (a gap in a range
	// table, an unknown shard, a shard that still owns data, …).
	ErrInvalid = errors.New("invalid topology")
	// ErrNotFound: a command names a shard, replica, table or distribution
	// that does not exist.
	ErrNotFound = errors.New("not found")
	// ErrVersionMismatch: a command's ExpectVersion is not the current
	// version. Use errors.As with *VersionMismatchError for the numbers.
	ErrVersionMismatch = errors.New("topology version mismatch")
)

// Error is a topology error with a message saying what is wrong, e.g.
// `distribution users: gap between 10 and 20`. errors.Is(err, ErrInvalid) or
// ErrNotFound tells the kind.
type Error struct {
	Kind error // ErrInvalid or ErrNotFound
	Msg  string
}

func (e *Error) Error() string { return e.Msg }

// Is matches the error's Kind.
func (e *Error) Is(target error) bool { return target == e.Kind }

func invalidf(format string, args ...any) error {
	return &Error{Kind: ErrInvalid, Msg: fmt.Sprintf(format, args...)}
}

func notFoundf(format string, args ...any) error {
	return &Error{Kind: ErrNotFound, Msg: fmt.Sprintf(format, args...)}
}

// VersionMismatchError is returned when a command expected another version
// than the current one (compare-and-swap failed). It matches
// ErrVersionMismatch with errors.Is.
type VersionMismatchError struct {
	Expected, Actual uint64
}

func (e *VersionMismatchError) Error() string {
	return fmt.Sprintf("topology version mismatch: command expects version %d, current is %d", e.Expected, e.Actual)
}

// Is matches ErrVersionMismatch.
func (e *VersionMismatchError) Is(target error) bool { return target == ErrVersionMismatch }
