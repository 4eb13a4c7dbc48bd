// Command peerpodctl is peerpod's operator tool: the node's sandboxes and
// VMs (status, vms), orphan VM clean-up (gc), and the policy and initdata
// tools. It reads the same environment (peer-pods-cm keys) as peerpodd.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	err := newRootCmd(defaultEnv()).ExecuteContext(ctx)
	stop()
	if err != nil {
		fmt.Fprintf(os.Stderr, "peerpodctl: %v\n", err)
		os.Exit(1)
	}
}
