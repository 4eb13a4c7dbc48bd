package daemon

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/peerpod/peerpod/api/userdata"
)

// Default user data locations.
const (
	FwCfgPath    = "/sys/firmware/qemu_fw_cfg/by_name/opt/peerpod/userdata/raw"
	AzureIMDSURL = "http://169.254.169.254/metadata/instance/compute/userData?api-version=2021-01-01&format=text"
	AWSIMDSURL   = "http://169.254.169.254/latest"
)

// Sources are where user data is looked for, in this order: File (when
// set), FwCfg, Azure IMDS, AWS IMDSv2. Empty fields take the defaults above
// except File; "-" disables a source.
type Sources struct {
	File      string
	FwCfg     string
	AzureIMDS string
	AWSIMDS   string
	// Timeout bounds each metadata service request (default 2s).
	Timeout time.Duration
	// Client is the HTTP client for the metadata services (default: no proxy).
	Client *http.Client
}

// LoadUserData returns the first user data found and the name of its source.
func LoadUserData(ctx context.Context, src Sources) (*userdata.Config, string, error) {
	if src.FwCfg == "" {
		src.FwCfg = FwCfgPath
	}
	if src.AzureIMDS == "" {
		src.AzureIMDS = AzureIMDSURL
	}
	if src.AWSIMDS == "" {
		src.AWSIMDS = AWSIMDSURL
	}
	if src.Timeout == 0 {
		src.Timeout = 2 * time.Second
	}
	if src.Client == nil {
		src.Client = &http.Client{Transport: &http.Transport{Proxy: nil}}
	}
	if src.File != "" {
		b, err := os.ReadFile(src.File)
		if err != nil {
			return nil, "", fmt.Errorf("user data file: %w", err)
		}
		cfg, err := userdata.Decode(b)
		if err != nil {
			return nil, "", fmt.Errorf("user data file %s: %w", src.File, err)
		}
		return cfg, "file " + src.File, nil
	}
	var tried []string
	if src.FwCfg != "-" {
		if b, err := os.ReadFile(src.FwCfg); err == nil {
			cfg, err := userdata.Decode(b)
			if err != nil {
				return nil, "", fmt.Errorf("user data from fw_cfg: %w", err)
			}
			return cfg, "fw_cfg", nil
		}
		tried = append(tried, "fw_cfg")
	}
	if src.AzureIMDS != "-" {
		b, err := azureUserData(ctx, src)
		if err == nil && len(b) > 0 {
			cfg, err := userdata.Decode(b)
			if err != nil {
				return nil, "", fmt.Errorf("user data from Azure IMDS: %w", err)
			}
			return cfg, "azure-imds", nil
		}
		tried = append(tried, "azure-imds")
	}
	if src.AWSIMDS != "-" {
		b, err := awsUserData(ctx, src)
		if err == nil && len(b) > 0 {
			cfg, err := userdata.Decode(b)
			if err != nil {
				return nil, "", fmt.Errorf("user data from AWS IMDS: %w", err)
			}
			return cfg, "aws-imds", nil
		}
		tried = append(tried, "aws-imds")
	}
	return nil, "", fmt.Errorf("no user data found (tried %s)", strings.Join(tried, ", "))
}

func get(ctx context.Context, src Sources, method, url string, hdr map[string]string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, src.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, url, nil)
	if err != nil {
		return nil, err
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := src.Client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, userdata.MaxDecodedSize+1))
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%s %s: %s", method, url, resp.Status)
	}
	return b, nil
}

// azureUserData reads userData from Azure IMDS (base64 text).
func azureUserData(ctx context.Context, src Sources) ([]byte, error) {
	b, err := get(ctx, src, http.MethodGet, src.AzureIMDS, map[string]string{"Metadata": "true"})
	if err != nil {
		return nil, err
	}
	return base64.StdEncoding.DecodeString(strings.TrimSpace(string(b)))
}

// awsUserData reads user-data from AWS IMDSv2 (session token first).
func awsUserData(ctx context.Context, src Sources) ([]byte, error) {
	tok, err := get(ctx, src, http.MethodPut, src.AWSIMDS+"/api/token", map[string]string{"X-aws-ec2-metadata-token-ttl-seconds": "300"})
	if err != nil {
		return nil, err
	}
	if len(tok) == 0 {
		return nil, errors.New("AWS IMDS: empty token")
	}
	return get(ctx, src, http.MethodGet, src.AWSIMDS+"/user-data", map[string]string{"X-aws-ec2-metadata-token": string(tok)})
}
