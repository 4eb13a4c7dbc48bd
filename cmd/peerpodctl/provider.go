package main

import (
	"context"

	"github.com/peerpod/peerpod/provider"
	"github.com/peerpod/peerpod/shim/config"
	"github.com/peerpod/peerpod/shim/providers"
)

// newProvider builds the provider peerpodd would use, from the same keys.
func newProvider(ctx context.Context, cfg *config.Config, getenv func(string) string) (provider.Provider, error) {
	return providers.New(ctx, cfg.CloudProvider, getenv)
}
