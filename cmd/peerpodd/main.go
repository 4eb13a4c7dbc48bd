// Command peerpodd is the peerpod node daemon: it serves the Kata remote
// hypervisor API, makes a confidential VM per pod through the configured
// cloud provider, and proxies the Kata agent API to it through an attested
// tunnel. Configuration comes from the environment (peer-pods-cm keys) and
// flags; see shim/config.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/peerpod/peerpod/shim/config"
	"github.com/peerpod/peerpod/shim/daemon"
	"github.com/peerpod/peerpod/shim/providers"
)

func main() { os.Exit(run()) }

func run() int {
	cfg, err := config.Load(os.Getenv, os.Args[1:], config.DecodeInitdata)
	if errors.Is(err, flag.ErrHelp) {
		fmt.Fprint(os.Stderr, config.Usage())
		return 0
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "peerpodd: %v\n", err)
		return 2
	}
	log := slog.New(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: cfg.LogLevel}))
	slog.SetDefault(log)
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	prov, err := providers.New(ctx, cfg.CloudProvider, os.Getenv)
	if err != nil {
		log.Error("provider setup failed", "provider", cfg.CloudProvider, "err", err)
		return 2
	}
	d, err := daemon.New(daemon.Options{Config: cfg, Provider: prov, Logger: log, Kubernetes: true})
	if err != nil {
		log.Error("start-up failed", "err", err)
		return 1
	}
	if err := d.Run(ctx); err != nil {
		log.Error("peerpodd failed", "err", err)
		return 1
	}
	return 0
}
