package initramfs

import (
	"debug/elf"
	"errors"
	"fmt"
	"os"
	"path/filepath"
)

// libDirs are where the dynamic loader of a Debian amd64 system looks.
var libDirs = []string{"/lib/x86_64-linux-gnu", "/usr/lib/x86_64-linux-gnu", "/lib64", "/usr/lib64", "/lib", "/usr/lib"}

// SharedLibs returns the host paths of the ELF interpreter and every shared
// library bin needs, directly or through other libraries. A static binary gives none.
func SharedLibs(bin string) ([]string, error) {
	seen := map[string]bool{}
	var out []string
	var walk func(p string) error
	walk = func(p string) error {
		f, err := elf.Open(p)
		if err != nil {
			return fmt.Errorf("read ELF %s: %w", p, err)
		}
		defer f.Close()
		for _, prog := range f.Progs {
			if prog.Type != elf.PT_INTERP {
				continue
			}
			b := make([]byte, prog.Filesz)
			if _, err := prog.ReadAt(b, 0); err != nil {
				return fmt.Errorf("read interpreter of %s: %w", p, err)
			}
			interp := string(b[:len(b)-1])
			if !seen[interp] {
				seen[interp] = true
				out = append(out, interp)
			}
		}
		libs, err := f.ImportedLibraries()
		if err != nil && !errors.Is(err, elf.ErrNoSymbols) {
			return fmt.Errorf("read libraries of %s: %w", p, err)
		}
		for _, lib := range libs {
			found := ""
			for _, d := range libDirs {
				c := filepath.Join(d, lib)
				if _, err := os.Stat(c); err == nil {
					found = c
					break
				}
			}
			if found == "" {
				return fmt.Errorf("%s needs %s, not found in %v", p, lib, libDirs)
			}
			if seen[found] {
				continue
			}
			seen[found] = true
			out = append(out, found)
			if err := walk(found); err != nil {
				return err
			}
		}
		return nil
	}
	if err := walk(bin); err != nil {
		return nil, err
	}
	return out, nil
}

// AddHostFile copies the host file src into the archive at dst, following
// symlinks (the image holds the content, not the link).
func (a *Archive) AddHostFile(dst, src string) error {
	data, err := os.ReadFile(src)
	if err != nil {
		return fmt.Errorf("initramfs: %w", err)
	}
	st, err := os.Stat(src)
	if err != nil {
		return fmt.Errorf("initramfs: %w", err)
	}
	return a.AddFile(dst, st.Mode().Perm(), data)
}

// AddBinary adds the host executable src at dst together with the loader and
// shared libraries it needs, each at its host path.
func (a *Archive) AddBinary(dst, src string) error {
	if err := a.AddHostFile(dst, src); err != nil {
		return err
	}
	libs, err := SharedLibs(src)
	if err != nil {
		return fmt.Errorf("initramfs: %w", err)
	}
	for _, l := range libs {
		if err := a.AddHostFile(l, l); err != nil {
			return err
		}
	}
	return nil
}
