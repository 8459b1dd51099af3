// Package sqlclass is a fast lexical classifier for the statements a
// transaction pooler must understand without parsing SQL: transaction
// control, session settings (SET, RESET, set_config, DISCARD), SQL-level
// prepared statements, LISTEN, temporary objects, cursors WITH HOLD,
// advisory locks, COPY and SHOW.
//
// It splits a simple-query string into statements the way PostgreSQL's
// scanner delimits tokens (quotes, E” strings, dollar quotes, nested
// comments) and classifies each from its leading keywords. It never builds
// a parse tree: full parsing (pg_query) belongs to planner and is too slow
// for the pooler's hot path. Classify of one ordinary statement (SELECT,
// INSERT, …) makes one allocation, the result slice; ClassifyOne none.
//
// Limits, by design: functions and DO blocks can change session state in
// ways no lexer sees (a function calling set_config, or SET inside
// EXECUTE); only advisory lock calls in DO bodies are detected. Strings
// are lexed as with standard_conforming_strings on.
//
// The package is pure (no I/O, no state) and safe for concurrent use; it
// imports only the standard library.
package sqlclass
