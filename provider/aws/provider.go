// Package aws is peerpod's Amazon EC2 provider: it runs each pod VM as an EC2
// instance with AMD SEV-SNP, through aws-sdk-go-v2.
package aws

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"time"

	sdkaws "github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/feature/ec2/imds"
	"github.com/aws/aws-sdk-go-v2/service/ec2"

	"github.com/peerpod/peerpod/provider"
)

// ProviderName is the CLOUD_PROVIDER value of this provider.
const ProviderName = "aws"

// Provider runs pod VMs on EC2. It implements provider.Provider and
// provider.InstanceTypeLister and is safe for concurrent use.
type Provider struct {
	cfg    Config
	client *ec2.Client
	log    *slog.Logger

	waitMin, waitMax time.Duration
	runningTimeout   time.Duration

	mu     sync.Mutex
	images map[string]*imageEntry // AMI id → root device, asked once
}

type imageInfo struct {
	rootDevice string
	sizeGiB    int32
}

// imageEntry is one AMI's DescribeImages answer; done closes when it is in.
type imageEntry struct {
	done chan struct{}
	info imageInfo
	err  error
}

var (
	_ provider.Provider           = (*Provider)(nil)
	_ provider.InstanceTypeLister = (*Provider)(nil)
)

// Option changes how New builds the provider; tests use them to reach a local endpoint.
type Option func(*options)

type options struct {
	endpoint       string
	creds          sdkaws.CredentialsProvider
	retry          []func(*retry.StandardOptions)
	httpClient     *http.Client
	imdsEndpoint   string
	waitMin        time.Duration
	waitMax        time.Duration
	runningTimeout time.Duration
	log            *slog.Logger
	loadOptions    []func(*config.LoadOptions) error
}

// WithEndpoint sends every EC2 call to url (the SDK's BaseEndpoint).
func WithEndpoint(url string) Option { return func(o *options) { o.endpoint = url } }

// WithCredentials uses p instead of the configured or default credentials.
func WithCredentials(p sdkaws.CredentialsProvider) Option { return func(o *options) { o.creds = p } }

// WithStaticCredentials uses fixed keys.
func WithStaticCredentials(id, secret, session string) Option {
	return WithCredentials(credentials.NewStaticCredentialsProvider(id, secret, session))
}

// WithRetry tunes the SDK's standard retryer (attempts, backoff). The
// provider's own rule that capacity errors are never retried in place stays.
func WithRetry(fn func(*retry.StandardOptions)) Option {
	return func(o *options) { o.retry = append(o.retry, fn) }
}

// WithHTTPClient sets the HTTP client of the EC2 and IMDS clients.
func WithHTTPClient(c *http.Client) Option { return func(o *options) { o.httpClient = c } }

// WithIMDSEndpoint sets the instance metadata endpoint used for defaults.
func WithIMDSEndpoint(url string) Option { return func(o *options) { o.imdsEndpoint = url } }

// WithWaiterDelay sets the delays between DescribeInstances polls while
// waiting for an instance to run (default 2 s growing to 15 s).
func WithWaiterDelay(min, max time.Duration) Option {
	return func(o *options) { o.waitMin, o.waitMax = min, max }
}

// WithRunningTimeout bounds the wait for a new instance to run (default 5 min).
func WithRunningTimeout(d time.Duration) Option { return func(o *options) { o.runningTimeout = d } }

// WithLogger sets the logger (default slog.Default()).
func WithLogger(l *slog.Logger) Option { return func(o *options) { o.log = l } }

// WithLoadOptions passes options to the SDK's config.LoadDefaultConfig.
func WithLoadOptions(fns ...func(*config.LoadOptions) error) Option {
	return func(o *options) { o.loadOptions = append(o.loadOptions, fns...) }
}

// New makes the provider. Credentials come from cfg's static keys when set,
// otherwise from the SDK's default chain (environment, shared files, IRSA web
// identity). Region, subnet and security groups missing from cfg are taken
// from the worker node's instance metadata.
func New(ctx context.Context, cfg *Config, opts ...Option) (*Provider, error) {
	if cfg == nil {
		return nil, provider.Errorf(provider.ErrInvalidConfig, "aws: no configuration")
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	o := options{waitMin: 2 * time.Second, waitMax: 15 * time.Second, runningTimeout: 5 * time.Minute, log: slog.Default()}
	for _, fn := range opts {
		fn(&o)
	}
	c := *cfg
	load := append([]func(*config.LoadOptions) error{}, o.loadOptions...)
	if c.Region != "" {
		load = append(load, config.WithRegion(c.Region))
	}
	if o.httpClient != nil {
		load = append(load, config.WithHTTPClient(o.httpClient))
	}
	switch {
	case o.creds != nil:
		load = append(load, config.WithCredentialsProvider(o.creds))
	case c.AccessKeyID != "":
		load = append(load, config.WithCredentialsProvider(credentials.NewStaticCredentialsProvider(
			string(c.AccessKeyID), string(c.SecretAccessKey), string(c.SessionToken))))
	}
	awsCfg, err := config.LoadDefaultConfig(ctx, load...)
	if err != nil {
		return nil, provider.Errorf(provider.ErrInvalidConfig, "aws: load SDK configuration: %v", err)
	}
	if c.Region == "" {
		c.Region = awsCfg.Region
	}
	needNet := !c.UseLaunchTemplate && (c.SubnetID == "" || len(c.SecurityGroupIDs) == 0)
	if c.Region == "" || needNet {
		if err := fillFromIMDS(ctx, &c, awsCfg, o); err != nil {
			return nil, err
		}
		awsCfg.Region = c.Region
	}

	client := ec2.NewFromConfig(awsCfg, func(eo *ec2.Options) {
		if o.endpoint != "" {
			eo.BaseEndpoint = sdkaws.String(o.endpoint)
		}
		eo.Retryer = retry.NewStandard(append([]func(*retry.StandardOptions){noCapacityRetry}, o.retry...)...)
	})
	return &Provider{
		cfg: c, client: client, log: o.log,
		waitMin: o.waitMin, waitMax: o.waitMax, runningTimeout: o.runningTimeout,
		images: map[string]*imageEntry{},
	}, nil
}

// noCapacityRetry keeps the SDK from retrying capacity errors (EC2 answers
// InsufficientInstanceCapacity with HTTP 500, which the SDK would otherwise
// retry): Create tries the next instance type at once instead.
func noCapacityRetry(o *retry.StandardOptions) {
	o.Retryables = append([]retry.IsErrorRetryable{retry.IsErrorRetryableFunc(func(err error) sdkaws.Ternary {
		if capacityCodes[apiCode(err)] {
			return sdkaws.FalseTernary
		}
		return sdkaws.UnknownTernary
	})}, o.Retryables...)
}

// Config returns the configuration in effect, with the defaults found at New.
func (p *Provider) Config() Config { return p.cfg }

// Name implements provider.Provider.
func (p *Provider) Name() string { return ProviderName }

// fillFromIMDS completes region, subnet and security groups from the node's instance metadata.
func fillFromIMDS(ctx context.Context, c *Config, awsCfg sdkaws.Config, o options) error {
	client := imds.NewFromConfig(awsCfg, func(im *imds.Options) {
		if o.imdsEndpoint != "" {
			im.Endpoint = o.imdsEndpoint
			im.ClientEnableState = imds.ClientEnabled
		}
		if o.httpClient != nil {
			im.HTTPClient = o.httpClient
		}
	})
	get := func(key, path string) (string, error) {
		out, err := client.GetMetadata(ctx, &imds.GetMetadataInput{Path: path})
		if err != nil {
			return "", provider.Errorf(provider.ErrInvalidConfig, "%s not set and the node's instance metadata (%s) cannot be read: %v", key, path, err)
		}
		defer out.Content.Close()
		b, err := io.ReadAll(io.LimitReader(out.Content, 4096))
		if err != nil {
			return "", provider.Errorf(provider.ErrInvalidConfig, "%s not set and the node's instance metadata (%s) cannot be read: %v", key, path, err)
		}
		return strings.TrimSpace(string(b)), nil
	}
	if c.Region == "" {
		r, err := get(KeyRegion, "placement/region")
		if err != nil {
			return err
		}
		c.Region = r
	}
	if c.UseLaunchTemplate || (c.SubnetID != "" && len(c.SecurityGroupIDs) > 0) {
		return c.Validate()
	}
	key := KeySubnetID
	if c.SubnetID != "" {
		key = KeySecurityGroupIDs
	}
	mac, err := get(key, "mac")
	if err != nil {
		return err
	}
	if c.SubnetID == "" {
		if c.SubnetID, err = get(KeySubnetID, "network/interfaces/macs/"+mac+"/subnet-id"); err != nil {
			return err
		}
	}
	if len(c.SecurityGroupIDs) == 0 {
		sgs, err := get(KeySecurityGroupIDs, "network/interfaces/macs/"+mac+"/security-group-ids")
		if err != nil {
			return err
		}
		c.SecurityGroupIDs = strings.Fields(sgs)
	}
	if err := c.Validate(); err != nil {
		return fmt.Errorf("defaults from instance metadata: %w", err)
	}
	return nil
}
