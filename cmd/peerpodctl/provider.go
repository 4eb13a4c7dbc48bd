package main

import (
	"context"
	"fmt"

	"github.com/peerpod/peerpod/provider"
	"github.com/peerpod/peerpod/provider/azure"
	"github.com/peerpod/peerpod/shim/config"
)

// newProvider builds the provider CLOUD_PROVIDER names from its own
// environment keys, as peerpodd does (cmd/peerpodd keeps the same list).
func newProvider(ctx context.Context, cfg *config.Config, getenv func(string) string) (provider.Provider, error) {
	switch cfg.CloudProvider {
	case "azure":
		c, err := azure.LoadConfig(getenv)
		if err != nil {
			return nil, err
		}
		return azure.New(ctx, c)
	}
	return nil, &config.Error{Key: "CLOUD_PROVIDER", Msg: fmt.Sprintf("%q is not supported by peerpodctl (azure)", cfg.CloudProvider)}
}
