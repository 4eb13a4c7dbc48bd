// Command pause is the pod's pause process as a small static binary, for the
// pause bundle of the pod VM image (podvm-agent pause does the same in the
// agent's binary, at the cost of the agent's memory).
package main

import (
	"context"
	"os"

	"github.com/peerpod/peerpod/agent/pause"
)

func main() {
	os.Exit(pause.Run(context.Background()))
}
