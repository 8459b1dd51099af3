// Package wire turns PostgreSQL backend messages into transcript lines, so
// a test can send one script of frontend messages to plain PostgreSQL and
// through the proxy and compare what each answered, line by line.
package wire
