package cgroups

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	pb "github.com/peerpod/peerpod/api/agent"
)

// Stats reads the CPU, memory and pids statistics of cgroup path.
func (m *Manager) Stats(path string) (*pb.CgroupStats, error) {
	if m.V2 {
		return m.statsV2(path)
	}
	return m.statsV1(path)
}

func (m *Manager) statsV2(path string) (*pb.CgroupStats, error) {
	d := filepath.Join(m.Root, path)
	if _, err := os.Stat(d); err != nil {
		return nil, fmt.Errorf("cgroups: stats of %s: %w", path, err)
	}
	st := &pb.CgroupStats{
		CpuStats:    &pb.CpuStats{CpuUsage: &pb.CpuUsage{}, ThrottlingData: &pb.ThrottlingData{}},
		MemoryStats: &pb.MemoryStats{Usage: &pb.MemoryData{}, SwapUsage: &pb.MemoryData{}, UseHierarchy: true},
		PidsStats:   &pb.PidsStats{},
	}
	if cpu, err := readKV(filepath.Join(d, "cpu.stat")); err == nil {
		// v2 counts microseconds; the wire (like v1) carries nanoseconds.
		st.CpuStats.CpuUsage.TotalUsage = cpu["usage_usec"] * 1000
		st.CpuStats.CpuUsage.UsageInUsermode = cpu["user_usec"] * 1000
		st.CpuStats.CpuUsage.UsageInKernelmode = cpu["system_usec"] * 1000
		st.CpuStats.ThrottlingData.Periods = cpu["nr_periods"]
		st.CpuStats.ThrottlingData.ThrottledPeriods = cpu["nr_throttled"]
		st.CpuStats.ThrottlingData.ThrottledTime = cpu["throttled_usec"] * 1000
	}
	st.MemoryStats.Usage.Usage, _ = readUint(filepath.Join(d, "memory.current"))
	st.MemoryStats.Usage.MaxUsage, _ = readUint(filepath.Join(d, "memory.peak"))
	st.MemoryStats.Usage.Limit, _ = readUint(filepath.Join(d, "memory.max"))
	st.MemoryStats.SwapUsage.Usage, _ = readUint(filepath.Join(d, "memory.swap.current"))
	st.MemoryStats.SwapUsage.Limit, _ = readUint(filepath.Join(d, "memory.swap.max"))
	if ev, err := readKV(filepath.Join(d, "memory.events")); err == nil {
		st.MemoryStats.Usage.Failcnt = ev["max"]
	}
	if ms, err := readKV(filepath.Join(d, "memory.stat")); err == nil {
		st.MemoryStats.Stats = ms
		st.MemoryStats.Cache = ms["file"]
	}
	st.PidsStats.Current, _ = readUint(filepath.Join(d, "pids.current"))
	st.PidsStats.Limit, _ = readUint(filepath.Join(d, "pids.max"))
	return st, nil
}

func (m *Manager) statsV1(path string) (*pb.CgroupStats, error) {
	mem := m.dir("memory", path)
	if _, err := os.Stat(mem); err != nil {
		return nil, fmt.Errorf("cgroups: stats of %s: %w", path, err)
	}
	st := &pb.CgroupStats{
		CpuStats:    &pb.CpuStats{CpuUsage: &pb.CpuUsage{}, ThrottlingData: &pb.ThrottlingData{}},
		MemoryStats: &pb.MemoryStats{Usage: &pb.MemoryData{}, SwapUsage: &pb.MemoryData{}, KernelUsage: &pb.MemoryData{}},
		PidsStats:   &pb.PidsStats{},
	}
	acct := m.dir("cpuacct", path)
	st.CpuStats.CpuUsage.TotalUsage, _ = readUint(filepath.Join(acct, "cpuacct.usage"))
	if b, err := os.ReadFile(filepath.Join(acct, "cpuacct.usage_percpu")); err == nil {
		for _, f := range strings.Fields(string(b)) {
			v, _ := strconv.ParseUint(f, 10, 64)
			st.CpuStats.CpuUsage.PercpuUsage = append(st.CpuStats.CpuUsage.PercpuUsage, v)
		}
	}
	if ut, err := readKV(filepath.Join(acct, "cpuacct.stat")); err == nil {
		// USER_HZ ticks (100 per second on Linux) → nanoseconds.
		st.CpuStats.CpuUsage.UsageInUsermode = ut["user"] * 10_000_000
		st.CpuStats.CpuUsage.UsageInKernelmode = ut["system"] * 10_000_000
	}
	if th, err := readKV(filepath.Join(m.dir("cpu", path), "cpu.stat")); err == nil {
		st.CpuStats.ThrottlingData.Periods = th["nr_periods"]
		st.CpuStats.ThrottlingData.ThrottledPeriods = th["nr_throttled"]
		st.CpuStats.ThrottlingData.ThrottledTime = th["throttled_time"]
	}
	u := st.MemoryStats.Usage
	u.Usage, _ = readUint(filepath.Join(mem, "memory.usage_in_bytes"))
	u.MaxUsage, _ = readUint(filepath.Join(mem, "memory.max_usage_in_bytes"))
	u.Limit, _ = readUint(filepath.Join(mem, "memory.limit_in_bytes"))
	u.Failcnt, _ = readUint(filepath.Join(mem, "memory.failcnt"))
	k := st.MemoryStats.KernelUsage
	k.Usage, _ = readUint(filepath.Join(mem, "memory.kmem.usage_in_bytes"))
	k.MaxUsage, _ = readUint(filepath.Join(mem, "memory.kmem.max_usage_in_bytes"))
	k.Limit, _ = readUint(filepath.Join(mem, "memory.kmem.limit_in_bytes"))
	s := st.MemoryStats.SwapUsage
	s.Usage, _ = readUint(filepath.Join(mem, "memory.memsw.usage_in_bytes"))
	s.Limit, _ = readUint(filepath.Join(mem, "memory.memsw.limit_in_bytes"))
	if h, err := readUint(filepath.Join(mem, "memory.use_hierarchy")); err == nil {
		st.MemoryStats.UseHierarchy = h == 1
	}
	if ms, err := readKV(filepath.Join(mem, "memory.stat")); err == nil {
		st.MemoryStats.Stats = ms
		st.MemoryStats.Cache = ms["cache"]
	}
	pids := m.dir("pids", path)
	st.PidsStats.Current, _ = readUint(filepath.Join(pids, "pids.current"))
	st.PidsStats.Limit, _ = readUint(filepath.Join(pids, "pids.max"))
	return st, nil
}
