// Package daemon runs podvm-agent: it serves the tunnel on the VM's port and
// routes its streams — agent (the Kata agent API over ttrpc, or byte for byte
// to an upstream kata-agent socket), health (echo) and config (secrets).
package daemon

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/containerd/ttrpc"
	"github.com/peerpod/peerpod/api/userdata"
	"github.com/peerpod/peerpod/tunnel"
)

// Options configure Run.
type Options struct {
	// Listener is where the tunnel is served (already listening).
	Listener net.Listener
	// TLS is the server's TLS configuration (see ServerTLS).
	TLS *tls.Config
	// Agent serves agent streams; nil when KataAgentSocket is set.
	Agent *ttrpc.Server
	// KataAgentSocket, when set, is an upstream kata-agent unix socket that
	// agent streams are forwarded to byte for byte.
	KataAgentSocket string
	// OnSecrets receives the secrets sent on a config stream.
	OnSecrets func(ctx context.Context, s *userdata.Secrets) error
	// Handlers serve further stream kinds (e.g. tunnel.KindNet).
	Handlers map[tunnel.Kind]tunnel.Handler
	// Logger defaults to slog.Default().
	Logger *slog.Logger
}

// MaxSecretsSize bounds a config stream's document.
const MaxSecretsSize = 1 << 20

// Run serves until ctx ends.
func Run(ctx context.Context, o Options) error {
	log := o.Logger
	if log == nil {
		log = slog.Default()
	}
	if o.Agent == nil && o.KataAgentSocket == "" {
		return errors.New("daemon: neither an agent server nor a kata-agent socket")
	}
	srv, err := tunnel.NewServer(tunnel.Config{TLS: o.TLS, Logger: log})
	if err != nil {
		return fmt.Errorf("tunnel server: %w", err)
	}
	srv.Handle(tunnel.KindHealth, func(ctx context.Context, c net.Conn, _ tunnel.Header) {
		_, _ = io.Copy(c, io.LimitReader(c, 64<<10))
	})
	srv.Handle(tunnel.KindConfig, func(ctx context.Context, c net.Conn, _ tunnel.Header) {
		_ = c.SetDeadline(time.Now().Add(30 * time.Second))
		reply := "ok\n"
		if err := readSecrets(ctx, c, o.OnSecrets); err != nil {
			log.Error("config stream", "err", err)
			reply = "error: " + err.Error() + "\n"
		}
		_, _ = io.WriteString(c, reply)
	})
	for k, h := range o.Handlers {
		srv.Handle(k, h)
	}
	var wg sync.WaitGroup
	if o.KataAgentSocket != "" {
		srv.Handle(tunnel.KindAgent, func(ctx context.Context, c net.Conn, _ tunnel.Header) {
			if err := Forward(ctx, c, o.KataAgentSocket); err != nil {
				log.Warn("forward to kata-agent", "socket", o.KataAgentSocket, "err", err)
			}
		})
	} else {
		ln := srv.Listener(tunnel.KindAgent)
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := o.Agent.Serve(ctx, ln); err != nil && !errors.Is(err, ttrpc.ErrServerClosed) && !errors.Is(err, net.ErrClosed) {
				log.Error("agent ttrpc server", "err", err)
			}
		}()
		go func() {
			<-ctx.Done()
			sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			_ = o.Agent.Shutdown(sctx)
			_ = ln.Close()
		}()
	}
	log.Info("podvm-agent serving", "addr", o.Listener.Addr().String(), "forward", o.KataAgentSocket)
	err = srv.Serve(ctx, o.Listener)
	wg.Wait()
	if ctx.Err() != nil {
		return nil
	}
	return err
}

func readSecrets(ctx context.Context, c net.Conn, apply func(context.Context, *userdata.Secrets) error) error {
	b, err := io.ReadAll(io.LimitReader(c, MaxSecretsSize+1))
	if err != nil {
		return fmt.Errorf("read secrets: %w", err)
	}
	if len(b) > MaxSecretsSize {
		return fmt.Errorf("secrets larger than %d bytes", MaxSecretsSize)
	}
	var s userdata.Secrets
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("secrets: %w", err) // json errors quote no input
	}
	if apply == nil {
		return nil
	}
	return apply(ctx, &s)
}

// Forward copies a stream to a new connection to the unix socket at path and
// back, byte for byte, until either side ends.
func Forward(ctx context.Context, c net.Conn, path string) error {
	var d net.Dialer
	up, err := d.DialContext(ctx, "unix", path)
	if err != nil {
		return fmt.Errorf("dial %s: %w", path, err)
	}
	defer up.Close()
	done := make(chan struct{}, 2)
	go func() {
		_, _ = io.Copy(up, c)
		if cw, ok := up.(interface{ CloseWrite() error }); ok {
			_ = cw.CloseWrite()
		}
		done <- struct{}{}
	}()
	go func() {
		_, _ = io.Copy(c, up)
		if cw, ok := c.(interface{ CloseWrite() error }); ok {
			_ = cw.CloseWrite()
		}
		done <- struct{}{}
	}()
	select {
	case <-done:
	case <-ctx.Done():
	}
	// One direction ended: give the other a moment to drain, then stop.
	select {
	case <-done:
	case <-time.After(5 * time.Second):
	case <-ctx.Done():
	}
	return nil
}
