// Package providers builds the provider that CLOUD_PROVIDER names from its
// own environment keys: the one place peerpodd and peerpodctl share, so the
// two can never disagree on what a configuration means. Test fixtures (the
// process provider) are not selectable here.
package providers

import (
	"context"
	"fmt"
	"strings"

	"github.com/peerpod/peerpod/provider"
	"github.com/peerpod/peerpod/provider/aws"
	"github.com/peerpod/peerpod/provider/azure"
	"github.com/peerpod/peerpod/provider/libvirt"
	"github.com/peerpod/peerpod/shim/config"
	"github.com/peerpod/peerpod/shim/sandbox"
)

// Names lists the CLOUD_PROVIDER values this build supports.
var Names = []string{"aws", "azure", "libvirt"}

// New builds the provider name selects from getenv. Providers with instance
// types are wrapped with their allow-list and default
// (sandbox.WithInstanceTypePolicy); a bad key gives an error naming it.
func New(ctx context.Context, name string, getenv func(string) string) (provider.Provider, error) {
	switch name {
	case "aws":
		c, err := aws.LoadConfig(getenv)
		if err != nil {
			return nil, err
		}
		p, err := aws.New(ctx, c)
		if err != nil {
			return nil, err
		}
		return sandbox.WithInstanceTypePolicy(p, c.InstanceTypes, c.InstanceType), nil
	case "azure":
		c, err := azure.LoadConfig(getenv)
		if err != nil {
			return nil, err
		}
		p, err := azure.New(ctx, c)
		if err != nil {
			return nil, err
		}
		return sandbox.WithInstanceTypePolicy(p, c.InstanceSizes, c.InstanceSize), nil
	case "libvirt":
		c, err := libvirt.LoadConfig(getenv)
		if err != nil {
			return nil, err
		}
		return libvirt.New(ctx, c)
	}
	return nil, &config.Error{Key: "CLOUD_PROVIDER", Msg: fmt.Sprintf("%q is not one of %s", name, strings.Join(Names, ", "))}
}
