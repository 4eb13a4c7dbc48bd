package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"strconv"

	"github.com/spf13/cobra"

	"github.com/peerpod/peerpod/provider"
	"github.com/peerpod/peerpod/shim/config"
)

// env is what the commands take from the outside world, so tests can
// replace it.
type env struct {
	getenv func(string) string
	// newProvider builds the provider peerpodd would use from cfg.
	newProvider func(ctx context.Context, cfg *config.Config, getenv func(string) string) (provider.Provider, error)
}

func defaultEnv() env { return env{getenv: os.Getenv, newProvider: newProvider} }

// loadConfig reads peerpodd's configuration from the environment. INITDATA
// is not needed here and is passed through undecoded.
func (e env) loadConfig() (*config.Config, error) {
	return config.Load(e.getenv, nil, func(v string) (string, error) { return v, nil })
}

// output formats.
const (
	outTable = "table"
	outJSON  = "json"
)

func checkOutput(o string) error {
	if o != outTable && o != outJSON {
		return fmt.Errorf("-o %q: want table or json", o)
	}
	return nil
}

func newRootCmd(e env) *cobra.Command {
	root := &cobra.Command{
		Use:           "peerpodctl",
		Short:         "Inspect and operate peerpod on this node",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.AddCommand(newStatusCmd(e), newVMsCmd(e), newGCCmd(e), newVMOfCmd(e))
	addToolCmds(root)
	return root
}

// defaultStatusURL is peerpodd's probe server on this node (PROBE_PORT).
func defaultStatusURL(getenv func(string) string) string {
	port := config.DefaultProbePort
	if v := getenv("PROBE_PORT"); v != "" {
		if n, err := strconv.Atoi(v); err == nil {
			port = n
		}
	}
	return "http://127.0.0.1:" + strconv.Itoa(port)
}

func writerOf(cmd *cobra.Command) io.Writer { return cmd.OutOrStdout() }
