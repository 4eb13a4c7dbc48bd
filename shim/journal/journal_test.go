package journal

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

func openT(t *testing.T) *Journal {
	t.Helper()
	j, err := Open(filepath.Join(t.TempDir(), "state"))
	if err != nil {
		t.Fatal(err)
	}
	return j
}

func TestPutGetReload(t *testing.T) {
	j := openT(t)
	e := &Entry{SandboxID: "abc123", State: Created, PodName: "p", PodNamespace: "ns", AgentSocket: "/run/x/agent.ttrpc", InstanceTypes: []string{"a", "b"}}
	if err := j.Put(e); err != nil {
		t.Fatal(err)
	}
	e.State = Provisioning
	e.VMName = "podvm-p-abc123"
	if err := j.Put(e); err != nil {
		t.Fatal(err)
	}
	// A fresh journal on the same dir sees the last write.
	j2, err := Open(j.Dir())
	if err != nil {
		t.Fatal(err)
	}
	all, err := j2.Load()
	if err != nil {
		t.Fatal(err)
	}
	if len(all) != 1 || all[0].State != Provisioning || all[0].VMName != "podvm-p-abc123" || all[0].InstanceTypes[1] != "b" {
		t.Fatalf("reload = %+v", all)
	}
	if all[0].Created.IsZero() || all[0].Updated.Before(all[0].Created) {
		t.Fatalf("times not set: %+v", all[0])
	}
	if err := j2.Remove("abc123"); err != nil {
		t.Fatal(err)
	}
	if _, err := j2.Get("abc123"); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("Get after Remove: %v", err)
	}
	if err := j2.Remove("abc123"); err != nil {
		t.Fatalf("second Remove: %v", err)
	}
}

func TestPutRejects(t *testing.T) {
	j := openT(t)
	cases := []struct {
		name string
		e    Entry
		want string
	}{
		{"empty id", Entry{State: Created}, "id is empty"},
		{"slash", Entry{SandboxID: "a/../x", State: Created}, "outside"},
		{"dot", Entry{SandboxID: ".x", State: Created}, "starts with"},
		{"long", Entry{SandboxID: strings.Repeat("a", 129), State: Created}, "at most 128"},
		{"state", Entry{SandboxID: "x", State: "flying"}, "unknown state"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := j.Put(&c.e)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("Put = %v, want error containing %q", err, c.want)
			}
		})
	}
	des, _ := os.ReadDir(j.Dir())
	if len(des) != 0 {
		t.Fatalf("rejected puts left files: %v", des)
	}
}

// A crash mid-write leaves at most a temporary file: the old entry stays
// readable, and Open removes the leftover.
func TestInterruptedWrite(t *testing.T) {
	j := openT(t)
	if err := j.Put(&Entry{SandboxID: "s1", State: Running}); err != nil {
		t.Fatal(err)
	}
	leftover := filepath.Join(j.Dir(), ".tmp-s1-123")
	if err := os.WriteFile(leftover, []byte(`{"version":1,"sandbox_id":"s1","sta`), 0o600); err != nil {
		t.Fatal(err)
	}
	all, err := ReadDir(j.Dir())
	if err != nil || len(all) != 1 || all[0].State != Running {
		t.Fatalf("ReadDir with leftover = %+v, %v", all, err)
	}
	if _, err := Open(j.Dir()); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(leftover); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("leftover not removed: %v", err)
	}
}

func TestReadDirReportsCorrupt(t *testing.T) {
	j := openT(t)
	if err := j.Put(&Entry{SandboxID: "good", State: Running}); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(j.Dir(), "bad.json"), []byte("{"), 0o600)
	os.WriteFile(filepath.Join(j.Dir(), "other.json"), []byte(`{"version":1,"sandbox_id":"good","state":"running"}`), 0o600)
	all, err := ReadDir(j.Dir())
	if len(all) != 1 || all[0].SandboxID != "good" {
		t.Fatalf("good entries = %+v", all)
	}
	if err == nil || !strings.Contains(err.Error(), "bad.json") || !strings.Contains(err.Error(), "other.json") {
		t.Fatalf("err = %v, want both bad files named", err)
	}
}

// Readers racing a writer always see a whole entry, never a partial one.
func TestConcurrentReadersSeeWholeEntries(t *testing.T) {
	j := openT(t)
	if err := j.Put(&Entry{SandboxID: "s", State: Created}); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	done := make(chan struct{})
	errc := make(chan error, 1)
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-done:
				return
			default:
			}
			if _, err := j.Get("s"); err != nil {
				select {
				case errc <- err:
				default:
				}
				return
			}
		}
	}()
	for i := range 200 {
		e := &Entry{SandboxID: "s", State: Running, PodName: strings.Repeat("x", i*50)}
		if err := j.Put(e); err != nil {
			t.Fatal(err)
		}
	}
	close(done)
	wg.Wait()
	select {
	case err := <-errc:
		t.Fatalf("reader saw a broken entry: %v", err)
	default:
	}
}

func TestConcurrentSandboxes(t *testing.T) {
	j := openT(t)
	var wg sync.WaitGroup
	for i := range 50 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			id := fmt.Sprintf("sb-%02d", i)
			for _, st := range []State{Created, Provisioning, Running} {
				if err := j.Put(&Entry{SandboxID: id, State: st}); err != nil {
					t.Error(err)
				}
			}
		}()
	}
	wg.Wait()
	all, err := j.Load()
	if err != nil || len(all) != 50 {
		t.Fatalf("Load = %d entries, %v", len(all), err)
	}
	for _, e := range all {
		if e.State != Running {
			t.Fatalf("%s in %s", e.SandboxID, e.State)
		}
	}
}

func TestOwnsVM(t *testing.T) {
	cases := []struct {
		e    Entry
		want bool
	}{
		{Entry{State: Running, VMID: "i-1", VMName: "podvm-a"}, true},
		{Entry{State: Running, VMID: "i-2", VMName: "podvm-a"}, true}, // same name: a re-made VM
		{Entry{State: Running, VMID: "i-2", VMName: "podvm-b"}, false},
		{Entry{State: Provisioning, VMName: "podvm-a"}, true},
		{Entry{State: Stopping, VMID: "i-1"}, true},
		{Entry{State: Created}, false},
		{Entry{State: Failed, VMID: "i-1", VMName: "podvm-a"}, false},
	}
	for i, c := range cases {
		if got := c.e.OwnsVM("i-1", "podvm-a"); got != c.want {
			t.Errorf("case %d: OwnsVM = %v, want %v", i, got, c.want)
		}
	}
}
