package main

import (
	"context"
	"fmt"
	"strings"

	"github.com/peerpod/peerpod/provider"
	"github.com/peerpod/peerpod/provider/aws"
	"github.com/peerpod/peerpod/provider/azure"
	"github.com/peerpod/peerpod/provider/libvirt"
	"github.com/peerpod/peerpod/shim/config"
)

// providers lists the CLOUD_PROVIDER values peerpodctl can reach; it
// follows cmd/peerpodd's list.
var providers = []string{"aws", "azure", "libvirt"}

// newProvider builds the provider CLOUD_PROVIDER names from its own
// environment keys, as peerpodd does. vms and gc only list and delete, so
// no instance-type policy is needed.
func newProvider(ctx context.Context, cfg *config.Config, getenv func(string) string) (provider.Provider, error) {
	switch cfg.CloudProvider {
	case "aws":
		c, err := aws.LoadConfig(getenv)
		if err != nil {
			return nil, err
		}
		return aws.New(ctx, c)
	case "azure":
		c, err := azure.LoadConfig(getenv)
		if err != nil {
			return nil, err
		}
		return azure.New(ctx, c)
	case "libvirt":
		c, err := libvirt.LoadConfig(getenv)
		if err != nil {
			return nil, err
		}
		return libvirt.New(ctx, c)
	}
	return nil, &config.Error{Key: "CLOUD_PROVIDER", Msg: fmt.Sprintf("%q is not one of %s", cfg.CloudProvider, strings.Join(providers, ", "))}
}
