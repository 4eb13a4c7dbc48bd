package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/peerpod/peerpod/api/userdata"
	"github.com/peerpod/peerpod/provider"
	"github.com/peerpod/peerpod/shim/config"
	"github.com/peerpod/peerpod/shim/daemon"
	"github.com/peerpod/peerpod/shim/journal"
	"github.com/peerpod/peerpod/shim/pool"
	"github.com/peerpod/peerpod/shim/sandbox"
	"github.com/peerpod/peerpod/shim/sandbox/sandboxtest"
)

// world is a node: a journal in STATE_DIR and an in-memory provider holding
// VMs of this node (owned and orphaned) and of another node.
type world struct {
	env  env
	prov *sandboxtest.Provider
	jdir string
	vars map[string]string
	ids  map[string]string // VM name → id
}

func newWorld(t *testing.T) *world {
	t.Helper()
	state := t.TempDir()
	prov := sandboxtest.New(nil)
	prov.SetFaults(sandboxtest.Faults{NoListener: true})
	t.Cleanup(prov.Close)
	w := &world{prov: prov, jdir: filepath.Join(state, daemon.JournalDir), ids: map[string]string{},
		vars: map[string]string{"CLOUD_PROVIDER": "sandboxtest", "ATTESTER": "fake", "NODE_NAME": "node-1",
			"CLUSTER_ID": "c1", "STATE_DIR": state, "PROBE_PORT": "1"}}
	w.env = env{getenv: func(k string) string { return w.vars[k] },
		newProvider: func(context.Context, *config.Config, func(string) string) (provider.Provider, error) {
			return prov, nil
		}}
	j, err := journal.Open(w.jdir)
	if err != nil {
		t.Fatal(err)
	}
	vm := func(name, node, sandboxID string) {
		u, _ := userdata.Encode(&userdata.Config{Version: 1, SandboxID: sandboxID, TunnelCA: "x", Attester: "fake"})
		inst, err := prov.Create(context.Background(), provider.CreateRequest{Name: name, UserData: u,
			Tags: provider.Tags(provider.Owner{ClusterID: "c1", Node: node, SandboxID: sandboxID, PodNamespace: "ns", PodName: name}, nil)})
		if err != nil {
			t.Fatal(err)
		}
		w.ids[name] = inst.ID
	}
	vm("podvm-web-aaaaaaaa", "node-1", "aaaaaaaa")
	vm("podvm-leak-bbbbbbbb", "node-1", "bbbbbbbb")
	vm("podvm-gone-cccccccc", "node-1", "cccccccc")
	vm("podvm-other-dddddddd", "node-2", "dddddddd")
	// Warm VMs carry no sandbox tag: one taken by a sandbox (the journal
	// names it), one no sandbox took.
	warm := func(name string) {
		u, _ := userdata.Encode(&userdata.Config{Version: 1, Warm: true, TunnelCA: "x", Attester: "fake"})
		tags := provider.Tags(provider.Owner{ClusterID: "c1", Node: "node-1"}, nil)
		tags[provider.TagWarm] = "true"
		inst, err := prov.Create(context.Background(), provider.CreateRequest{Name: name, SandboxID: name, UserData: u, Tags: tags})
		if err != nil {
			t.Fatal(err)
		}
		w.ids[name] = inst.ID
	}
	warm("podvm-warm-taken")
	warm("podvm-warm-idle")
	for _, e := range []journal.Entry{
		{SandboxID: "aaaaaaaa", State: journal.Running, PodName: "web", PodNamespace: "ns", VMName: "podvm-web-aaaaaaaa", VMID: w.ids["podvm-web-aaaaaaaa"], AgentSocket: "/x"},
		{SandboxID: "11111111", State: journal.Running, PodName: "api", PodNamespace: "ns", VMName: "podvm-warm-taken", VMID: w.ids["podvm-warm-taken"], AgentSocket: "/z"},
		// A failed sandbox does not own the VM its record still names.
		{SandboxID: "cccccccc", State: journal.Failed, PodName: "gone", VMName: "podvm-gone-cccccccc", VMID: w.ids["podvm-gone-cccccccc"], Error: "boom", AgentSocket: "/y"},
	} {
		if err := j.Put(&e); err != nil {
			t.Fatal(err)
		}
	}
	return w
}

func (w *world) run(t *testing.T, args ...string) (string, error) {
	t.Helper()
	cmd := newRootCmd(w.env)
	var out bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetErr(&out)
	cmd.SetArgs(args)
	err := cmd.ExecuteContext(context.Background())
	return out.String(), err
}

func (w *world) names() map[string]bool {
	out := map[string]bool{}
	for _, vm := range w.prov.VMs() {
		out[vm.Name] = true
	}
	return out
}

func TestVMsMarksOrphans(t *testing.T) {
	w := newWorld(t)
	out, err := w.run(t, "vms", "-o", "json")
	if err != nil {
		t.Fatal(err)
	}
	var rows []vmRow
	if err := json.Unmarshal([]byte(out), &rows); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	got := map[string]bool{}
	for _, r := range rows {
		got[r.Name] = r.Orphan
	}
	want := map[string]bool{"podvm-web-aaaaaaaa": false, "podvm-leak-bbbbbbbb": true, "podvm-gone-cccccccc": true,
		"podvm-warm-taken": false, "podvm-warm-idle": true}
	if len(got) != len(want) {
		t.Fatalf("rows %v, want %v (another node's VM must not be listed)", got, want)
	}
	for k, v := range want {
		if o, ok := got[k]; !ok || o != v {
			t.Errorf("%s orphan=%v listed=%v, want orphan=%v", k, o, ok, v)
		}
	}
	table, err := w.run(t, "vms")
	if err != nil || strings.Count(table, "ORPHAN") != 3 || !strings.Contains(table, "running") {
		t.Fatalf("table (%v):\n%s", err, table)
	}
}

func TestGC(t *testing.T) {
	cases := []struct {
		name     string
		args     []string
		left     []string
		wantText string
	}{
		{"dry run deletes nothing", []string{"gc", "--dry-run", "--min-age", "0s"},
			[]string{"podvm-web-aaaaaaaa", "podvm-leak-bbbbbbbb", "podvm-gone-cccccccc", "podvm-other-dddddddd", "podvm-warm-taken", "podvm-warm-idle"}, "would delete podvm-leak-bbbbbbbb"},
		{"young orphans are left", []string{"gc", "--min-age", "1h"},
			[]string{"podvm-web-aaaaaaaa", "podvm-leak-bbbbbbbb", "podvm-gone-cccccccc", "podvm-other-dddddddd", "podvm-warm-taken", "podvm-warm-idle"}, "leaving podvm-leak-bbbbbbbb"},
		{"deletes orphans only", []string{"gc", "--min-age", "0s"},
			[]string{"podvm-web-aaaaaaaa", "podvm-other-dddddddd", "podvm-warm-taken"}, "deleting podvm-gone-cccccccc"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			w := newWorld(t)
			out, err := w.run(t, tc.args...)
			if err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(out, tc.wantText) {
				t.Errorf("output lacks %q:\n%s", tc.wantText, out)
			}
			got := w.names()
			if len(got) != len(tc.left) {
				t.Errorf("VMs left %v, want %v", got, tc.left)
			}
			for _, n := range tc.left {
				if !got[n] {
					t.Errorf("%s was deleted", n)
				}
			}
		})
	}
}

func TestGCRefusesCorruptJournal(t *testing.T) {
	w := newWorld(t)
	if err := writeFile(filepath.Join(w.jdir, "eeeeeeee.json"), "{not json"); err != nil {
		t.Fatal(err)
	}
	if _, err := w.run(t, "gc", "--min-age", "0s"); err == nil {
		t.Fatal("gc ran over a corrupt journal")
	}
	if n := len(w.names()); n != 6 {
		t.Fatalf("%d VMs left, want 6", n)
	}
}

func TestStatus(t *testing.T) {
	created := time.Now().Add(-3 * time.Minute)
	doc := daemon.Status{Node: "node-1", Provider: "azure", Attester: "tdx", Sandboxes: []sandbox.Status{{
		Entry:       journal.Entry{SandboxID: "0123456789abcdef", State: journal.Running, PodName: "web", PodNamespace: "ns", VMName: "podvm-web-01234567", Created: created},
		Connections: 2,
	}}, WarmPool: &pool.Status{Size: 2, Ready: 1, Booting: 1}}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/status" {
			http.NotFound(w, r)
			return
		}
		json.NewEncoder(w).Encode(doc)
	}))
	t.Cleanup(srv.Close)
	w := newWorld(t)

	out, err := w.run(t, "status", "--url", srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"attester tdx", "from peerpodd", "ns/web", "running", "3m", "podvm-web-01234567", "warm pool: 1 ready, 1 booting (size 2)"} {
		if !strings.Contains(out, want) {
			t.Errorf("table lacks %q:\n%s", want, out)
		}
	}
	// peerpodd down: the journal answers.
	out, err = w.run(t, "status", "--url", "http://127.0.0.1:1", "-o", "json")
	if err != nil {
		t.Fatal(err)
	}
	var rep statusReport
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	if rep.Source != "journal" || rep.Unreachable == "" || len(rep.Sandboxes) != 3 || rep.Attester != "fake" {
		t.Fatalf("journal status %+v", rep)
	}
	if _, err := w.run(t, "status", "-o", "yaml"); err == nil || !strings.Contains(err.Error(), "-o") {
		t.Fatalf("bad -o accepted: %v", err)
	}
}

func TestMissingConfigNamesKey(t *testing.T) {
	w := newWorld(t)
	delete(w.vars, "NODE_NAME")
	_, err := w.run(t, "vms")
	if err == nil || !strings.Contains(err.Error(), "NODE_NAME") {
		t.Fatalf("err = %v, want one naming NODE_NAME", err)
	}
}

func TestAge(t *testing.T) {
	now := time.Now()
	for _, tc := range []struct {
		d    time.Duration
		want string
	}{{30 * time.Second, "30s"}, {5 * time.Minute, "5m"}, {3 * time.Hour, "3h"}, {72 * time.Hour, "3d"}, {-time.Second, "0s"}} {
		if got := age(now, now.Add(-tc.d)); got != tc.want {
			t.Errorf("age(%v) = %s, want %s", tc.d, got, tc.want)
		}
	}
	if age(now, time.Time{}) != "-" {
		t.Error("zero time")
	}
}

func writeFile(path, s string) error { return os.WriteFile(path, []byte(s), 0o600) }

func TestNewProviderNamesKey(t *testing.T) {
	cases := []struct{ provider, key string }{
		{"gcp", "CLOUD_PROVIDER"},
		{"azure", "AZURE_"},
		{"aws", "PODVM_AMI_ID"},
		{"libvirt", "LIBVIRT_"},
	}
	for _, tc := range cases {
		t.Run(tc.provider, func(t *testing.T) {
			_, err := newProvider(context.Background(), &config.Config{CloudProvider: tc.provider}, func(string) string { return "" })
			if err == nil || !strings.Contains(err.Error(), tc.key) {
				t.Fatalf("err = %v, want one naming %s", err, tc.key)
			}
		})
	}
}
