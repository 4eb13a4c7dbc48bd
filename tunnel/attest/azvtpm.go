package attest

import (
	"bytes"
	"context"
	"crypto"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/tls"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net/http"
	"strings"
	"time"

	"github.com/google/go-sev-guest/abi"
	"github.com/google/go-tpm/tpm2"
	"github.com/google/go-tpm/tpm2/transport"
	"github.com/google/go-tpm/tpm2/transport/linuxtpm"
)

// Facts of Azure's SEV-SNP confidential VMs, where the paravisor (HCL) owns
// the SNP report and hands it to the guest through the vTPM.
const (
	// AzureHCLReportIndex is the vTPM NV index that holds the HCL report.
	AzureHCLReportIndex uint32 = 0x01400001
	// AzureAKHandle is the persistent handle of the vTPM attestation key
	// (RSA 2048, RSASSA with SHA-256), whose public key the HCL report's
	// runtime claims carry as the JWK with kid "HCLAkPub".
	AzureAKHandle uint32 = 0x81000003
	// AzureAKKeyID is the kid of the AK's JWK in the HCL report's runtime claims.
	AzureAKKeyID = "HCLAkPub"
	// AzureTHIMURL is the instance metadata endpoint that returns the VM's
	// VCEK certificate (PEM, "vcekCert") inside an Azure CVM.
	AzureTHIMURL = "http://169.254.169.254/metadata/THIM/amd/certification"
	// InitdataPCR is the PCR (SHA-256 bank) that carries the initdata
	// digest on vTPM platforms, as Confidential Containers uses it.
	InitdataPCR = 8
	// TPMDevice is the kernel's resource-managed TPM device.
	TPMDevice = "/dev/tpmrm0"
)

// QuotePCRCount is how many PCRs of the SHA-256 bank a quote covers: 0-23.
const QuotePCRCount = 24

// quotePCRs are the PCRs of the SHA-256 bank every quote covers: all of the
// PC client profile's 24, so relying parties can also check the boot chain.
var quotePCRs = func() []uint {
	p := make([]uint, QuotePCRCount)
	for i := range p {
		p[i] = uint(i)
	}
	return p
}()

// VTPMQuote is the vTPM part of az-snp-vtpm evidence.
type VTPMQuote struct {
	// Attest is the TPMS_ATTEST structure the AK signed (TPM wire format).
	Attest []byte `json:"attest"`
	// Signature is the TPMT_SIGNATURE over Attest (TPM wire format).
	Signature []byte `json:"signature"`
	// PCRs are the SHA-256 values of the quoted PCRs, in the ascending order
	// of the quote's PCR selection.
	PCRs [][]byte `json:"pcrs"`
	// VCEK is the DER VCEK certificate that signed the SNP report, when the
	// VM could fetch it; without it the node fetches it from AMD's KDS.
	VCEK []byte `json:"vcek,omitempty"`
}

// InitdataPCRExtension is what the attester extends PCR 8 (SHA-256 bank)
// with: the initdata digest itself when it is 32 bytes (a sha256 initdata,
// as Confidential Containers extends it), otherwise SHA-256 of the digest
// bytes (sha384/sha512 initdata, or SHA-256 of nothing without initdata, so
// the PCR never stays open for someone else's value).
func InitdataPCRExtension(initdataDigest []byte) []byte {
	if len(initdataDigest) == sha256.Size {
		return append([]byte(nil), initdataDigest...)
	}
	sum := sha256.Sum256(initdataDigest)
	return sum[:]
}

// InitdataPCRValue is the value PCR 8 holds after the attester extended it
// once from reset (all zeros): SHA-256(zeros(32) || InitdataPCRExtension).
func InitdataPCRValue(initdataDigest []byte) []byte {
	h := sha256.New()
	h.Write(make([]byte, sha256.Size))
	h.Write(InitdataPCRExtension(initdataDigest))
	return h.Sum(nil)
}

// QuoteQualifyingData is the qualifying data (extraData) of the vTPM quote
// for evidence report data rd: SHA-256(rd). A 64-byte value does not fit
// TPM2B_DATA on TPMs without SHA-512, so the 32-byte hash stands for it.
func QuoteQualifyingData(reportData []byte) []byte {
	sum := sha256.Sum256(reportData)
	return sum[:]
}

// AzVTPMConfig configures an AzVTPMAttester.
type AzVTPMConfig struct {
	// TPM is the vTPM (required).
	TPM transport.TPM
	// ReportIndex is the NV index of the HCL report (0: AzureHCLReportIndex).
	ReportIndex uint32
	// AKHandle is the attestation key's persistent handle (0: AzureAKHandle).
	AKHandle uint32
	// FetchVCEK returns the DER VCEK certificate; nil leaves it out of the
	// evidence. A failure is logged and the evidence goes without it.
	FetchVCEK func(ctx context.Context) ([]byte, error)
	// Logger receives warnings; nil uses slog.Default().
	Logger *slog.Logger
}

// AzVTPMAttester produces az-snp-vtpm evidence: the HCL report from the
// vTPM and a quote over the PCRs, whose qualifying data binds the TLS key and
// the initdata digest, with the initdata digest extended into PCR 8.
type AzVTPMAttester struct {
	cfg AzVTPMConfig
}

// NewAzVTPMAttester returns an attester over cfg.TPM.
func NewAzVTPMAttester(cfg AzVTPMConfig) (*AzVTPMAttester, error) {
	if cfg.TPM == nil {
		return nil, errors.New("attest az-snp-vtpm: no TPM")
	}
	if cfg.ReportIndex == 0 {
		cfg.ReportIndex = AzureHCLReportIndex
	}
	if cfg.AKHandle == 0 {
		cfg.AKHandle = AzureAKHandle
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return &AzVTPMAttester{cfg: cfg}, nil
}

// newAzVTPMAttester opens the guest's vTPM; the TPM stays open for the
// life of the process. The VCEK comes from the instance metadata service.
func newAzVTPMAttester() (Attester, error) {
	tpm, err := linuxtpm.Open(TPMDevice)
	if err != nil {
		return nil, fmt.Errorf("attest az-snp-vtpm: open %s: %w", TPMDevice, err)
	}
	return NewAzVTPMAttester(AzVTPMConfig{TPM: tpm, FetchVCEK: THIMVCEKFetcher(AzureTHIMURL, nil)})
}

// Kind returns "az-snp-vtpm".
func (*AzVTPMAttester) Kind() string { return KindAzSNPVTPM }

// Certificate binds initdataDigest into PCR 8 (once per boot), then returns a
// certificate whose evidence is the HCL report and a quote over the PCRs
// whose qualifying data is QuoteQualifyingData(report data).
func (a *AzVTPMAttester) Certificate(ctx context.Context, initdataDigest []byte) (tls.Certificate, error) {
	if err := a.BindInitdata(initdataDigest); err != nil {
		return tls.Certificate{}, fmt.Errorf("attest %s: %w", KindAzSNPVTPM, err)
	}
	return NewCertificate(ctx, KindAzSNPVTPM, initdataDigest, a.Evidence)
}

// BindInitdata extends PCR 8 of the SHA-256 bank with
// InitdataPCRExtension(initdataDigest) if it is still zero, and accepts it
// if it already holds exactly that one extension. Any other value is an
// error: something else extended the PCR this boot.
func (a *AzVTPMAttester) BindInitdata(initdataDigest []byte) error {
	vals, err := readPCRs(a.cfg.TPM, []uint{InitdataPCR})
	if err != nil {
		return err
	}
	cur, want := vals[0], InitdataPCRValue(initdataDigest)
	switch {
	case bytes.Equal(cur, want):
		return nil
	case !bytes.Equal(cur, make([]byte, sha256.Size)):
		return fmt.Errorf("PCR %d (sha256) is %x: not reset and not the one extension of initdata digest %x (expected %x); something else extended it this boot",
			InitdataPCR, cur, initdataDigest, want)
	}
	ext := tpm2.PCRExtend{
		PCRHandle: tpm2.AuthHandle{Handle: tpm2.TPMHandle(InitdataPCR), Auth: tpm2.PasswordAuth(nil)},
		Digests: tpm2.TPMLDigestValues{Digests: []tpm2.TPMTHA{{
			HashAlg: tpm2.TPMAlgSHA256, Digest: InitdataPCRExtension(initdataDigest),
		}}},
	}
	if _, err := ext.Execute(a.cfg.TPM); err != nil {
		return fmt.Errorf("extend PCR %d with the initdata digest: %w", InitdataPCR, err)
	}
	return nil
}

// Evidence reads the HCL report and quotes the PCRs over report data rd; it
// is the attester's EvidenceFunc and binds no initdata (Certificate does).
func (a *AzVTPMAttester) Evidence(ctx context.Context, rd []byte) (*Evidence, error) {
	raw, err := readNV(a.cfg.TPM, a.cfg.ReportIndex)
	if err != nil {
		return nil, fmt.Errorf("read HCL report from NV index %#x: %w", a.cfg.ReportIndex, err)
	}
	hcl, err := ParseHCLReport(raw)
	if err != nil {
		return nil, fmt.Errorf("HCL report in NV index %#x: %w", a.cfg.ReportIndex, err)
	}
	claimed, err := hcl.AKPublic()
	if err != nil {
		return nil, err
	}
	ak, err := readAK(a.cfg.TPM, a.cfg.AKHandle)
	if err != nil {
		return nil, err
	}
	if !claimed.Equal(ak.key) {
		return nil, fmt.Errorf("AK at handle %#x is not the key %s of the HCL report's runtime claims", a.cfg.AKHandle, AzureAKKeyID)
	}
	q, err := quote(a.cfg.TPM, ak, QuoteQualifyingData(rd))
	if err != nil {
		return nil, err
	}
	if a.cfg.FetchVCEK != nil {
		vcek, err := a.cfg.FetchVCEK(ctx)
		if err != nil {
			a.cfg.Logger.Warn("no VCEK in az-snp-vtpm evidence; the verifier fetches it", "err", err)
		} else {
			q.VCEK = vcek
		}
	}
	return &Evidence{Kind: KindAzSNPVTPM, ReportData: rd, Report: hcl.Raw, VTPM: q}, nil
}

// tpmKey is a loaded signing key: its handle, name and public key.
type tpmKey struct {
	handle tpm2.TPMHandle
	name   tpm2.TPM2BName
	key    crypto.PublicKey
}

func readAK(tpm transport.TPM, h uint32) (*tpmKey, error) {
	rsp, err := tpm2.ReadPublic{ObjectHandle: tpm2.TPMHandle(h)}.Execute(tpm)
	if err != nil {
		return nil, fmt.Errorf("read AK public at handle %#x: %w", h, err)
	}
	pub, err := rsp.OutPublic.Contents()
	if err != nil {
		return nil, fmt.Errorf("decode AK public at handle %#x: %w", h, err)
	}
	k, err := tpm2.Pub(*pub)
	if err != nil {
		return nil, fmt.Errorf("AK public at handle %#x: %w", h, err)
	}
	return &tpmKey{handle: tpm2.TPMHandle(h), name: rsp.Name, key: k}, nil
}

// quote signs the PCRs with the AK over qualifying data. The PCR values are
// read around the quote; a PCR extended in between (IMA, for example) makes
// the values disagree with the quote's digest, and the quote is retried.
func quote(tpm transport.TPM, ak *tpmKey, qualifying []byte) (*VTPMQuote, error) {
	sel := tpm2.TPMLPCRSelection{PCRSelections: []tpm2.TPMSPCRSelection{{
		Hash: tpm2.TPMAlgSHA256, PCRSelect: tpm2.PCClientCompatible.PCRs(quotePCRs...),
	}}}
	const tries = 3
	for range tries {
		vals, err := readPCRs(tpm, quotePCRs)
		if err != nil {
			return nil, err
		}
		rsp, err := tpm2.Quote{
			SignHandle:     tpm2.AuthHandle{Handle: ak.handle, Name: ak.name, Auth: tpm2.PasswordAuth(nil)},
			QualifyingData: tpm2.TPM2BData{Buffer: qualifying},
			InScheme:       tpm2.TPMTSigScheme{Scheme: tpm2.TPMAlgNull},
			PCRSelect:      sel,
		}.Execute(tpm)
		if err != nil {
			return nil, fmt.Errorf("quote PCRs with AK %#x: %w", uint32(ak.handle), err)
		}
		att, err := rsp.Quoted.Contents()
		if err != nil {
			return nil, fmt.Errorf("decode quote: %w", err)
		}
		info, err := att.Attested.Quote()
		if err != nil {
			return nil, fmt.Errorf("decode quote info: %w", err)
		}
		h := sha256.New()
		for _, v := range vals {
			h.Write(v)
		}
		if bytes.Equal(h.Sum(nil), info.PCRDigest.Buffer) {
			return &VTPMQuote{Attest: rsp.Quoted.Bytes(), Signature: tpm2.Marshal(rsp.Signature), PCRs: vals}, nil
		}
	}
	return nil, fmt.Errorf("PCR values kept changing during the quote (%d tries)", tries)
}

// readPCRs returns the SHA-256 values of pcrs (ascending), asking again for
// those a TPM leaves out of one answer.
func readPCRs(tpm transport.TPM, pcrs []uint) ([][]byte, error) {
	got := make(map[uint][]byte, len(pcrs))
	for len(got) < len(pcrs) {
		var want []uint
		for _, p := range pcrs {
			if _, ok := got[p]; !ok {
				want = append(want, p)
			}
		}
		rsp, err := tpm2.PCRRead{PCRSelectionIn: tpm2.TPMLPCRSelection{PCRSelections: []tpm2.TPMSPCRSelection{{
			Hash: tpm2.TPMAlgSHA256, PCRSelect: tpm2.PCClientCompatible.PCRs(want...),
		}}}}.Execute(tpm)
		if err != nil {
			return nil, fmt.Errorf("read PCRs %v (sha256): %w", want, err)
		}
		var out []uint
		for _, s := range rsp.PCRSelectionOut.PCRSelections {
			if s.Hash != tpm2.TPMAlgSHA256 {
				continue
			}
			out = append(out, SelectedPCRs(s.PCRSelect)...)
		}
		if len(out) == 0 || len(out) != len(rsp.PCRValues.Digests) {
			return nil, fmt.Errorf("read PCRs %v (sha256): TPM returned %d values for %d PCRs", want, len(rsp.PCRValues.Digests), len(out))
		}
		for i, p := range out {
			got[p] = rsp.PCRValues.Digests[i].Buffer
		}
	}
	vals := make([][]byte, len(pcrs))
	for i, p := range pcrs {
		if len(got[p]) != sha256.Size {
			return nil, fmt.Errorf("PCR %d (sha256) is %d bytes, want %d", p, len(got[p]), sha256.Size)
		}
		vals[i] = got[p]
	}
	return vals, nil
}

// SelectedPCRs lists the PCRs set in a TPMS_PCR_SELECTION bitmap, ascending.
func SelectedPCRs(bitmap []byte) []uint {
	var pcrs []uint
	for i, b := range bitmap {
		for bit := range 8 {
			if b&(1<<bit) != 0 {
				pcrs = append(pcrs, uint(i*8+bit))
			}
		}
	}
	return pcrs
}

// readNV reads the whole of an NV index with owner authorization, in chunks
// the TPM accepts.
func readNV(tpm transport.TPM, index uint32) ([]byte, error) {
	pubRsp, err := tpm2.NVReadPublic{NVIndex: tpm2.TPMHandle(index)}.Execute(tpm)
	if err != nil {
		return nil, fmt.Errorf("read NV public: %w", err)
	}
	pub, err := pubRsp.NVPublic.Contents()
	if err != nil {
		return nil, fmt.Errorf("decode NV public: %w", err)
	}
	chunk := nvBufferMax(tpm)
	out := make([]byte, 0, pub.DataSize)
	for off := 0; off < int(pub.DataSize); off += chunk {
		n := min(chunk, int(pub.DataSize)-off)
		rsp, err := tpm2.NVRead{
			AuthHandle: tpm2.AuthHandle{Handle: tpm2.TPMRHOwner, Auth: tpm2.PasswordAuth(nil)},
			NVIndex:    tpm2.NamedHandle{Handle: tpm2.TPMHandle(index), Name: pubRsp.NVName},
			Size:       uint16(n),
			Offset:     uint16(off),
		}.Execute(tpm)
		if err != nil {
			return nil, fmt.Errorf("read %d bytes at %d: %w", n, off, err)
		}
		out = append(out, rsp.Data.Buffer...)
	}
	return out, nil
}

// nvBufferMax is the TPM's largest NV read; 512 when it does not say.
func nvBufferMax(tpm transport.TPM) int {
	const fallback = 512
	rsp, err := tpm2.GetCapability{Capability: tpm2.TPMCapTPMProperties, Property: uint32(tpm2.TPMPTNVBufferMax), PropertyCount: 1}.Execute(tpm)
	if err != nil {
		return fallback
	}
	props, err := rsp.CapabilityData.Data.TPMProperties()
	if err != nil || len(props.TPMProperty) == 0 || props.TPMProperty[0].Property != tpm2.TPMPTNVBufferMax || props.TPMProperty[0].Value == 0 {
		return fallback
	}
	return int(props.TPMProperty[0].Value)
}

// THIMVCEKFetcher returns a FetchVCEK that asks Azure's instance metadata
// service at url for the VM's VCEK; client nil uses a 10-second timeout.
func THIMVCEKFetcher(url string, client *http.Client) func(ctx context.Context) ([]byte, error) {
	if client == nil {
		client = &http.Client{Timeout: 10 * time.Second}
	}
	return func(ctx context.Context) ([]byte, error) {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return nil, fmt.Errorf("VCEK request: %w", err)
		}
		req.Header.Set("Metadata", "true")
		rsp, err := client.Do(req)
		if err != nil {
			return nil, fmt.Errorf("get VCEK: %w", err)
		}
		defer rsp.Body.Close()
		if rsp.StatusCode != http.StatusOK {
			return nil, fmt.Errorf("get VCEK: %s", rsp.Status)
		}
		var body struct {
			VCEK string `json:"vcekCert"`
		}
		if err := json.NewDecoder(io.LimitReader(rsp.Body, 64<<10)).Decode(&body); err != nil {
			return nil, fmt.Errorf("decode VCEK answer: %w", err)
		}
		blk, _ := pem.Decode([]byte(body.VCEK))
		if blk == nil || blk.Type != "CERTIFICATE" {
			return nil, errors.New("VCEK answer has no PEM certificate in vcekCert")
		}
		return blk.Bytes, nil
	}
}

// HCL report layout (little-endian): a 32-byte header (signature "HCLA",
// version, report size, request type, status, 3 reserved words), the
// 1184-byte SNP report, the 20-byte runtime claims header (data size,
// version, report type, report data hash type, claims size) and the runtime
// claims JSON, whose hash is REPORT_DATA[0:hash size] of the SNP report.
const (
	hclSignature        = 0x414C4348 // "HCLA"
	hclHeaderSize       = 32
	hclClaimsHeaderOff  = hclHeaderSize + abi.ReportSize
	hclClaimsOff        = hclClaimsHeaderOff + 20
	hclReportTypeSNP    = 2
	maxHCLClaimsSize    = 64 << 10
	snpReportDataOffset = 0x50
)

// Hash types of an HCL report's runtime claims (HCLReport.ClaimsHashType).
const (
	HCLHashSHA256 = 1
	HCLHashSHA384 = 2
	HCLHashSHA512 = 3
)

// HCLReport is a parsed HCL report (the paravisor's SNP report and its
// runtime claims, as the vTPM holds it); nothing in it is verified.
type HCLReport struct {
	// Raw is the report up to the end of its runtime claims.
	Raw []byte
	// SNPReport is the SEV-SNP attestation report inside it.
	SNPReport []byte
	// ClaimsHashType names the hash of the claims in the SNP report's
	// REPORT_DATA: HCLHashSHA256, HCLHashSHA384 or HCLHashSHA512.
	ClaimsHashType uint32
	// Claims are the runtime claims (JSON, with the AK as a JWK).
	Claims []byte
}

// ParseHCLReport splits an HCL report read from the vTPM into its parts.
func ParseHCLReport(b []byte) (*HCLReport, error) {
	if len(b) < hclClaimsOff {
		return nil, fmt.Errorf("HCL report is %d bytes, shorter than its fixed part (%d)", len(b), hclClaimsOff)
	}
	le := binary.LittleEndian
	if sig := le.Uint32(b); sig != hclSignature {
		return nil, fmt.Errorf("HCL report signature is %#x, want %#x (\"HCLA\")", sig, hclSignature)
	}
	if t := le.Uint32(b[hclClaimsHeaderOff+8:]); t != hclReportTypeSNP {
		return nil, fmt.Errorf("HCL report type is %d, want %d (SEV-SNP)", t, hclReportTypeSNP)
	}
	n := le.Uint32(b[hclClaimsHeaderOff+16:])
	if n > maxHCLClaimsSize || int(n) > len(b)-hclClaimsOff {
		return nil, fmt.Errorf("HCL report claims size %d exceeds the %d bytes after the header", n, len(b)-hclClaimsOff)
	}
	end := hclClaimsOff + int(n)
	return &HCLReport{
		Raw:            b[:end],
		SNPReport:      b[hclHeaderSize:hclClaimsHeaderOff],
		ClaimsHashType: le.Uint32(b[hclClaimsHeaderOff+12:]),
		Claims:         b[hclClaimsOff:end],
	}, nil
}

// jwk is the part of a JSON web key the runtime claims carry for the AK.
type jwk struct {
	Kid string `json:"kid"`
	Kty string `json:"kty"`
	N   string `json:"n"`
	E   string `json:"e"`
}

// AKPublic returns the RSA key of the runtime claims' JWK "HCLAkPub".
func (h *HCLReport) AKPublic() (*rsa.PublicKey, error) {
	var claims struct {
		Keys []jwk `json:"keys"`
	}
	if err := json.Unmarshal(h.Claims, &claims); err != nil {
		return nil, fmt.Errorf("HCL runtime claims are not JSON: %w", err)
	}
	var found []jwk
	for _, k := range claims.Keys {
		if k.Kid == AzureAKKeyID {
			found = append(found, k)
		}
	}
	if len(found) != 1 {
		return nil, fmt.Errorf("HCL runtime claims have %d keys with kid %q, want 1", len(found), AzureAKKeyID)
	}
	k := found[0]
	if k.Kty != "RSA" {
		return nil, fmt.Errorf("HCL runtime claims key %s has kty %q, want RSA", AzureAKKeyID, k.Kty)
	}
	n, err1 := b64url(k.N)
	e, err2 := b64url(k.E)
	if err := errors.Join(err1, err2); err != nil {
		return nil, fmt.Errorf("HCL runtime claims key %s: %w", AzureAKKeyID, err)
	}
	if len(e) == 0 || len(e) > 4 || len(n) < 256 {
		return nil, fmt.Errorf("HCL runtime claims key %s: modulus of %d bits or exponent of %d bytes refused", AzureAKKeyID, 8*len(n), len(e))
	}
	exp := new(big.Int).SetBytes(e)
	return &rsa.PublicKey{N: new(big.Int).SetBytes(n), E: int(exp.Int64())}, nil
}

func b64url(s string) ([]byte, error) {
	b, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(s, "="))
	if err != nil {
		return nil, fmt.Errorf("base64url: %w", err)
	}
	return b, nil
}
