package initramfs

import (
	"debug/elf"
	"fmt"
	"io/fs"
	"path/filepath"
	"strings"
)

// ModulesDir is where the image keeps kernel modules, and ModulesOrder the
// file listing them in load order (dependencies first), one file name a line.
// agent/boot reads the same paths.
const (
	ModulesDir   = "/lib/modules"
	ModulesOrder = "/lib/modules/load.order"
)

// Module is one kernel module file.
type Module struct {
	Name    string // "virtio_net"
	Path    string // host path of the .ko
	Depends []string
}

// modName normalises a module name the way the kernel does ('-' → '_').
func modName(s string) string { return strings.ReplaceAll(strings.TrimSuffix(s, ".ko"), "-", "_") }

// ResolveModules finds the named modules under tree (a kernel's
// lib/modules/<version>) and returns them with all their dependencies,
// each after the modules it depends on.
func ResolveModules(tree string, names []string) ([]Module, error) {
	index := map[string]string{}
	err := filepath.WalkDir(tree, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() && strings.HasSuffix(p, ".ko") {
			index[modName(filepath.Base(p))] = p
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("index modules in %s: %w", tree, err)
	}
	var out []Module
	state := map[string]int{} // 1 = visiting, 2 = done
	var visit func(name, from string) error
	visit = func(name, from string) error {
		switch state[name] {
		case 1:
			return fmt.Errorf("module %s: dependency cycle through %s", name, from)
		case 2:
			return nil
		}
		p, ok := index[name]
		if !ok {
			if from == "" {
				return fmt.Errorf("module %s not found in %s", name, tree)
			}
			return fmt.Errorf("module %s (needed by %s) not found in %s", name, from, tree)
		}
		state[name] = 1
		deps, err := moduleDepends(p)
		if err != nil {
			return err
		}
		for _, d := range deps {
			if err := visit(d, name); err != nil {
				return err
			}
		}
		state[name] = 2
		out = append(out, Module{Name: name, Path: p, Depends: deps})
		return nil
	}
	for _, n := range names {
		if err := visit(modName(n), ""); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// moduleDepends reads the "depends=" entry of a module's .modinfo section.
func moduleDepends(p string) ([]string, error) {
	f, err := elf.Open(p)
	if err != nil {
		return nil, fmt.Errorf("read module %s: %w", p, err)
	}
	defer f.Close()
	sec := f.Section(".modinfo")
	if sec == nil {
		return nil, fmt.Errorf("module %s has no .modinfo section", p)
	}
	data, err := sec.Data()
	if err != nil {
		return nil, fmt.Errorf("read .modinfo of %s: %w", p, err)
	}
	for _, kv := range strings.Split(string(data), "\x00") {
		v, ok := strings.CutPrefix(kv, "depends=")
		if !ok {
			continue
		}
		var deps []string
		for _, d := range strings.Split(v, ",") {
			if d = strings.TrimSpace(d); d != "" {
				deps = append(deps, modName(d))
			}
		}
		return deps, nil
	}
	return nil, nil
}

// AddModules puts mods in the archive under ModulesDir with the load-order
// file: the modules the boot loads before anything else.
func (a *Archive) AddModules(mods []Module) error {
	return a.addOrder(ModulesOrder, mods)
}

// AddModuleSet puts mods in the archive under ModulesDir with the order file
// <set>.order, for a set agent/boot loads later or on demand (LoadModuleSet).
func (a *Archive) AddModuleSet(set string, mods []Module) error {
	if set == "" || strings.ContainsAny(set, "/.") || set == "load" {
		return fmt.Errorf("initramfs: module set name %q is empty, has '/' or '.', or is reserved", set)
	}
	return a.addOrder(ModulesDir+"/"+set+".order", mods)
}

func (a *Archive) addOrder(orderPath string, mods []Module) error {
	var order strings.Builder
	for _, m := range mods {
		base := m.Name + ".ko"
		if err := a.AddHostFile(ModulesDir+"/"+base, m.Path); err != nil {
			return err
		}
		order.WriteString(base + "\n")
	}
	return a.AddFile(orderPath, 0o644, []byte(order.String()))
}

// Without returns mods less those named in skip (already loaded by an earlier set).
func Without(mods, skip []Module) []Module {
	drop := map[string]bool{}
	for _, m := range skip {
		drop[m.Name] = true
	}
	var out []Module
	for _, m := range mods {
		if !drop[m.Name] {
			out = append(out, m)
		}
	}
	return out
}
