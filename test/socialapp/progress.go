package socialapp

import (
	"fmt"
	"io"
	"strings"
	"time"
)

// ProgressBar draws "users  [#####.....]  45%  4500/10000" on one line of
// its writer, redrawn at most every 100 ms and at each stage's end.
type ProgressBar struct {
	w     io.Writer
	stage string
	last  time.Time
	start time.Time
}

// NewProgressBar returns a bar drawing on w; use its Update as
// SeedOptions.Progress and call Finish after Seed returns.
func NewProgressBar(w io.Writer) *ProgressBar { return &ProgressBar{w: w} }

// Update redraws the bar (at most every 100 ms within a stage).
func (p *ProgressBar) Update(stage string, done, total int) {
	now := time.Now()
	if stage != p.stage {
		if p.stage != "" {
			fmt.Fprintln(p.w)
		}
		p.stage, p.start = stage, now
	} else if done < total && now.Sub(p.last) < 100*time.Millisecond {
		return
	}
	p.last = now
	const width = 30
	frac := 1.0
	if total > 0 {
		frac = float64(done) / float64(total)
	}
	n := int(frac * width)
	rate := float64(done) / max(now.Sub(p.start).Seconds(), 1e-3)
	fmt.Fprintf(p.w, "\r%-9s [%s%s] %3.0f%%  %d/%d  %.0f rows/s ", stage,
		strings.Repeat("#", n), strings.Repeat(".", width-n), 100*frac, done, total, rate)
}

// Finish ends the bar's line.
func (p *ProgressBar) Finish() {
	if p.stage != "" {
		fmt.Fprintln(p.w)
	}
}
