// Package benchstat times benchmark iterations one by one and reports
// their median, for benchmarks that give a figure next to a baseline
// measured in the same run.
package benchstat

import (
	"slices"
	"testing"
	"time"
)

// Median is the median of ds (ds is left as it was); zero when ds is empty.
func Median(ds []time.Duration) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[len(s)/2]
}

// P50 runs f b.N times, timing each call, and reports their median in
// microseconds as the metric "p50-µs".
func P50(b *testing.B, f func()) {
	b.Helper()
	ds := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for range b.N {
		start := time.Now()
		f()
		ds = append(ds, time.Since(start))
	}
	b.StopTimer()
	b.ReportMetric(float64(Median(ds).Nanoseconds())/1e3, "p50-µs")
}
