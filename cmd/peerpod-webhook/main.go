// Command peerpod-webhook is the mutating admission webhook that sizes each
// peer pod's VM from its resources and has it request one unit of the
// node's kata.peerpods.io/vm capacity (see package webhook).
package main

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/peerpod/peerpod/webhook"
)

func main() {
	log := slog.New(slog.NewJSONHandler(os.Stderr, nil))
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], log); err != nil {
		log.Error("peerpod-webhook", "err", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, log *slog.Logger) error {
	fs := flag.NewFlagSet("peerpod-webhook", flag.ContinueOnError)
	listen := fs.String("listen", ":8443", "HTTPS listen address")
	classes := fs.String("runtime-classes", "kata-remote", "comma-separated runtime classes of peer pods")
	selfSigned := fs.Bool("self-signed", false, "make and keep its own CA and serving certificate in -cert-secret and patch -webhook-config's caBundle")
	certDir := fs.String("cert-dir", "", "directory with tls.crt and tls.key (cert-manager mode)")
	namespace := fs.String("namespace", "", "namespace of the webhook's Service and certificate Secret (self-signed mode)")
	service := fs.String("service", "peerpod-webhook", "the webhook's Service name (self-signed mode)")
	certSecret := fs.String("cert-secret", "peerpod-webhook-tls", "Secret keeping the CA and serving certificate (self-signed mode)")
	webhookConfig := fs.String("webhook-config", "peerpod-webhook", "MutatingWebhookConfiguration whose caBundle is patched (self-signed mode)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	m := &webhook.Mutator{}
	for _, c := range strings.Split(*classes, ",") {
		if c = strings.TrimSpace(c); c != "" {
			m.RuntimeClasses = append(m.RuntimeClasses, c)
		}
	}
	if len(m.RuntimeClasses) == 0 {
		return errors.New("-runtime-classes: no runtime class named")
	}

	var getCert func(*tls.ClientHelloInfo) (*tls.Certificate, error)
	switch {
	case *selfSigned && *certDir != "":
		return errors.New("-self-signed and -cert-dir exclude each other")
	case *selfSigned:
		if *namespace == "" {
			return errors.New("-namespace is required with -self-signed")
		}
		cfg, err := rest.InClusterConfig()
		if err != nil {
			return fmt.Errorf("in-cluster API config: %w", err)
		}
		cs, err := kubernetes.NewForConfig(cfg)
		if err != nil {
			return err
		}
		names := []string{*service + "." + *namespace + ".svc", *service + "." + *namespace + ".svc.cluster.local"}
		b, err := webhook.EnsureCerts(ctx, cs, *namespace, *certSecret, *webhookConfig, names)
		if err != nil {
			return err
		}
		cert, err := b.TLS()
		if err != nil {
			return fmt.Errorf("serving certificate: %w", err)
		}
		getCert = func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return &cert, nil }
	case *certDir != "":
		// cert-manager renews the files in place: load them per handshake.
		crt, key := filepath.Join(*certDir, "tls.crt"), filepath.Join(*certDir, "tls.key")
		if _, err := tls.LoadX509KeyPair(crt, key); err != nil {
			return fmt.Errorf("-cert-dir %s: %w", *certDir, err)
		}
		getCert = func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
			c, err := tls.LoadX509KeyPair(crt, key)
			return &c, err
		}
	default:
		return errors.New("one of -self-signed or -cert-dir is required")
	}

	srv := &http.Server{
		Addr:              *listen,
		Handler:           webhook.Handler(m, log),
		TLSConfig:         &tls.Config{MinVersion: tls.VersionTLS13, GetCertificate: getCert},
		ReadHeaderTimeout: 10 * time.Second,
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.ListenAndServeTLS("", "") }()
	log.Info("serving", "addr", *listen, "runtime_classes", m.RuntimeClasses)
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return srv.Shutdown(sctx)
}
