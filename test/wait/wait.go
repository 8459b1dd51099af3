package wait

import (
	"context"
	"testing"
	"time"
)

// Interval is how often Until polls.
const Interval = 10 * time.Millisecond

// Until polls cond every Interval until it returns true, and returns how
// long that took. After d it fails the test with "timed out after d
// waiting for what".
func Until(t testing.TB, d time.Duration, what string, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	if !For(d, cond) {
		t.Fatalf("timed out after %s waiting for %s", d, what)
	}
	return time.Since(start)
}

// For polls cond every Interval until it returns true (then For returns
// true) or d passes (false), for callers that report a timeout with
// more context than Until does.
func For(d time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(d)
	tick := time.NewTicker(Interval)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			return false
		}
		<-tick.C
	}
	return true
}

// Pause waits d or until stop is closed, whichever comes first, and
// reports whether stop was closed. Load generators use it to pace retries
// while a server is down without spinning.
func Pause(stop <-chan struct{}, d time.Duration) (stopped bool) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-stop:
		return true
	case <-t.C:
		return false
	}
}

// PauseCtx is Pause for a context.
func PauseCtx(ctx context.Context, d time.Duration) (done bool) {
	return Pause(ctx.Done(), d)
}
