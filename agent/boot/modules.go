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
// (dependencies come first), with finit_module. A module already loaded or
// built in is skipped. A missing order file means nothing to load.
func LoadModules(dir string) (int, error) {
	raw, err := os.ReadFile(filepath.Join(dir, "load.order"))
	if errors.Is(err, os.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("boot: read module order: %w", err)
	}
	n := 0
	for _, name := range strings.Fields(string(raw)) {
		if err := loadModule(filepath.Join(dir, name)); err != nil {
			return n, err
		}
		n++
	}
	return n, nil
}

func loadModule(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("boot: load module: %w", err)
	}
	defer f.Close()
	err = unix.FinitModule(int(f.Fd()), "", 0)
	if err != nil && !errors.Is(err, unix.EEXIST) {
		return fmt.Errorf("boot: load module %s: %w", filepath.Base(path), err)
	}
	return nil
}
