package webhook

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
)

// Keys of the certificate Secret (the kubernetes.io/tls layout plus the CA).
const (
	KeyCACert = "ca.crt"
	KeyCert   = corev1.TLSCertKey
	KeyKey    = corev1.TLSPrivateKeyKey
)

// certLifetime is how long a self-made certificate is valid; renewBefore is
// how close to its end a new one is made at start.
const (
	certLifetime = 2 * 365 * 24 * time.Hour
	renewBefore  = 60 * 24 * time.Hour
)

// Bundle is a CA and a serving certificate signed by it, PEM encoded.
type Bundle struct {
	CACert, Cert, Key []byte
}

// NewBundle makes a CA and a serving certificate for dnsNames (and IPs, for tests).
func NewBundle(dnsNames []string, now time.Time) (*Bundle, error) {
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	caTmpl := &x509.Certificate{
		SerialNumber: serial(), Subject: pkix.Name{CommonName: "peerpod-webhook-ca"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(certLifetime),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		return nil, fmt.Errorf("webhook CA: %w", err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial(), Subject: pkix.Name{CommonName: dnsNames[0]},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(certLifetime),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	for _, n := range dnsNames {
		if ip := parseIP(n); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, n)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		return nil, fmt.Errorf("webhook serving certificate: %w", err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return nil, err
	}
	return &Bundle{
		CACert: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}),
		Cert:   pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		Key:    pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}),
	}, nil
}

// TLS returns the serving certificate.
func (b *Bundle) TLS() (tls.Certificate, error) { return tls.X509KeyPair(b.Cert, b.Key) }

// usable reports whether b covers dnsNames and is not near its end.
func (b *Bundle) usable(dnsNames []string, now time.Time) bool {
	c, err := b.TLS()
	if err != nil || len(b.CACert) == 0 {
		return false
	}
	leaf, err := x509.ParseCertificate(c.Certificate[0])
	if err != nil || now.Add(renewBefore).After(leaf.NotAfter) {
		return false
	}
	for _, n := range dnsNames {
		if leaf.VerifyHostname(n) != nil {
			return false
		}
	}
	return true
}

// EnsureCerts returns the bundle kept in Secret namespace/name, making (or
// remaking, when it does not fit or is near its end) it when needed, and
// patches the caBundle of every webhook in MutatingWebhookConfiguration
// webhookConfig. Several replicas may race: the Secret's create/update
// conflict decides, and the losers read the winner's bundle.
func EnsureCerts(ctx context.Context, cs kubernetes.Interface, namespace, name, webhookConfig string, dnsNames []string) (*Bundle, error) {
	secrets := cs.CoreV1().Secrets(namespace)
	var b *Bundle
	for attempt := 0; b == nil; attempt++ {
		if attempt == 5 {
			return nil, fmt.Errorf("secret %s/%s: kept conflicting", namespace, name)
		}
		now := time.Now()
		sec, err := secrets.Get(ctx, name, metav1.GetOptions{})
		switch {
		case apierrors.IsNotFound(err):
			nb, err := NewBundle(dnsNames, now)
			if err != nil {
				return nil, err
			}
			_, err = secrets.Create(ctx, &corev1.Secret{
				ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: namespace},
				Type:       corev1.SecretTypeTLS,
				Data:       map[string][]byte{KeyCACert: nb.CACert, KeyCert: nb.Cert, KeyKey: nb.Key},
			}, metav1.CreateOptions{})
			if apierrors.IsAlreadyExists(err) {
				continue
			}
			if err != nil {
				return nil, fmt.Errorf("create secret %s/%s: %w", namespace, name, err)
			}
			b = nb
		case err != nil:
			return nil, fmt.Errorf("get secret %s/%s: %w", namespace, name, err)
		default:
			have := &Bundle{CACert: sec.Data[KeyCACert], Cert: sec.Data[KeyCert], Key: sec.Data[KeyKey]}
			if have.usable(dnsNames, now) {
				b = have
				break
			}
			nb, err := NewBundle(dnsNames, now)
			if err != nil {
				return nil, err
			}
			sec.Data = map[string][]byte{KeyCACert: nb.CACert, KeyCert: nb.Cert, KeyKey: nb.Key}
			_, err = secrets.Update(ctx, sec, metav1.UpdateOptions{})
			if apierrors.IsConflict(err) {
				continue
			}
			if err != nil {
				return nil, fmt.Errorf("update secret %s/%s: %w", namespace, name, err)
			}
			b = nb
		}
	}
	if err := PatchCABundle(ctx, cs, webhookConfig, b.CACert); err != nil {
		return nil, err
	}
	return b, nil
}

// PatchCABundle sets caBundle on every webhook of the MutatingWebhookConfiguration name.
func PatchCABundle(ctx context.Context, cs kubernetes.Interface, name string, caPEM []byte) error {
	mwcs := cs.AdmissionregistrationV1().MutatingWebhookConfigurations()
	cfg, err := mwcs.Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return fmt.Errorf("mutating webhook configuration %s: %w", name, err)
	}
	if len(cfg.Webhooks) == 0 {
		return fmt.Errorf("mutating webhook configuration %s: no webhooks", name)
	}
	var ops []patchOp
	for i, w := range cfg.Webhooks {
		if !bytes.Equal(w.ClientConfig.CABundle, caPEM) {
			ops = append(ops, patchOp{Op: "add", Path: fmt.Sprintf("/webhooks/%d/clientConfig/caBundle", i), Value: caPEM})
		}
	}
	if len(ops) == 0 {
		return nil
	}
	// Guard against the list changing under us.
	ops = append([]patchOp{{Op: "test", Path: fmt.Sprintf("/webhooks/%d/name", len(cfg.Webhooks)-1), Value: cfg.Webhooks[len(cfg.Webhooks)-1].Name}}, ops...)
	body, err := json.Marshal(ops)
	if err != nil {
		return err
	}
	if _, err := mwcs.Patch(ctx, name, types.JSONPatchType, body, metav1.PatchOptions{}); err != nil {
		return fmt.Errorf("patch caBundle of %s: %w", name, err)
	}
	return nil
}

func serial() *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		panic(errors.New("crypto/rand failed"))
	}
	return n
}

func parseIP(s string) net.IP {
	if ip := net.ParseIP(s); ip != nil {
		return ip
	}
	return nil
}
