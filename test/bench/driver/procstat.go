package main

import (
	"bufio"
	"bytes"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// clockTicks is USER_HZ, the unit of the time fields in /proc/PID/stat.
// It is 100 on every Linux architecture Go supports.
const clockTicks = 100

// procStat holds the fields of /proc/PID/stat we use.
type procStat struct {
	ppid                         int
	utime, stime, cutime, cstime uint64 // clock ticks
}

func readStat(pid int) (procStat, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return procStat{}, err
	}
	// The command name is in parentheses and may contain spaces.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return procStat{}, fmt.Errorf("/proc/%d/stat: malformed", pid)
	}
	f := strings.Fields(string(b[i+1:]))
	// f[0] is field 3 (state); field n is f[n-3].
	if len(f) < 15 {
		return procStat{}, fmt.Errorf("/proc/%d/stat: too few fields", pid)
	}
	num := func(n int) uint64 { v, _ := strconv.ParseUint(f[n-3], 10, 64); return v }
	return procStat{ppid: int(num(4)), utime: num(14), stime: num(15), cutime: num(16), cstime: num(17)}, nil
}

// cpuSeconds is the CPU time (user+system) a process has used so far.
func cpuSeconds(pid int) float64 {
	s, err := readStat(pid)
	if err != nil {
		return 0
	}
	return float64(s.utime+s.stime) / clockTicks
}

// treeCPUSeconds is the CPU time of a server process and all its children:
// its own time, the time of children it has already reaped (cutime/cstime,
// e.g. backends that exited) and the time of the children alive now. The
// difference of two readings is what the whole server used in between.
func treeCPUSeconds(pid int) float64 {
	s, err := readStat(pid)
	if err != nil {
		return 0
	}
	total := s.utime + s.stime + s.cutime + s.cstime
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		child, err := strconv.Atoi(e.Name())
		if err != nil || child == pid {
			continue
		}
		cs, err := readStat(child)
		if err == nil && cs.ppid == pid {
			total += cs.utime + cs.stime
		}
	}
	return float64(total) / clockTicks
}

// childrenOf lists the PIDs whose parent is pid.
func childrenOf(pid int) map[int]bool {
	kids := map[int]bool{}
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		child, err := strconv.Atoi(e.Name())
		if err != nil || child == pid {
			continue
		}
		if cs, err := readStat(child); err == nil && cs.ppid == pid {
			kids[child] = true
		}
	}
	return kids
}

// waitQuiet waits (up to timeout) until the set of pid's children stays the
// same for 300ms. Backends that are still exiting when a client finishes
// would otherwise be missed: between reading the parent's reaped-children
// time and scanning the live children, a reaped backend is in neither.
func waitQuiet(pid int, timeout time.Duration) {
	deadline := time.Now().Add(timeout)
	prev := childrenOf(pid)
	for time.Now().Before(deadline) {
		time.Sleep(300 * time.Millisecond)
		cur := childrenOf(pid)
		if maps.Equal(prev, cur) {
			return
		}
		prev = cur
	}
}

// rssBytes is the resident set size of a process.
func rssBytes(pid int) (int64, error) {
	f, err := os.Open(filepath.Join("/proc", strconv.Itoa(pid), "status"))
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			fs := strings.Fields(v)
			if len(fs) >= 1 {
				kb, err := strconv.ParseInt(fs[0], 10, 64)
				return kb * 1024, err
			}
		}
	}
	return 0, fmt.Errorf("pid %d: no VmRSS", pid)
}
