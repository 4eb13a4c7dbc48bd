// Command tcpinit is a minimal PID 1 for measuring the boot floor of the pod
// VM image: it runs the same boot setup as podvm-agent, then answers every TCP
// connection on port 15150 with "ok\n". The benchmarks compare the agent's
// start against it.
package main

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"time"

	"github.com/peerpod/peerpod/agent/boot"
)

func main() {
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	if os.Getpid() == 1 {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		_, err := boot.Setup(ctx, boot.Config{Logger: log})
		cancel()
		if err != nil {
			log.Error("boot failed", "err", err)
		}
	}
	ln, err := net.Listen("tcp", ":15150")
	if err != nil {
		log.Error("listen", "err", err)
		halt()
	}
	log.Info("tcpinit: listening", "addr", ln.Addr())
	for {
		c, err := ln.Accept()
		if err != nil {
			continue
		}
		fmt.Fprintln(c, "ok")
		c.Close()
	}
}

// halt keeps PID 1 alive so the kernel does not panic, leaving the console readable.
func halt() {
	for {
		time.Sleep(time.Hour)
	}
}
