package initramfs

import (
	"bytes"
	"crypto/sha256"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

func build(t *testing.T, mtime int64, order []string) []byte {
	t.Helper()
	a := New(mtime)
	files := map[string]Entry{
		"/init":             {Kind: File, Mode: 0o755, Data: []byte("#!init")},
		"/usr/sbin/runc":    {Kind: File, Mode: 0o755, Data: []byte("runc")},
		"/etc/ssl/certs/ca": {Kind: File, Mode: 0o644, Data: []byte("pem")},
		"/lib64":            {Kind: Symlink, Target: "lib"},
		"/tmp":              {Kind: Dir, Mode: 0o1777},
	}
	for _, p := range order {
		e := files[p]
		e.Path = p
		if err := a.Add(e); err != nil {
			t.Fatal(err)
		}
	}
	var b bytes.Buffer
	if _, err := a.WriteTo(&b); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// TestReproducible: the bytes depend on the entries and the epoch only, not on the order they were added.
func TestReproducible(t *testing.T) {
	one := build(t, 1700000000, []string{"/init", "/usr/sbin/runc", "/etc/ssl/certs/ca", "/lib64", "/tmp"})
	two := build(t, 1700000000, []string{"/tmp", "/lib64", "/etc/ssl/certs/ca", "/usr/sbin/runc", "/init"})
	if !bytes.Equal(one, two) {
		t.Fatalf("same entries in another order gave other bytes: %x vs %x", sha256.Sum256(one), sha256.Sum256(two))
	}
	if other := build(t, 1700000001, []string{"/init", "/usr/sbin/runc", "/etc/ssl/certs/ca", "/lib64", "/tmp"}); bytes.Equal(one, other) {
		t.Fatal("a different SOURCE_DATE_EPOCH gave the same bytes")
	}
	if len(one)%4 != 0 {
		t.Fatalf("archive length %d is not 4-aligned", len(one))
	}
}

// TestCpioReads checks the archive with the system's cpio, when there is one.
func TestCpioReads(t *testing.T) {
	if _, err := exec.LookPath("cpio"); err != nil {
		t.Skip("cpio not installed")
	}
	data := build(t, 0, []string{"/init", "/usr/sbin/runc", "/etc/ssl/certs/ca", "/lib64", "/tmp"})
	dir := t.TempDir()
	cmd := exec.Command("cpio", "-idm", "--quiet")
	cmd.Dir = dir
	cmd.Stdin = bytes.NewReader(data)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("cpio -i: %v\n%s", err, out)
	}
	got, err := os.ReadFile(filepath.Join(dir, "usr/sbin/runc"))
	if err != nil || string(got) != "runc" {
		t.Fatalf("usr/sbin/runc = %q, %v", got, err)
	}
	st, err := os.Stat(filepath.Join(dir, "init"))
	if err != nil || st.Mode().Perm() != 0o755 {
		t.Fatalf("init: %v %v", st, err)
	}
	if tgt, err := os.Readlink(filepath.Join(dir, "lib64")); err != nil || tgt != "lib" {
		t.Fatalf("lib64 -> %q, %v", tgt, err)
	}
}

func TestAddErrors(t *testing.T) {
	tests := []struct {
		name string
		add  []Entry
		want string
	}{
		{"relative", []Entry{{Path: "init", Kind: File}}, "not absolute"},
		{"root", []Entry{{Path: "/", Kind: Dir}}, "root"},
		{"conflict", []Entry{{Path: "/a", Kind: File, Data: []byte("1")}, {Path: "/a", Kind: File, Data: []byte("2")}}, "twice"},
		{"file as parent", []Entry{{Path: "/a", Kind: File}, {Path: "/a/b", Kind: File}}, "not a directory"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			a := New(0)
			var err error
			for _, e := range tc.add {
				if err = a.Add(e); err != nil {
					break
				}
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Add: %v, want error with %q", err, tc.want)
			}
		})
	}
}

func TestSharedLibs(t *testing.T) {
	runc, err := exec.LookPath("runc")
	if err != nil {
		t.Skip("runc not installed")
	}
	libs, err := SharedLibs(runc)
	if err != nil {
		t.Fatal(err)
	}
	joined := strings.Join(libs, " ")
	for _, want := range []string{"ld-linux-x86-64.so.2", "libc.so.6"} {
		if !strings.Contains(joined, want) {
			t.Errorf("runc's libraries %v lack %s", libs, want)
		}
	}
}

// TestSameInputsSameBytes builds an image from real host files twice and compares.
func TestSameInputsSameBytes(t *testing.T) {
	runc, err := exec.LookPath("runc")
	if err != nil {
		t.Skip("runc not installed")
	}
	img := func() []byte {
		a := New(1234)
		if err := a.AddBinary("/usr/sbin/runc", runc); err != nil {
			t.Fatal(err)
		}
		if err := a.AddHostFile("/etc/hostname", "/etc/hostname"); err != nil {
			t.Fatal(err)
		}
		var b bytes.Buffer
		if _, err := a.WriteTo(&b); err != nil {
			t.Fatal(err)
		}
		return b.Bytes()
	}
	if a, b := img(), img(); !bytes.Equal(a, b) {
		t.Fatal("two builds from the same inputs differ")
	}
}

// TestCharDev: a device node is written with its type bits and rdev numbers.
func TestCharDev(t *testing.T) {
	a := New(0)
	if err := a.AddCharDev("/dev/console", 0o600, 5, 1); err != nil {
		t.Fatal(err)
	}
	if err := a.AddCharDev("/dev/console", 0o600, 5, 2); err == nil {
		t.Fatal("adding /dev/console again with other numbers succeeded")
	}
	var b bytes.Buffer
	if _, err := a.WriteTo(&b); err != nil {
		t.Fatal(err)
	}
	// newc: magic, ino, mode, uid, gid, nlink, mtime, filesize, devmajor, devminor, rdevmajor, rdevminor, ...
	s := b.String()
	i := strings.Index(s, "dev/console")
	if i < 110 {
		t.Fatalf("no dev/console entry in %q", s)
	}
	hdr := s[i-110 : i]
	if mode := hdr[14:22]; mode != "00002180" {
		t.Errorf("mode field = %s, want 00002180 (character device, 0600)", mode)
	}
	if rdev := hdr[78:94]; rdev != "0000000500000001" {
		t.Errorf("rdev fields = %s, want major 5 minor 1", rdev)
	}
}
