package main

import (
	"bytes"
	"strings"
	"testing"

	"github.com/peerpod/peerpod/shim/journal"
	"github.com/peerpod/peerpod/shim/sandbox"
)

func TestParsePodRef(t *testing.T) {
	tests := []struct{ in, ns, name, err string }{
		{"web", "default", "web", ""},
		{"shop/web", "shop", "web", ""},
		{"/web", "", "", "want [NAMESPACE/]NAME"},
		{"shop/", "", "", "want [NAMESPACE/]NAME"},
		{"a/b/c", "", "", "want [NAMESPACE/]NAME"},
	}
	for _, tc := range tests {
		ns, name, err := parsePodRef(tc.in)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("parsePodRef(%q) err = %v, want %q", tc.in, err, tc.err)
			}
			continue
		}
		if err != nil || ns != tc.ns || name != tc.name {
			t.Errorf("parsePodRef(%q) = %q, %q, %v", tc.in, ns, name, err)
		}
	}
}

func TestFindVMs(t *testing.T) {
	sbs := []sandbox.Status{
		{Entry: journal.Entry{SandboxID: "aaaaaaaaaaaaaaaa", PodNamespace: "shop", PodName: "web", State: journal.Running, VMName: "podvm-web-aaaaaaaa", VMID: "i-1", InstanceType: "m6a.large", VMAddr: "10.0.0.5:15150"}},
		{Entry: journal.Entry{SandboxID: "bbbb", PodNamespace: "default", PodName: "web", State: journal.Running, VMName: "podvm-web-bbbb"}},
	}
	got := findVMs(sbs, "shop", "web")
	if len(got) != 1 || got[0].VMID != "i-1" || got[0].Pod != "shop/web" {
		t.Fatalf("findVMs = %+v", got)
	}
	if len(findVMs(sbs, "shop", "db")) != 0 {
		t.Fatal("found a VM for a pod with none")
	}
	var b bytes.Buffer
	if err := writeVMOf(&b, got); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"shop/web", "aaaaaaaaaaaa", "podvm-web-aaaaaaaa", "i-1", "m6a.large", "10.0.0.5:15150"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("table lacks %q:\n%s", want, b.String())
		}
	}
}
