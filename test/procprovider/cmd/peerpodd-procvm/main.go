// Command peerpodd-procvm is a TEST BINARY: peerpodd wired to the process
// provider (test/procprovider) instead of a cloud, so tests can run the real
// daemon as a process — and kill -9 it — without virtualization. It reads
// peerpodd's usual environment and flags, plus PROCPROVIDER_STATE_DIR (the
// provider's state) and PROCPROVIDER_AGENT (the podvm-agent binary). Never
// ship it.
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
	"github.com/peerpod/peerpod/test/procprovider"
)

func main() {
	getenv := func(k string) string {
		if k == "CLOUD_PROVIDER" {
			return procprovider.Name
		}
		return os.Getenv(k)
	}
	cfg, err := config.Load(getenv, os.Args[1:], config.DecodeInitdata)
	if errors.Is(err, flag.ErrHelp) {
		fmt.Fprint(os.Stderr, config.Usage())
		return
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "peerpodd-procvm: %v\n", err)
		os.Exit(2)
	}
	log := slog.New(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: cfg.LogLevel}))
	prov, err := procprovider.New(procprovider.Config{
		StateDir:  os.Getenv("PROCPROVIDER_STATE_DIR"),
		AgentPath: os.Getenv("PROCPROVIDER_AGENT"),
	})
	if err != nil {
		fmt.Fprintf(os.Stderr, "peerpodd-procvm: PROCPROVIDER_STATE_DIR/PROCPROVIDER_AGENT: %v\n", err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	d, err := daemon.New(daemon.Options{Config: cfg, Provider: prov, Logger: log})
	if err != nil {
		log.Error("start-up failed", "err", err)
		os.Exit(1)
	}
	if err := d.Run(ctx); err != nil {
		log.Error("peerpodd-procvm failed", "err", err)
		os.Exit(1)
	}
}
