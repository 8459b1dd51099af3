package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// result is one pgbench run against one target.
type result struct {
	workload, target string
	round            int
	tps, latencyMs   float64
	processed        int64
	failedTxns       int64
	// failure is "" for a good run, else why it is not counted (pgbench
	// exited with an error, clients aborted, or nothing was processed).
	failure string
	// CPU seconds used during the run.
	poolerCPU, postgresCPU, pgbenchCPU float64
}

var (
	reTPS       = regexp.MustCompile(`(?m)^tps = ([0-9.]+)`)
	reLatency   = regexp.MustCompile(`(?m)^latency average = ([0-9.]+) ms`)
	reProcessed = regexp.MustCompile(`(?m)^number of transactions actually processed: ([0-9]+)`)
	reFailed    = regexp.MustCompile(`(?m)^number of failed transactions: ([0-9]+)`)
)

func (e *env) runPgbench(ctx context.Context, w workload, t target, round int) result {
	r := result{workload: w.name, target: t.name, round: round}
	args := []string{"-n", "-c", strconv.Itoa(e.o.clients), "-j", strconv.Itoa(e.o.threads),
		"-T", strconv.Itoa(e.o.seconds), "-h", t.pgbenchHost(), "-p", strconv.Itoa(t.port), "-U", "postgres"}
	args = append(args, w.args...)
	args = append(args, "postgres")
	name := e.pgbench
	if e.o.pinCPU != "" {
		if ts, err := exec.LookPath("taskset"); err == nil {
			args = append([]string{"-c", e.o.pinCPU, e.pgbench}, args...)
			name = ts
		}
	}
	ctx, cancel := context.WithTimeout(ctx, time.Duration(e.o.seconds)*time.Second+2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)

	waitQuiet(e.postmaster, 10*time.Second)
	pooler0 := 0.0
	if t.pooler > 0 {
		pooler0 = cpuSeconds(t.pooler)
	}
	pg0 := treeCPUSeconds(e.postmaster)
	profiled := e.startProfile(ctx, t, w, round)
	out, err := cmd.CombinedOutput()
	<-profiled
	waitQuiet(e.postmaster, 10*time.Second)
	pg1 := treeCPUSeconds(e.postmaster)
	if t.pooler > 0 {
		r.poolerCPU = cpuSeconds(t.pooler) - pooler0
	}
	r.postgresCPU = pg1 - pg0
	if cmd.ProcessState != nil {
		if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
			r.pgbenchCPU = float64(ru.Utime.Nano()+ru.Stime.Nano()) / 1e9
		}
	}

	s := string(out)
	if m := reTPS.FindStringSubmatch(s); m != nil {
		r.tps, _ = strconv.ParseFloat(m[1], 64)
	}
	if m := reLatency.FindStringSubmatch(s); m != nil {
		r.latencyMs, _ = strconv.ParseFloat(m[1], 64)
	}
	if m := reProcessed.FindStringSubmatch(s); m != nil {
		r.processed, _ = strconv.ParseInt(m[1], 10, 64)
	}
	if m := reFailed.FindStringSubmatch(s); m != nil {
		r.failedTxns, _ = strconv.ParseInt(m[1], 10, 64)
	}
	switch {
	case err != nil:
		r.failure = fmt.Sprintf("pgbench: %v: %s", err, firstError(s))
	case r.processed == 0:
		r.failure = "no transactions processed: " + firstError(s)
	case r.failedTxns > 0:
		r.failure = fmt.Sprintf("%d failed transactions: %s", r.failedTxns, firstError(s))
	}
	if r.failure != "" {
		e.log.Warn("pgbench run failed", "workload", w.name, "target", t.name, "output", lastLines(s, 15))
	}
	return r
}

// firstError returns the first error line of pgbench output, shortened.
func firstError(out string) string {
	for _, line := range strings.Split(out, "\n") {
		if strings.Contains(line, "error") || strings.Contains(line, "aborted") || strings.Contains(line, "FATAL") {
			line = strings.TrimSpace(line)
			if len(line) > 160 {
				line = line[:160] + "…"
			}
			return line
		}
	}
	return "(no error line)"
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// startProfile fetches a CPU profile of shardproxy covering most of the run
// into -cpuprofile DIR; the returned channel closes when it is saved (at
// once when not profiling).
func (e *env) startProfile(ctx context.Context, t target, w workload, round int) <-chan struct{} {
	done := make(chan struct{})
	if t.admin == "" || e.o.profileDir == "" {
		close(done)
		return done
	}
	secs := max(e.o.seconds-2, 1)
	path := filepath.Join(e.o.profileDir, fmt.Sprintf("%s-%s-r%d.pprof", t.name, w.name, round))
	go func() {
		defer close(done)
		url := fmt.Sprintf("http://%s/debug/pprof/profile?seconds=%d", t.admin, secs)
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			e.log.Warn("cpu profile", "err", err)
			return
		}
		defer resp.Body.Close()
		f, err := os.Create(path)
		if err != nil {
			e.log.Warn("cpu profile", "err", err)
			return
		}
		defer f.Close()
		if _, err := io.Copy(f, resp.Body); err != nil {
			e.log.Warn("cpu profile", "err", err)
		}
	}()
	return done
}

// pgbenchHost is pgbench's -h for t: its Unix socket directory when it
// has one, else loopback.
func (t target) pgbenchHost() string {
	if t.host != "" {
		return t.host
	}
	return "127.0.0.1"
}
