package failure

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"

	"github.com/peerpod/peerpod/shim/daemon"
	"github.com/peerpod/peerpod/shim/sandbox/sandboxtest"
	"github.com/peerpod/peerpod/test/kataclient"
)

// Malformed hypervisor requests are refused with InvalidArgument or
// NotFound naming the field, and leave nothing behind.
func TestMalformedRequests(t *testing.T) {
	base := shortDir(t)
	prov := sandboxtest.New(nil)
	t.Cleanup(prov.Close)
	ip := runDaemon(t, base, daemon.Options{Provider: prov}, map[string]string{"FORWARDER_PORT": strconv.Itoa(prov.Port)})
	kc, _ := kataclient.New(kataclient.Config{HypervisorSocket: ip.cfg.Endpoint})
	good := kataclient.Pod{Name: "ok", Namespace: "failure", VCPUs: 1, MemoryMiB: 256}.Annotations()
	with := func(key, value string) map[string]string {
		a := map[string]string{}
		for k, v := range good {
			a[k] = v
		}
		a[key] = value
		return a
	}
	id := kataclient.NewSandboxID()
	cases := []struct {
		name  string
		call  func(ctx context.Context) error
		code  codes.Code
		field string
	}{
		{"CreateVM empty id", func(ctx context.Context) error { _, err := kc.CreateVM(ctx, "", good, ""); return err }, codes.InvalidArgument, "id"},
		{"CreateVM id with slash", func(ctx context.Context) error { _, err := kc.CreateVM(ctx, "../etc", good, ""); return err }, codes.InvalidArgument, "id"},
		{"CreateVM id too long", func(ctx context.Context) error {
			_, err := kc.CreateVM(ctx, strings.Repeat("a", 200), good, "")
			return err
		}, codes.InvalidArgument, "id"},
		{"StartVM empty id", func(ctx context.Context) error { return kc.StartVM(ctx, "") }, codes.InvalidArgument, "id"},
		{"StopVM empty id", func(ctx context.Context) error { return kc.StopVM(ctx, "") }, codes.InvalidArgument, "id"},
		{"StartVM unknown id", func(ctx context.Context) error { return kc.StartVM(ctx, id) }, codes.NotFound, id},
		{"StopVM unknown id", func(ctx context.Context) error { return kc.StopVM(ctx, id) }, codes.NotFound, id},
	}
	bad := []struct{ key, value string }{
		{kataclient.AnnotDefaultVCPUs, "two"},
		{kataclient.AnnotDefaultVCPUs, "-1"},
		{kataclient.AnnotDefaultVCPUs, "100000"},
		{kataclient.AnnotDefaultMemory, "lots"},
		{kataclient.AnnotDefaultMemory, "1e9"},
		{kataclient.AnnotDefaultGPUs, "x"},
		{kataclient.AnnotSandboxName, "bad name/"},
		{kataclient.AnnotSandboxNamespace, strings.Repeat("n", 300)},
		{kataclient.AnnotMachineType, "has space"},
		{kataclient.AnnotImage, "img\x00"},
		{kataclient.AnnotInitdata, "version = [unclosed"},
	}
	for _, b := range bad {
		cases = append(cases, struct {
			name  string
			call  func(ctx context.Context) error
			code  codes.Code
			field string
		}{"CreateVM " + b.key + "=" + b.value[:min(len(b.value), 12)], func(ctx context.Context) error {
			_, err := kc.CreateVM(ctx, kataclient.NewSandboxID(), with(b.key, b.value), "")
			return err
		}, codes.InvalidArgument, b.key})
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			err := tc.call(ctx)
			if codeOf(err) != tc.code || !strings.Contains(err.Error(), tc.field) {
				t.Fatalf("err = %v (code %v), want %v naming %q", err, codeOf(err), tc.code, tc.field)
			}
		})
	}
	if n := len(ip.d.Status().Sandboxes); n != 0 {
		t.Errorf("%d sandboxes recorded from malformed requests", n)
	}
	if n := len(prov.VMs()); n != 0 {
		t.Errorf("%d VMs made from malformed requests", n)
	}
	if entries, _ := os.ReadDir(filepath.Join(base, "pods")); len(entries) > 0 {
		t.Errorf("%d agent socket directories left", len(entries))
	}
}
