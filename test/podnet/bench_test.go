package podnet_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// benchSeconds is how long each iperf3 direction runs.
const benchSeconds = 4

// BenchmarkPodNetwork measures TCP throughput (iperf3, both directions)
// and ping RTT (20 ms apart, and back to back) between the client and the pod for the plain veth path (the
// pod namespace itself, as a pod without a VM: the floor), tunnel mode and
// vxlan mode, in one run, with the CPU time spent per Gbit/s. Run it with
// -benchtime=1x: each iteration is a fixed-length iperf3 run.
func BenchmarkPodNetwork(b *testing.B) {
	requireRoot(b)
	if _, err := exec.LookPath("iperf3"); err != nil {
		b.Skip("needs iperf3")
	}
	for _, path := range []string{"veth", "tunnel", "vxlan"} {
		b.Run(path, func(b *testing.B) {
			mode := path
			if mode == "veth" {
				mode = "tunnel"
			}
			r := newRig(b, mode, 1500)
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
			defer cancel()
			server := r.inNodePod
			if path != "veth" {
				r.start(ctx)
				server = r.inPod
			}
			var m figures
			for i := 0; i < b.N; i++ {
				m = r.measure(ctx, b, server)
			}
			if path == "tunnel" {
				// The agent logs its pump's counters when the stream ends.
				if err := r.sb.StopVM(ctx); err != nil {
					b.Fatal(err)
				}
				vlog, _ := os.ReadFile(r.vm.Log)
				if mm := statsRE.FindAllStringSubmatch(string(vlog), -1); len(mm) > 0 {
					last := mm[len(mm)-1]
					f := make([]float64, len(last))
					for i := 1; i < len(last); i++ {
						f[i], _ = strconv.ParseFloat(last[i], 64)
					}
					b.Logf("VM pump: %.0f frames out in %.0f writes (%.1f KiB per frame, %.1f frames per write), %.0f frames in (%.1f KiB per frame)",
						f[1], f[6], f[4]/f[1]/1024, f[1]/f[6], f[2], f[5]/f[2]/1024)
				}
			}
			b.ReportMetric(m.upGbps, "Gbit/s-up")
			b.ReportMetric(m.downGbps, "Gbit/s-down")
			b.ReportMetric(m.rttUs, "µs-rtt")
			b.ReportMetric(m.busyRttUs, "µs-rtt-back-to-back")
			b.ReportMetric(m.cpuPerGbit, "cpu-s/Gbit")
			b.ReportMetric(0, "ns/op")
			b.Logf("%s: client→pod %.2f Gbit/s, pod→client %.2f Gbit/s, RTT %.0f µs (back to back %.0f µs), %.2f CPU-s per Gbit (%s)",
				path, m.upGbps, m.downGbps, m.rttUs, m.busyRttUs, m.cpuPerGbit, m.cpuDetail)
		})
	}
}

type figures struct {
	upGbps, downGbps, rttUs, busyRttUs, cpuPerGbit float64
	cpuDetail                                      string
}

// inNodePod runs a command in the node's pod namespace (CNI's).
func (r *rig) inNodePod(args ...string) *exec.Cmd {
	return exec.Command("ip", append([]string{"netns", "exec", r.pod}, args...)...)
}

// cpuTicks is a process's user+system time in clock ticks (/proc/PID/stat).
func cpuTicks(pid int) float64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
	u, _ := strconv.ParseFloat(f[11], 64)
	k, _ := strconv.ParseFloat(f[12], 64)
	return u + k
}

// clkTck is the kernel's USER_HZ (100 on Linux).
const clkTck = 100

var statsRE = regexp.MustCompile(`stats="\{ToStream:(\d+) FromStream:(\d+) Dropped:(\d+) ToStreamBytes:(\d+) FromStreamBytes:(\d+) Writes:(\d+)\}"`)

var rttRE = regexp.MustCompile(`= [0-9.]+/([0-9.]+)/`)

// measure runs iperf3 both ways and ping from the client to the pod.
func (r *rig) measure(ctx context.Context, b *testing.B, server func(...string) *exec.Cmd) figures {
	var m figures
	var cpu, bits float64
	var detail []string
	for _, dir := range []string{"up", "down"} {
		srv := server("iperf3", "-s", "-1", "-B", podIP, "-p", "5201")
		srv.Stdout, srv.Stderr = nil, nil
		if err := srv.Start(); err != nil {
			b.Fatal(err)
		}
		time.Sleep(300 * time.Millisecond)
		args := []string{"netns", "exec", r.cluster, "iperf3", "-c", podIP, "-p", "5201", "-t", strconv.Itoa(benchSeconds), "-J"}
		if dir == "down" {
			args = append(args, "-R")
		}
		procs := map[string]int{"peerpodd": os.Getpid(), "iperf3-server": srv.Process.Pid}
		if r.vm.PID > 0 {
			procs["agent"] = r.vm.PID
		}
		before := map[string]float64{}
		for k, pid := range procs {
			before[k] = cpuTicks(pid)
		}
		cli := exec.CommandContext(ctx, "ip", args...)
		out, err := cli.Output()
		after := map[string]float64{}
		for k, pid := range procs {
			after[k] = cpuTicks(pid)
		}
		srv.Process.Kill()
		srv.Wait()
		if err != nil {
			r.dump()
			b.Fatalf("iperf3 %s: %v\n%s", dir, err, out)
		}
		var res struct {
			End struct {
				SumReceived struct {
					BitsPerSecond float64 `json:"bits_per_second"`
					Seconds       float64 `json:"seconds"`
				} `json:"sum_received"`
			} `json:"end"`
		}
		if err := json.Unmarshal(out, &res); err != nil {
			b.Fatalf("iperf3 output: %v", err)
		}
		gbps := res.End.SumReceived.BitsPerSecond / 1e9
		if dir == "up" {
			m.upGbps = gbps
		} else {
			m.downGbps = gbps
		}
		bits += gbps * res.End.SumReceived.Seconds
		if ru, ok := cli.ProcessState.SysUsage().(*syscall.Rusage); ok {
			c := float64(ru.Utime.Nano()+ru.Stime.Nano()) / 1e9
			cpu += c
			detail = append(detail, fmt.Sprintf("%s iperf3-client %.2fs", dir, c))
		}
		for k := range procs {
			c := (after[k] - before[k]) / clkTck
			cpu += c
			detail = append(detail, fmt.Sprintf("%s %s %.2fs", dir, k, c))
		}
	}
	if bits > 0 {
		m.cpuPerGbit = cpu / bits
	}
	m.cpuDetail = strings.Join(detail, ", ")
	out, err := exec.CommandContext(ctx, "ip", "netns", "exec", r.cluster, "ping", "-q", "-c", "50", "-i", "0.02", podIP).Output()
	if err != nil {
		b.Fatalf("ping: %v\n%s", err, out)
	}
	if mm := rttRE.FindStringSubmatch(string(out)); mm != nil {
		ms, _ := strconv.ParseFloat(mm[1], 64)
		m.rttUs = ms * 1000
	}
	// Back to back (each ping sent when the last reply is in): no thread
	// on the path has time to go idle, which separates the cost of waking
	// idle threads and cores from the cost of the path itself.
	out, err = exec.CommandContext(ctx, "ip", "netns", "exec", r.cluster, "ping", "-q", "-A", "-c", "500", podIP).Output()
	if err != nil {
		b.Fatalf("ping -A: %v\n%s", err, out)
	}
	if mm := rttRE.FindStringSubmatch(string(out)); mm != nil {
		ms, _ := strconv.ParseFloat(mm[1], 64)
		m.busyRttUs = ms * 1000
	}
	return m
}
