package policy

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"reflect"
	"sort"
	"testing"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/rego"
	"google.golang.org/protobuf/proto"

	"github.com/peerpod/peerpod/agent/policy/irvm"
	"github.com/peerpod/peerpod/api/agent"
	"github.com/peerpod/peerpod/api/agent/types"
)

func sampleCreateContainer() *agent.CreateContainerRequest {
	return &agent.CreateContainerRequest{
		ContainerId: "c1",
		ExecId:      "c1",
		Storages: []*agent.Storage{{
			Driver:        "image_guest_pull",
			DriverOptions: []string{"image_guest_pull={}"},
			Source:        "docker.io/library/nginx@sha256:0000000000000000000000000000000000000000000000000000000000000000",
			Fstype:        "overlay",
			MountPoint:    "/run/kata-containers/c1/rootfs",
			FsGroup:       &agent.FSGroup{GroupId: 1000, GroupChangePolicy: types.FSGroupChangePolicy_OnRootMismatch},
		}},
		OCI: &agent.Spec{
			Version: "1.1.0",
			Process: &agent.Process{
				User:            &agent.User{UID: 1000, GID: 1000},
				Args:            []string{"/bin/sh", "-c", "sleep 1"},
				Env:             []string{"PATH=/usr/bin"},
				Cwd:             "/",
				NoNewPrivileges: true,
				OOMScoreAdj:     1000,
			},
			Root: &agent.Root{Path: "/run/kata-containers/c1/rootfs"},
			Mounts: []*agent.Mount{{
				Destination: "/etc/hosts",
				Source:      "/run/kata-containers/shared/containers/c1-0123456789abcdef-hosts",
				Type:        "bind",
				Options:     []string{"rbind", "ro"},
			}},
			Annotations: map[string]string{"io.kubernetes.cri.container-type": "container"},
			Linux: &agent.Linux{
				Resources:   &agent.LinuxResources{Memory: &agent.LinuxMemory{Limit: 1 << 40, Swap: -1}},
				CgroupsPath: "/kubepods/pod1/c1",
				Namespaces:  []*agent.LinuxNamespace{{Type: "mount"}},
				MaskedPaths: []string{"/proc/kcore"},
			},
		},
	}
}

// toJSON turns an OPA value into plain JSON values (numbers as float64).
func toJSON(t *testing.T, v ast.Value) any {
	t.Helper()
	j, err := ast.JSON(v)
	if err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal(j)
	if err != nil {
		t.Fatal(err)
	}
	var out any
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatal(err)
	}
	return out
}

// diff reports every path where got and want differ, field by field.
func diff(path string, got, want any) []string {
	switch w := want.(type) {
	case map[string]any:
		g, ok := got.(map[string]any)
		if !ok {
			return []string{fmt.Sprintf("%s: got %T %v, want an object", path, got, got)}
		}
		var out []string
		keys := map[string]bool{}
		for k := range w {
			keys[k] = true
		}
		for k := range g {
			keys[k] = true
		}
		sorted := make([]string, 0, len(keys))
		for k := range keys {
			sorted = append(sorted, k)
		}
		sort.Strings(sorted)
		for _, k := range sorted {
			gv, gok := g[k]
			wv, wok := w[k]
			switch {
			case !gok:
				out = append(out, fmt.Sprintf("%s.%s: missing", path, k))
			case !wok:
				out = append(out, fmt.Sprintf("%s.%s: unexpected field", path, k))
			default:
				out = append(out, diff(path+"."+k, gv, wv)...)
			}
		}
		return out
	case []any:
		g, ok := got.([]any)
		if !ok || len(g) != len(w) {
			return []string{fmt.Sprintf("%s: got %v, want %v", path, got, want)}
		}
		var out []string
		for i := range w {
			out = append(out, diff(fmt.Sprintf("%s[%d]", path, i), g[i], w[i])...)
		}
		return out
	default:
		if !reflect.DeepEqual(got, want) {
			return []string{fmt.Sprintf("%s: got %#v, want %#v", path, got, want)}
		}
		return nil
	}
}

// TestCreateContainerInputShape checks the input of a CreateContainerRequest
// against the documented Kata shape, field by field.
func TestCreateContainerInputShape(t *testing.T) {
	raw, err := os.ReadFile("testdata/create_container_input.json")
	if err != nil {
		t.Fatal(err)
	}
	var want any
	if err := json.Unmarshal(raw, &want); err != nil {
		t.Fatal(err)
	}
	got := toJSON(t, Input(sampleCreateContainer().ProtoReflect()))
	for _, d := range diff("input", got, want) {
		t.Error(d)
	}
}

func TestInputEncoding(t *testing.T) {
	tests := []struct {
		name string
		msg  proto.Message
		want string
	}{
		{"bytes as numbers", &agent.WriteStreamRequest{ContainerId: "c", Data: []byte{0, 1, 255}},
			`{"container_id":"c","data":[0,1,255],"exec_id":""}`},
		{"oneof set", &agent.LinuxSyscall{Names: []string{"read"}, Action: "SCMP_ACT_ERRNO", ErrnoRet: &agent.LinuxSyscall_Errnoret{Errnoret: 1}},
			`{"Action":"SCMP_ACT_ERRNO","Args":[],"ErrnoRet":{"errnoret":1},"Names":["read"]}`},
		{"oneof unset", &agent.LinuxSyscall{}, `{"Action":"","Args":[],"ErrnoRet":null,"Names":[]}`},
		{"enum as integer", &types.IPAddress{Family: types.IPFamily_v6, Address: "::1", Mask: "128"},
			`{"address":"::1","family":1,"mask":"128"}`},
		{"device type_", &agent.Device{Id: "d", Type: "vfio"},
			`{"container_path":"","id":"d","options":[],"type_":"vfio","vm_path":""}`},
		{"uint64 max", &agent.LinuxMemory{Swappiness: 1<<64 - 1},
			`{"DisableOOMKiller":false,"Kernel":0,"KernelTCP":0,"Limit":0,"Reservation":0,"Swap":0,"Swappiness":18446744073709551615}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := Input(tt.msg.ProtoReflect())
			// Compare exact JSON text, numbers untouched.
			j, err := ast.JSON(got)
			if err != nil {
				t.Fatal(err)
			}
			b, err := json.Marshal(j)
			if err != nil {
				t.Fatal(err)
			}
			if string(b) != tt.want {
				t.Fatalf("input =\n%s\nwant\n%s", b, tt.want)
			}
		})
	}
}

func TestCopyFileInput(t *testing.T) {
	tests := []struct {
		name string
		req  *agent.CopyFileRequest
		want string
	}{
		{"regular", &agent.CopyFileRequest{Path: "/run/x", FileMode: 0o100644, FileSize: 3, Data: []byte("abc"), Uid: -1},
			`{"dir_mode":0,"file_mode":33188,"file_size":3,"file_type":"Regular","gid":0,"offset":0,"path":"/run/x","symlink_target":"","uid":-1}`},
		{"dir", &agent.CopyFileRequest{Path: "/run/d", FileMode: 0o040755},
			`{"dir_mode":0,"file_mode":16877,"file_size":0,"file_type":"Directory","gid":0,"offset":0,"path":"/run/d","symlink_target":"","uid":0}`},
		{"symlink", &agent.CopyFileRequest{Path: "/run/l", FileMode: 0o120777, Data: []byte("..data/token")},
			`{"dir_mode":0,"file_mode":41471,"file_size":0,"file_type":"Symlink","gid":0,"offset":0,"path":"/run/l","symlink_target":"..data/token","uid":0}`},
		{"fifo", &agent.CopyFileRequest{Path: "/run/p", FileMode: 0o010644},
			`{"dir_mode":0,"file_mode":4516,"file_size":0,"file_type":"Unknown","gid":0,"offset":0,"path":"/run/p","symlink_target":"","uid":0}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v, err := requestInput(tt.req, &encoder{})
			if err != nil {
				t.Fatal(err)
			}
			j, _ := ast.JSON(v)
			b, _ := json.Marshal(j)
			if string(b) != tt.want {
				t.Fatalf("input =\n%s\nwant\n%s", b, tt.want)
			}
		})
	}
}

// Every member of a lazy input, read at any depth, is the member of the
// whole input; made whole, it is the whole input.
func TestLazyInputMatchesWhole(t *testing.T) {
	_, bench := benchPolicy(t)
	for _, req := range []proto.Message{sampleCreateContainer(), bench, &agent.ExecProcessRequest{ContainerId: "c"}} {
		m := req.ProtoReflect()
		whole := Input(m)
		if got := irvm.Whole(LazyInput(m)); ast.Compare(got, whole) != 0 {
			t.Fatalf("%s: lazy input made whole differs from the input", m.Descriptor().Name())
		}
		var walk func(path string, lz irvm.Lazy, want ast.Value)
		walk = func(path string, lz irvm.Lazy, want ast.Value) {
			var keys []*ast.Term
			switch w := want.(type) {
			case ast.Object:
				keys = w.Keys()
			case *ast.Array:
				for i := 0; i < w.Len(); i++ {
					keys = append(keys, ast.InternedTerm(i))
				}
			}
			for _, k := range keys {
				wt, _ := want.Find(ast.Ref{k})
				got := lz.Member(k)
				if got == nil {
					t.Fatalf("%s%v: missing from the lazy input", path, k)
				}
				if ast.Compare(irvm.Whole(got.Value), wt) != 0 {
					t.Fatalf("%s%v: lazy %v, whole %v", path, k, irvm.Whole(got.Value), wt)
				}
				if inner, ok := irvm.AsLazy(got.Value); ok {
					walk(fmt.Sprintf("%s%v.", path, k), inner, wt)
				}
			}
			if lz.Member(ast.StringTerm("no_such_field")) != nil {
				t.Fatalf("%s: a key the request lacks is present", path)
			}
			// A list read by index gives what it gives by number key.
			if ix, ok := lz.(irvm.Indexed); ok {
				for i := range ix.Len() {
					if got, want := ix.Elem(i), lz.Member(ast.InternedTerm(i)); ast.Compare(irvm.Whole(got.Value), irvm.Whole(want.Value)) != 0 {
						t.Fatalf("%s%d: by index %v, by key %v", path, i, got, want)
					}
				}
			}
			// A list of strings answers "s in list" as the whole list does.
			if ss, ok := lz.(irvm.StringSearcher); ok {
				arr := want.(*ast.Array)
				for i := 0; i < arr.Len(); i++ {
					s := string(arr.Elem(i).Value.(ast.String))
					if !ss.ContainsString(s) {
						t.Fatalf("%s: %q not found in the lazy list", path, s)
					}
				}
				if ss.ContainsString("\x00absent") {
					t.Fatalf("%s: a string the list lacks is found", path)
				}
			}
		}
		root, _ := irvm.AsLazy((&encoder{}).lazyMessage(m).Value)
		walk("", root, whole)
	}
}

// One dot statement reading messages of two types (a function called on
// mounts and on namespaces, whose type_ fields sit in different slots)
// finds each one's own member.
func TestSlotsAcrossMessageTypes(t *testing.T) {
	ctx := context.Background()
	_, req := benchPolicy(t)
	const module = "package t\nimport rego.v1\nkind(x) := x.type_\n" +
		"x := [[kind(m) | some m in input.OCI.Mounts], [kind(n) | some n in input.OCI.Linux.Namespaces], [kind(m) | some m in input.OCI.Mounts]]"
	prog, err := irvm.Compile(ctx, rego.Query("x = data.t.x"), rego.Module("t.rego", module))
	if err != nil {
		t.Fatal(err)
	}
	pq, err := rego.New(rego.Query("data.t.x"), rego.Module("t.rego", module)).PrepareForEval(ctx)
	if err != nil {
		t.Fatal(err)
	}
	rs, err := pq.Eval(ctx, rego.EvalParsedInput(Input(req.ProtoReflect())))
	if err != nil || len(rs) != 1 {
		t.Fatalf("topdown: %v, %v", rs, err)
	}
	want, err := ast.InterfaceToValue(rs[0].Expressions[0].Value)
	if err != nil || want.Compare(ast.NewArray()) == 0 {
		t.Fatalf("topdown: %v, %v", want, err)
	}
	if err != nil {
		t.Fatal(err)
	}
	for range 2 {
		got, err := prog.Eval(ctx, LazyInput(req.ProtoReflect()), nil)
		if err != nil || len(got) != 1 {
			t.Fatalf("irvm: %v, %v", got, err)
		}
		if v := got[0].(ast.Object).Get(ast.StringTerm("x")); ast.Compare(v.Value, want) != 0 {
			t.Fatalf("irvm %v, topdown %v", v, want)
		}
	}
}
