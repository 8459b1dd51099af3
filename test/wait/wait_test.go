package wait

import (
	"context"
	"testing"
	"time"
)

func TestUntil(t *testing.T) {
	n := 0
	if d := Until(t, time.Second, "three polls", func() bool { n++; return n == 3 }); d <= 0 || n != 3 {
		t.Fatalf("Until returned after %s with %d polls", d, n)
	}
}

func TestForTimesOut(t *testing.T) {
	if For(30*time.Millisecond, func() bool { return false }) {
		t.Fatal("For reported a condition that never held")
	}
}

func TestPause(t *testing.T) {
	stop := make(chan struct{})
	if Pause(stop, time.Millisecond) {
		t.Fatal("Pause reported stop before it was closed")
	}
	close(stop)
	if !Pause(stop, time.Hour) {
		t.Fatal("Pause did not return on stop")
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if !PauseCtx(ctx, time.Hour) {
		t.Fatal("PauseCtx did not return on a done context")
	}
}
