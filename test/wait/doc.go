// Package wait is what tests use to wait for a condition: poll it until it
// holds or a deadline passes, then fail the test saying what was awaited.
// Tests never sleep and hope; they wait here.
package wait
