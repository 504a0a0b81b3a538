package aws

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"text/template"
	"time"

	"github.com/layerimg/layerimg/export/internal/envvar"
	"github.com/layerimg/layerimg/recipes"
)

// Tag keys the publisher sets on snapshots and images. An image carrying
// DigestTag is complete: the tag is written last.
const (
	DigestTag = "layerimg:digest"
	RecipeTag = "layerimg:recipe"
	// SBOMTag carries the sha256 of the build's SPDX SBOM (--sbom).
	SBOMTag = "layerimg:sbom"
)

// Method is how the disk reaches EBS.
const (
	EBSDirect      = recipes.MethodEBSDirect
	ImportSnapshot = recipes.MethodImportSnapshot
)

// EnvRegion is the region variable the AWS SDK and CLI read; FromEnv is
// the only place layerimg reads it.
const EnvRegion = "AWS_REGION"

// Config is where and how to publish. Zero fields take the defaults the
// issue and AWS documentation recommend.
type Config struct {
	Region      string
	Name        string // a text/template: .Name .Date .Time .Digest .Args
	Description string
	Tags        map[string]string
	// SBOM is the build's SBOM digest (sha256:...), tagged as SBOMTag.
	SBOM string

	BootMode       string // recipes.AWSBootModes(); uefi by default
	Architecture   string // x86_64 (default) or arm64
	ENASupport     *bool  // default true
	IMDSSupport    string // v2.0 (default); "none" registers without
	TPMSupport     string // v2.0 or empty
	RootDeviceName string // /dev/xvda
	VolumeType     string // gp3
	VolumeSize     int64  // GiB; default: the disk's size rounded up

	Encrypted bool
	KMSKeyID  string

	CopyTo              []string
	ShareAccounts       []string
	ShareOrganizations  []string
	ShareOrganizational []string // organizational unit ARNs

	Method   string // ebs-direct (default) or import-snapshot
	S3Bucket string // for import-snapshot
	RoleName string // for import-snapshot; AWS's default is vmimport

	Parallel int // PutSnapshotBlock workers; default 32
	// StateDir keeps each upload's block hashes: the next upload of the
	// same recipe to the same region starts from that snapshot and sends
	// only the blocks that differ. Empty: every upload is whole.
	StateDir string
	Force    bool
	Profile  string

	// Waits: for the snapshot to complete, for each copy, for an import task.
	SnapshotTimeout, CopyTimeout, ImportTimeout time.Duration
	PollInterval                                time.Duration // default 5 s
	ProgressInterval                            time.Duration // default 5 s
	MaxBackoff                                  time.Duration // between retries; default 20 s

	// Digest is the disk's content digest (sha256:...); Recipe and Args
	// feed the name template and the tags.
	Digest, Recipe string
	Args           map[string]string
	Now            time.Time

	// Endpoint and HTTPClient point the SDK elsewhere (tests). AWS_ENDPOINT_URL
	// and AWS_CA_BUNDLE work as well.
	Endpoint, S3Endpoint string
	HTTPClient           *http.Client
	Log                  *slog.Logger
}

var (
	regionRE  = regexp.MustCompile(`^[a-z]{2}(-[a-z]+)+-\d+$`)
	accountRE = regexp.MustCompile(`^\d{12}$`)
	amiNameRE = regexp.MustCompile(`^[A-Za-z0-9()\[\] ./\-'@_]{3,128}$`)
)

// DefaultConfig holds the values Publish gives a Config's empty fields:
// the ones the issue and AWS documentation recommend. A CLI shows them as
// its flags' defaults.
func DefaultConfig() Config {
	ena := true
	return Config{
		Name:             "{{.Name}}-{{.Digest}}",
		BootMode:         recipes.AWSBootModes()[0],
		Architecture:     recipes.AWSArchitectures()[0],
		ENASupport:       &ena,
		IMDSSupport:      recipes.AWSIMDSSupport()[0],
		RootDeviceName:   "/dev/xvda",
		VolumeType:       recipes.AWSVolumeTypes()[0],
		Method:           EBSDirect,
		Parallel:         32,
		SnapshotTimeout:  time.Hour,
		CopyTimeout:      2 * time.Hour,
		ImportTimeout:    2 * time.Hour,
		PollInterval:     5 * time.Second,
		ProgressInterval: 5 * time.Second,
		MaxBackoff:       20 * time.Second,
	}
}

func (c *Config) defaults() error {
	if c.Log == nil {
		c.Log = slog.New(slog.DiscardHandler)
	}
	d := DefaultConfig()
	for _, s := range []struct {
		dst *string
		v   string
	}{
		{&c.BootMode, d.BootMode}, {&c.Architecture, d.Architecture}, {&c.IMDSSupport, d.IMDSSupport},
		{&c.RootDeviceName, d.RootDeviceName}, {&c.VolumeType, d.VolumeType}, {&c.Method, d.Method}, {&c.Name, d.Name},
	} {
		if *s.dst == "" {
			*s.dst = s.v
		}
	}
	if c.ENASupport == nil {
		c.ENASupport = d.ENASupport
	}
	for _, t := range []struct {
		dst *time.Duration
		v   time.Duration
	}{
		{&c.SnapshotTimeout, d.SnapshotTimeout}, {&c.CopyTimeout, d.CopyTimeout}, {&c.ImportTimeout, d.ImportTimeout},
		{&c.PollInterval, d.PollInterval}, {&c.ProgressInterval, d.ProgressInterval}, {&c.MaxBackoff, d.MaxBackoff},
	} {
		if *t.dst <= 0 {
			*t.dst = t.v
		}
	}
	if c.Parallel <= 0 {
		c.Parallel = d.Parallel
	}
	if c.Now.IsZero() {
		c.Now = time.Now().UTC()
	}
	switch {
	case c.Region == "":
		return errors.New("aws: no region (set publish.aws.region, --region or AWS_REGION)")
	case !regionRE.MatchString(c.Region):
		return fmt.Errorf("aws: region %q is not a region name such as eu-west-1", c.Region)
	case !slices.Contains(recipes.AWSBootModes(), c.BootMode):
		return fmt.Errorf("aws: boot_mode %q: expected %s", c.BootMode, oneOf(recipes.AWSBootModes()))
	case !slices.Contains(recipes.AWSArchitectures(), c.Architecture):
		return fmt.Errorf("aws: architecture %q: expected %s", c.Architecture, oneOf(recipes.AWSArchitectures()))
	case c.Architecture == "arm64" && c.BootMode != recipes.BootModeUEFI:
		return errors.New("aws: arm64 images boot only with boot_mode uefi")
	case !slices.Contains(recipes.AWSIMDSSupport(), c.IMDSSupport):
		return fmt.Errorf("aws: imds_support %q: expected %s", c.IMDSSupport, oneOf(recipes.AWSIMDSSupport()))
	case c.TPMSupport != "" && !slices.Contains(recipes.AWSTPMSupport(), c.TPMSupport):
		return fmt.Errorf("aws: tpm_support %q: expected %s", c.TPMSupport, oneOf(recipes.AWSTPMSupport()))
	case c.TPMSupport != "" && c.BootMode != recipes.BootModeUEFI:
		return errors.New("aws: tpm_support needs boot_mode uefi")
	case !slices.Contains(recipes.AWSVolumeTypes(), c.VolumeType):
		return fmt.Errorf("aws: volume_type %q cannot be a boot volume; use gp3, gp2, io1, io2 or standard", c.VolumeType)
	case c.KMSKeyID != "" && !c.Encrypted:
		return errors.New("aws: kms_key_id needs encrypted: true")
	case c.Method != EBSDirect && c.Method != ImportSnapshot:
		return fmt.Errorf("aws: method %q: expected ebs-direct or import-snapshot", c.Method)
	case c.Method == ImportSnapshot && c.S3Bucket == "":
		return errors.New("aws: method import-snapshot needs s3_bucket")
	case c.Digest == "":
		return errors.New("aws: the disk's digest is unknown")
	}
	for _, r := range c.CopyTo {
		if !regionRE.MatchString(r) || r == c.Region {
			return fmt.Errorf("aws: copy_to %q: expected regions other than %s", r, c.Region)
		}
	}
	for _, a := range c.ShareAccounts {
		if !accountRE.MatchString(a) {
			return fmt.Errorf("aws: launch_permissions.accounts: %q is not a 12-digit account ID", a)
		}
	}
	for k := range c.Tags {
		if strings.HasPrefix(strings.ToLower(k), "aws:") || strings.HasPrefix(k, "layerimg:") {
			return fmt.Errorf("aws: tag %q: the aws: and layerimg: prefixes are reserved", k)
		}
	}
	if len(c.Tags) > 45 {
		return fmt.Errorf("aws: %d tags; AWS allows 50 and layerimg sets up to 5", len(c.Tags))
	}
	return nil
}

// ImageName expands the name template. AWS's rules for AMI names are
// checked here so that a bad template fails before anything is uploaded.
func (c *Config) ImageName() (string, error) {
	t, err := template.New("name").Option("missingkey=error").Parse(c.Name)
	if err != nil {
		return "", fmt.Errorf("aws: name template %q: %w", c.Name, err)
	}
	short := strings.TrimPrefix(c.Digest, "sha256:")
	short = short[:min(12, len(short))]
	var b bytes.Buffer
	data := map[string]any{"Name": c.Recipe, "Date": c.Now.Format("2006-01-02"), "Time": c.Now.Format("20060102-150405"),
		"Digest": short, "Args": c.Args}
	if err := t.Execute(&b, data); err != nil {
		return "", fmt.Errorf("aws: name template %q: %w", c.Name, err)
	}
	name := b.String()
	if !amiNameRE.MatchString(name) {
		return "", fmt.Errorf("aws: image name %q: AMI names are 3 to 128 letters, digits and ()[] ./-'@_", name)
	}
	return name, nil
}

// oneOf words a list of allowed values: "a, b or c".
func oneOf(vs []string) string {
	if len(vs) < 2 {
		return strings.Join(vs, "")
	}
	return strings.Join(vs[:len(vs)-1], ", ") + " or " + vs[len(vs)-1]
}

// FromRecipe is the recipe's publish.aws section as publisher config. The
// recipe holds no credentials; FromEnv adds the region from the environment.
func FromRecipe(a *recipes.AWS) Config {
	if a == nil {
		return Config{}
	}
	c := Config{
		Region: a.Region, Name: a.Name, Description: a.Description, Tags: a.Tags,
		BootMode: a.BootMode, Architecture: a.Architecture, ENASupport: a.ENASupport, IMDSSupport: a.IMDSSupport, TPMSupport: a.TPMSupport,
		RootDeviceName: a.RootDeviceName, VolumeType: a.VolumeType, VolumeSize: int64(a.VolumeSize),
		Encrypted: a.Encrypted, KMSKeyID: a.KMSKeyID, CopyTo: a.CopyTo,
		Method: a.Method, S3Bucket: a.S3Bucket, RoleName: a.RoleName,
	}
	if lp := a.LaunchPermissions; lp != nil {
		c.ShareAccounts, c.ShareOrganizations, c.ShareOrganizational = lp.Accounts, lp.Organizations, lp.OrganizationalUnits
	}
	return c
}

// FromEnv fills an empty region from AWS_REGION. Everything else the SDK
// reads itself (credentials, profile, AWS_ENDPOINT_URL, AWS_CA_BUNDLE).
func (c Config) FromEnv() Config {
	envvar.Default(&c.Region, EnvRegion)
	return c
}
