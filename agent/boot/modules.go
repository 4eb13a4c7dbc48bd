package boot

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// LoadModules loads the modules named in dir/load.order, in that order
// (dependencies come first), with finit_module. Parameters given on the
// kernel command line as <module>.<param>=<value> are passed to the module,
// as modprobe would. A module already loaded or built in is skipped. A
// missing order file means nothing to load.
func LoadModules(dir, cmdline string) (int, error) {
	return loadOrder(dir, "load.order", ModuleParams(cmdline))
}

// LoadModuleSet loads a set of modules the image ships for one feature but
// does not load at boot (vxlan, say): the files named in dir/<set>.order,
// dependencies first. A missing order file means the image has no such set:
// nothing is loaded and the feature relies on the kernel having it built in.
func LoadModuleSet(dir, set string) (int, error) {
	return loadOrder(dir, set+".order", nil)
}

func loadOrder(dir, order string, params map[string]string) (int, error) {
	raw, err := os.ReadFile(filepath.Join(dir, order))
	if errors.Is(err, os.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("boot: read module order %s: %w", order, err)
	}
	n := 0
	for _, name := range strings.Fields(string(raw)) {
		mod := strings.TrimSuffix(name, ".ko")
		if err := loadModule(filepath.Join(dir, name), params[mod]); err != nil {
			return n, err
		}
		n++
	}
	return n, nil
}

// ModuleParams collects <module>.<param>=<value> words of a kernel command
// line into a parameter string per module ("-" in names counts as "_").
func ModuleParams(cmdline string) map[string]string {
	out := map[string]string{}
	for _, w := range strings.Fields(cmdline) {
		k, _, ok := strings.Cut(w, "=")
		mod, _, dotted := strings.Cut(k, ".")
		if !ok || !dotted || mod == "" {
			continue
		}
		param := w[len(mod)+1:]
		mod = strings.ReplaceAll(mod, "-", "_")
		if out[mod] != "" {
			out[mod] += " "
		}
		out[mod] += param
	}
	return out
}

func loadModule(path, params string) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("boot: load module: %w", err)
	}
	defer f.Close()
	err = unix.FinitModule(int(f.Fd()), params, 0)
	if err != nil && !errors.Is(err, unix.EEXIST) {
		return fmt.Errorf("boot: load module %s: %w", filepath.Base(path), err)
	}
	return nil
}
