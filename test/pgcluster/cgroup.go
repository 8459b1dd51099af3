package pgcluster

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"
)

// cgroupCPURoot is where the cgroup v1 cpu controller is mounted.
const cgroupCPURoot = "/sys/fs/cgroup/cpu"

// cgroupCpusetRoot is where the cgroup v1 cpuset controller is mounted.
const cgroupCpusetRoot = "/sys/fs/cgroup/cpuset"

const cfsPeriodUS = 100000

var cgroupSeq atomic.Int64

// newClusterCgroup creates /sys/fs/cgroup/cpu/shardproxy-<pid>-<n> for one
// cluster, after removing groups left behind by dead processes.
func newClusterCgroup() (string, error) {
	if _, err := os.Stat(filepath.Join(cgroupCPURoot, "cpu.cfs_quota_us")); err != nil {
		return "", fmt.Errorf("pgcluster: CPUQuota needs the cgroup v1 cpu controller mounted at %s "+
			"(writable, i.e. running as root): %w", cgroupCPURoot, err)
	}
	removeStaleCgroups(cgroupCPURoot)
	dir := filepath.Join(cgroupCPURoot, fmt.Sprintf("shardproxy-%d-%d", os.Getpid(), cgroupSeq.Add(1)))
	if err := os.Mkdir(dir, 0o755); err != nil {
		return "", fmt.Errorf("pgcluster: CPUQuota needs to create cgroups (run as root): %w", err)
	}
	if err := os.WriteFile(filepath.Join(dir, "cpu.shares"), []byte(strconv.Itoa(clusterCPUShares)), 0o644); err != nil {
		return "", fmt.Errorf("pgcluster: cgroup weight: %w", err)
	}
	return dir, nil
}

// clusterCPUShares is the cluster group's CPU weight (cgroup v1
// cpu.shares; a thread outside any group weighs 1024). The quotas stand in
// for machines of the servers' own, so a server must get its quota
// whenever it has work: with the default weight all of a cluster's servers
// together weighed as much as one thread of the proxy or of pgbench beside
// them, and on a busy box they got well under their quotas (4 capped
// servers queried straight by pgbench scaled 2.7× over one, and 4.1× with
// this weight).
const clusterCPUShares = 8192

// newClusterCpuset creates /sys/fs/cgroup/cpuset/shardproxy-<pid>-<n>, a
// cpuset group confining a cluster's servers to cpus (a kernel CPU list
// such as "1" or "2-3"), after removing groups left behind by dead
// processes.
func newClusterCpuset(cpus string) (string, error) {
	mems, err := os.ReadFile(filepath.Join(cgroupCpusetRoot, "cpuset.mems"))
	if err != nil {
		return "", fmt.Errorf("pgcluster: CPUs needs the cgroup v1 cpuset controller mounted at %s: %w", cgroupCpusetRoot, err)
	}
	removeStaleCgroups(cgroupCpusetRoot)
	dir := filepath.Join(cgroupCpusetRoot, fmt.Sprintf("shardproxy-%d-%d", os.Getpid(), cgroupSeq.Add(1)))
	if err := os.Mkdir(dir, 0o755); err != nil {
		return "", fmt.Errorf("pgcluster: CPUs needs to create cgroups (run as root): %w", err)
	}
	// A cpuset group takes no process before both lists are set.
	if err := os.WriteFile(filepath.Join(dir, "cpuset.mems"), mems, 0o644); err != nil {
		_ = os.Remove(dir)
		return "", fmt.Errorf("pgcluster: cpuset.mems: %w", err)
	}
	if err := os.WriteFile(filepath.Join(dir, "cpuset.cpus"), []byte(cpus), 0o644); err != nil {
		_ = os.Remove(dir)
		return "", fmt.Errorf("pgcluster: CPUs %q: %w", cpus, err)
	}
	return dir, nil
}

// removeStaleCgroups removes the shardproxy-<pid>-* groups under root
// whose creator is dead and that hold no processes.
func removeStaleCgroups(root string) {
	dirs, _ := filepath.Glob(filepath.Join(root, "shardproxy-*"))
	for _, d := range dirs {
		parts := strings.Split(filepath.Base(d), "-")
		if len(parts) != 3 {
			continue
		}
		pid, err := strconv.Atoi(parts[1])
		if err != nil || pid == os.Getpid() || syscall.Kill(pid, 0) == nil {
			continue
		}
		subs, _ := os.ReadDir(d)
		for _, s := range subs {
			if s.IsDir() {
				_ = os.Remove(filepath.Join(d, s.Name()))
			}
		}
		_ = os.Remove(d)
	}
}

// createInstanceCgroup makes <cluster>/<name> with quota cores of CPU.
func createInstanceCgroup(clusterDir, name string, quota float64) (string, error) {
	dir := filepath.Join(clusterDir, name)
	if err := os.Mkdir(dir, 0o755); err != nil && !errors.Is(err, os.ErrExist) {
		return "", fmt.Errorf("pgcluster: create cgroup: %w", err)
	}
	q := int64(quota * cfsPeriodUS)
	if q < 1000 {
		q = 1000 // the kernel's minimum
	}
	if err := os.WriteFile(filepath.Join(dir, "cpu.cfs_period_us"), []byte(strconv.Itoa(cfsPeriodUS)), 0o644); err != nil {
		return "", fmt.Errorf("pgcluster: cgroup period: %w", err)
	}
	if err := os.WriteFile(filepath.Join(dir, "cpu.cfs_quota_us"), []byte(strconv.FormatInt(q, 10)), 0o644); err != nil {
		return "", fmt.Errorf("pgcluster: cgroup quota: %w", err)
	}
	return dir, nil
}

// joinCgroup moves pid and the children it has already forked into dir.
// Children forked after pid moved inherit the group.
func joinCgroup(dir string, pid int) error {
	procs := filepath.Join(dir, "cgroup.procs")
	if err := os.WriteFile(procs, []byte(strconv.Itoa(pid)), 0o644); err != nil {
		return fmt.Errorf("pgcluster: add %d to cgroup: %w", pid, err)
	}
	for _, kid := range childrenOf(pid) {
		// A child may exit meanwhile; that is not an error.
		_ = os.WriteFile(procs, []byte(strconv.Itoa(kid)), 0o644)
	}
	return nil
}

// removeCgroup removes an instance's group once its processes are gone.
func removeCgroup(dir string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		err := os.Remove(dir)
		if err == nil || errors.Is(err, os.ErrNotExist) {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("pgcluster: remove cgroup %s: %w", dir, err)
		}
		time.Sleep(10 * time.Millisecond) // polling interval, bounded by deadline
	}
}
