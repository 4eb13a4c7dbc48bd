//go:build !amd64

package boot

import "fmt"

func openFWCfgPorts() (fwcfgPorts, func(), error) {
	return nil, nil, fmt.Errorf("%w: fw_cfg I/O ports exist on x86 only", ErrNoFWCfg)
}
