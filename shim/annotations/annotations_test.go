package annotations

import (
	"errors"
	"strings"
	"testing"
)

func kata(kv ...string) map[string]string {
	// The runtime always sends these keys, often empty.
	m := map[string]string{SandboxName: "", SandboxNamespace: "", MachineType: "", Image: "", DefaultVCPUs: "", DefaultMemory: "", Initdata: "", DefaultGPUs: "", GPUModel: ""}
	for i := 0; i < len(kv); i += 2 {
		m[kv[i]] = kv[i+1]
	}
	return m
}

func TestParse(t *testing.T) {
	s, err := Parse(kata(SandboxName, "nginx-7d9", SandboxNamespace, "default", DefaultVCPUs, "2", DefaultMemory, "4096",
		MachineType, "Standard_DC4as_v5", Image, "/subscriptions/x/images/podvm", Initdata, "version = \"0.1.0\"\n", "other", "ignored"))
	if err != nil {
		t.Fatal(err)
	}
	want := Spec{PodName: "nginx-7d9", PodNamespace: "default", VCPUs: 2, MemoryMiB: 4096, MachineType: "Standard_DC4as_v5", Image: "/subscriptions/x/images/podvm", Initdata: "version = \"0.1.0\"\n"}
	if *s != want {
		t.Fatalf("got %+v\nwant %+v", *s, want)
	}
	empty, err := Parse(kata())
	if err != nil || *empty != (Spec{}) {
		t.Fatalf("empty values: %+v %v", empty, err)
	}
	frac, err := Parse(kata(DefaultVCPUs, "1.5"))
	if err != nil || frac.VCPUs != 2 {
		t.Fatalf("fractional vCPUs: %+v %v", frac, err)
	}
}

func TestParseErrors(t *testing.T) {
	cases := []struct {
		key, value, want string
	}{
		{DefaultVCPUs, "two", "not a non-negative integer"},
		{DefaultVCPUs, "-1", "negative"},
		{DefaultVCPUs, "-0.5", "not a non-negative integer"},
		{DefaultVCPUs, "NaN", "not a non-negative integer"},
		{DefaultVCPUs, "100000", "exceeds"},
		{DefaultMemory, "4G", "not a non-negative integer"},
		{DefaultMemory, "1.5", "not a non-negative integer"},
		{DefaultGPUs, "99999999999999999999", "not a non-negative integer"},
		{MachineType, "a b", "printable"},
		{Image, "img\x00", "printable"},
		{MachineType, strings.Repeat("x", 300), "at most"},
		{SandboxName, "a/b", "outside"},
		{SandboxNamespace, strings.Repeat("n", 300), "at most"},
		{Initdata, "\xff\xfe", "UTF-8"},
		{Initdata, strings.Repeat("x", MaxInitdataSize+1), "at most"},
	}
	for _, c := range cases {
		t.Run(c.key+"="+c.value[:min(len(c.value), 12)], func(t *testing.T) {
			_, err := Parse(kata(c.key, c.value))
			var ae *Error
			if !errors.As(err, &ae) || ae.Key != c.key {
				t.Fatalf("err = %v, want one naming %s", err, c.key)
			}
			if !strings.Contains(err.Error(), c.key) || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("err = %q, want %q", err, c.want)
			}
		})
	}
}

// FuzzParse: any annotation values either parse into bounded values or give
// an *Error naming one of the keys; never a panic.
func FuzzParse(f *testing.F) {
	f.Add("nginx", "default", "Standard_D2", "2", "2048", "0", "img", "version = \"0.1.0\"")
	f.Add("", "", "", "", "", "", "", "")
	f.Add("a/b", "x", "m t", "-1", "1e9", "z", "\x00", "\xff")
	f.Add("p", "n", "t", "1.25", "0x10", "+3", "i", "H4sIAAAAAAAA")
	f.Fuzz(func(t *testing.T, name, ns, mt, cpus, mem, gpus, img, initdata string) {
		a := kata(SandboxName, name, SandboxNamespace, ns, MachineType, mt, DefaultVCPUs, cpus, DefaultMemory, mem, DefaultGPUs, gpus, Image, img, Initdata, initdata)
		s, err := Parse(a)
		if err != nil {
			var ae *Error
			if !errors.As(err, &ae) {
				t.Fatalf("error %v is not an *Error", err)
			}
			if _, known := a[ae.Key]; !known {
				t.Fatalf("error names unknown key %q", ae.Key)
			}
			return
		}
		if s.VCPUs < 0 || s.VCPUs > MaxVCPUs || s.MemoryMiB < 0 || s.MemoryMiB > MaxMemoryMiB || s.GPUs < 0 || s.GPUs > MaxGPUs {
			t.Fatalf("out of bounds: %+v", s)
		}
		if strings.ContainsAny(s.PodName+s.PodNamespace, "/ \x00") {
			t.Fatalf("unsafe name: %+v", s)
		}
	})
}
