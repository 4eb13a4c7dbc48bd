// Command mkinitramfs writes the pod VM initramfs (an uncompressed newc cpio)
// from an init binary, kernel modules, executables with their libraries and
// plain files. Entry mtimes come from SOURCE_DATE_EPOCH (0 when unset).
package main

import (
	"bufio"
	"flag"
	"fmt"
	"os"
	"strconv"
	"strings"

	"github.com/peerpod/peerpod/podvm-image/initramfs"
)

type pairs []string

func (p *pairs) String() string     { return strings.Join(*p, ",") }
func (p *pairs) Set(s string) error { *p = append(*p, s); return nil }

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "mkinitramfs:", err)
		os.Exit(1)
	}
}

func run() error {
	var bins, files, dirs, sets pairs
	out := flag.String("o", "", "output cpio file")
	initBin := flag.String("init", "", "executable to install as /init (PID 1)")
	kmods := flag.String("kmod-tree", "", "kernel module tree (lib/modules/<version>)")
	mods := flag.String("modules", "", "comma-separated kernel modules to include with their dependencies")
	flag.Var(&bins, "binary", "DST=SRC: an executable and the shared libraries it needs (repeatable)")
	flag.Var(&files, "file", "DST=SRC: a plain file (repeatable)")
	flag.Var(&dirs, "dir", "an empty directory to create (repeatable)")
	flag.Var(&sets, "module-set", "NAME=mod1,mod2: modules loaded later or on demand, listed in NAME.order with their dependencies less -modules (repeatable)")
	flag.Parse()
	if *out == "" || *initBin == "" {
		return fmt.Errorf("-o and -init are required")
	}
	var epoch int64
	if s := os.Getenv("SOURCE_DATE_EPOCH"); s != "" {
		v, err := strconv.ParseInt(s, 10, 64)
		if err != nil || v < 0 {
			return fmt.Errorf("SOURCE_DATE_EPOCH=%q is not a non-negative integer", s)
		}
		epoch = v
	}
	a := initramfs.New(epoch)
	if err := a.AddBinary("/init", *initBin); err != nil {
		return err
	}
	// The kernel gives PID 1 /dev/console as stdin, stdout and stderr only if
	// the node exists before devtmpfs is mounted: without it boot logs are lost.
	if err := a.AddCharDev("/dev/console", 0o600, 5, 1); err != nil {
		return err
	}
	for _, spec := range bins {
		dst, src, ok := strings.Cut(spec, "=")
		if !ok {
			return fmt.Errorf("-binary %q is not DST=SRC", spec)
		}
		if err := a.AddBinary(dst, src); err != nil {
			return err
		}
	}
	for _, spec := range files {
		dst, src, ok := strings.Cut(spec, "=")
		if !ok {
			return fmt.Errorf("-file %q is not DST=SRC", spec)
		}
		if err := a.AddHostFile(dst, src); err != nil {
			return err
		}
	}
	for _, d := range dirs {
		if err := a.AddDir(d, 0o755); err != nil {
			return err
		}
	}
	if (*mods != "" || len(sets) > 0) && *kmods == "" {
		return fmt.Errorf("-modules and -module-set need -kmod-tree")
	}
	var boot []initramfs.Module
	if *mods != "" {
		var err error
		if boot, err = initramfs.ResolveModules(*kmods, strings.Split(*mods, ",")); err != nil {
			return err
		}
		if err := a.AddModules(boot); err != nil {
			return err
		}
	}
	for _, spec := range sets {
		name, list, ok := strings.Cut(spec, "=")
		if !ok || list == "" {
			return fmt.Errorf("-module-set %q is not NAME=mod1,mod2", spec)
		}
		ms, err := initramfs.ResolveModules(*kmods, strings.Split(list, ","))
		if err != nil {
			return fmt.Errorf("module set %s: %w", name, err)
		}
		if err := a.AddModuleSet(name, initramfs.Without(ms, boot)); err != nil {
			return err
		}
	}
	tmp := *out + ".tmp"
	f, err := os.Create(tmp)
	if err != nil {
		return err
	}
	w := bufio.NewWriterSize(f, 1<<20)
	if _, err := a.WriteTo(w); err != nil {
		f.Close()
		os.Remove(tmp)
		return err
	}
	if err := w.Flush(); err != nil {
		f.Close()
		os.Remove(tmp)
		return err
	}
	if err := f.Close(); err != nil {
		os.Remove(tmp)
		return err
	}
	return os.Rename(tmp, *out)
}
