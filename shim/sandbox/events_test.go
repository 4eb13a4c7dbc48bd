package sandbox_test

import (
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/peerpod/peerpod/provider"
	"github.com/peerpod/peerpod/shim/journal"
	"github.com/peerpod/peerpod/shim/sandbox"
	"github.com/peerpod/peerpod/shim/sandbox/sandboxtest"
)

var duration = regexp.MustCompile(`in [0-9.]+(ns|µs|ms|s)|[0-9.]+(ns|µs|ms|s) after`)

type recordedEvent struct {
	pod, reason, msg string
	warning          bool
}

type eventLog struct {
	mu  sync.Mutex
	evs []recordedEvent
}

func (l *eventLog) record(e journal.Entry, reason string, warning bool, msg string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.evs = append(l.evs, recordedEvent{e.PodNamespace + "/" + e.PodName, reason, msg, warning})
}

func (l *eventLog) reasons() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []string
	for _, e := range l.evs {
		out = append(out, e.reason)
	}
	return out
}

func TestEvents(t *testing.T) {
	tests := []struct {
		name   string
		faults *sandboxtest.Faults
		want   []string
	}{
		{"lifecycle", nil, []string{"PeerPodVMCreated", "PeerPodVMReady", "PeerPodVMDeleted"}},
		{"create fails", &sandboxtest.Faults{CreateErrClean: provider.Errorf(provider.ErrInvalidConfig, "image podvm-x not found")}, []string{"PeerPodVMFailed", "PeerPodVMDeleted"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			var log eventLog
			m := e.manager(t, func(o *sandbox.Options) { o.Events = log.record })
			ctx := ctxT(t, time.Minute)
			id := "events-" + strings.ReplaceAll(tc.name, " ", "-")
			if _, err := m.CreateVM(ctx, id, kataAnnotations("web"), ""); err != nil {
				t.Fatal(err)
			}
			if tc.faults != nil {
				e.prov.SetFaults(*tc.faults)
			}
			startErr := m.StartVM(ctx, id)
			if (startErr != nil) != (tc.faults != nil) {
				t.Fatalf("StartVM = %v", startErr)
			}
			if err := m.StopVM(ctx, id); err != nil {
				t.Fatal(err)
			}
			if got := strings.Join(log.reasons(), ","); got != strings.Join(tc.want, ",") {
				t.Fatalf("events %s, want %s", got, strings.Join(tc.want, ","))
			}
			for _, ev := range log.evs {
				if ev.pod != "default/web" || !strings.Contains(ev.msg, "podvm-web-") || ev.warning != (ev.reason == "PeerPodVMFailed") {
					t.Errorf("event %+v", ev)
				}
				if ev.reason != "PeerPodVMFailed" && !duration.MatchString(ev.msg) {
					t.Errorf("event %+v has no duration", ev)
				}
			}
		})
	}
}
