package azure

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/arm"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/runtime"
	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/compute/armcompute/v6"

	"github.com/layerimg/layerimg/export"
	"github.com/layerimg/layerimg/export/undo"
	"github.com/layerimg/layerimg/recipes"
)

// DefaultMergeGap is Config.MergeGap's default: 4 KiB less one sector.
const DefaultMergeGap = 4096 - sector

// Tag keys set on the images (Azure tag names may not hold '/' or ':').
const (
	DigestTag = "layerimg-digest"
	RecipeTag = "layerimg-recipe"
	// SBOMTag carries the sha256 of the build's SPDX SBOM (--sbom).
	SBOMTag = "layerimg-sbom"
)

// Gallery names the gallery image version to make.
type Gallery struct {
	Name, ImageDefinition, Version string
	ReplicaRegions                 []string
	ExcludeFromLatest              bool
	Publisher, Offer, SKU          string // for a definition that is missing
}

// Config is where and how to publish.
type Config struct {
	SubscriptionID, ResourceGroup, Location string
	ImageName                               string
	Gallery                                 *Gallery
	HyperVGeneration                        string // V2 (default) or V1
	// Architecture is x64 or Arm64; default: the disk's (its root
	// partition's GPT type), else x64. Arm64 needs V2 and a gallery.
	Architecture    string
	SecurityType    string // Standard (default) or TrustedLaunch
	OSType          string // Linux
	Tags            map[string]string
	SBOM            string // the build's SBOM digest, tagged as SBOMTag
	KeepDisk, Force bool

	Parallel int // page writers; default 16
	// MergeGap: zero gaps of up to this many bytes between non-zero
	// sectors are sent with their neighbours. The default, 3584, merges
	// zero sectors that share a 4 KiB filesystem block with data: on the
	// example image that is 70x fewer writes for no more bytes than the
	// non-zero 4 KiB blocks. Negative: send only non-zero sectors.
	MergeGap         int64
	PollInterval     time.Duration // for long-running operations; default 5 s
	ProgressInterval time.Duration

	// Digest is the disk's content digest; Recipe names it; BootMode is
	// the disk's boot layout (TrustedLaunch needs grub).
	Digest, Recipe, BootMode string

	// Cloud is the Azure cloud: AzurePublic (default), AzureChina or
	// AzureUSGovernment. Endpoint (ARM) and AuthorityHost (Entra ID)
	// override the cloud's, for Azure Stack or a test's fake; FromEnv reads
	// them from AZURE_RESOURCE_MANAGER_ENDPOINT and AZURE_AUTHORITY_HOST.
	Cloud                   string
	Endpoint, AuthorityHost string

	// Credential defaults to azidentity's DefaultAzureCredential in the
	// cloud above. HTTPClient points the SDK elsewhere (tests).
	Credential azcore.TokenCredential
	HTTPClient *http.Client
	Log        *slog.Logger
}

var (
	rgRE      = regexp.MustCompile(`^[-\w._()]{1,90}$`)
	versionRE = regexp.MustCompile(`^\d+\.\d+\.\d+$`)
	subRE     = regexp.MustCompile(`^[0-9a-fA-F-]{36}$`)
)

// DefaultGalleryPublisher is the publisher of an image definition that
// Publish creates, unless Gallery.Publisher says.
const DefaultGalleryPublisher = "layerimg"

// DefaultConfig holds the values Publish gives a Config's empty fields. A
// CLI shows them as its flags' defaults.
func DefaultConfig() Config {
	return Config{
		Cloud:            recipes.AzureClouds()[0],
		HyperVGeneration: recipes.AzureHyperVGenerations()[0],
		SecurityType:     recipes.AzureSecurityTypes()[0],
		OSType:           recipes.AzureOSTypes()[0],
		Parallel:         16,
		MergeGap:         DefaultMergeGap,
		PollInterval:     5 * time.Second,
		ProgressInterval: 5 * time.Second,
	}
}

func (c *Config) defaults() error {
	if c.Log == nil {
		c.Log = slog.New(slog.DiscardHandler)
	}
	def := func(dst *string, v string) {
		if *dst == "" {
			*dst = v
		}
	}
	d := DefaultConfig()
	def(&c.Cloud, d.Cloud)
	def(&c.HyperVGeneration, d.HyperVGeneration)
	def(&c.SecurityType, d.SecurityType)
	def(&c.OSType, d.OSType)
	def(&c.Architecture, string(armcompute.ArchitectureX64))
	if c.Parallel <= 0 {
		c.Parallel = d.Parallel
	}
	if c.PollInterval <= 0 {
		c.PollInterval = d.PollInterval
	}
	if c.ProgressInterval <= 0 {
		c.ProgressInterval = d.ProgressInterval
	}
	switch {
	case c.MergeGap == 0:
		c.MergeGap = d.MergeGap
	case c.MergeGap < 0:
		c.MergeGap = 0
	case c.MergeGap%sector != 0 || c.MergeGap >= MaxWrite:
		return fmt.Errorf("azure: merge gap %d: expected a multiple of 512 below 4 MiB", c.MergeGap)
	}
	if g := c.Gallery; g != nil {
		def(&g.Publisher, DefaultGalleryPublisher)
		def(&g.Offer, c.Recipe)
		def(&g.SKU, c.Recipe)
	}
	switch {
	case c.SubscriptionID == "":
		return errors.New("azure: no subscription (set publish.azure.subscription_id, --subscription or AZURE_SUBSCRIPTION_ID)")
	case !subRE.MatchString(c.SubscriptionID):
		return fmt.Errorf("azure: subscription %q is not a subscription ID (a GUID)", c.SubscriptionID)
	case !rgRE.MatchString(c.ResourceGroup):
		return fmt.Errorf("azure: resource group %q is missing or not a valid name", c.ResourceGroup)
	case c.Location == "":
		return errors.New("azure: no location (such as westeurope)")
	case c.ImageName == "" && c.Gallery == nil:
		return errors.New("azure: nothing to make: set image_name, gallery, or both")
	case !slices.Contains(recipes.AzureClouds(), c.Cloud):
		return fmt.Errorf("azure: cloud %q: expected %s", c.Cloud, strings.Join(recipes.AzureClouds(), ", "))
	case !slices.Contains(recipes.AzureHyperVGenerations(), c.HyperVGeneration):
		return fmt.Errorf("azure: hyper_v_generation %q: expected V2 or V1", c.HyperVGeneration)
	case !slices.Contains(recipes.AzureSecurityTypes(), c.SecurityType):
		return fmt.Errorf("azure: security_type %q: expected Standard or TrustedLaunch", c.SecurityType)
	case c.SecurityType == "TrustedLaunch" && c.BootMode != "grub":
		return fmt.Errorf("azure: security_type TrustedLaunch boots with Secure Boot, which needs the disk's boot: grub layout (shim and signed GRUB); this disk uses %q", c.BootMode)
	case c.SecurityType == "TrustedLaunch" && c.HyperVGeneration != "V2":
		return errors.New("azure: security_type TrustedLaunch needs hyper_v_generation V2")
	case c.SecurityType == "TrustedLaunch" && c.ImageName != "" && c.Gallery == nil:
		return errors.New("azure: a managed image cannot carry TrustedLaunch; publish to a gallery")
	case c.OSType != "Linux":
		return fmt.Errorf("azure: os_type %q: layerimg builds Linux images", c.OSType)
	case c.Architecture != string(armcompute.ArchitectureX64) && c.Architecture != string(armcompute.ArchitectureArm64):
		return fmt.Errorf("azure: architecture %q: expected x64 or Arm64", c.Architecture)
	case c.Architecture == string(armcompute.ArchitectureArm64) && c.HyperVGeneration != "V2":
		return errors.New("azure: Arm64 images need hyper_v_generation V2")
	case c.Architecture == string(armcompute.ArchitectureArm64) && c.ImageName != "":
		return errors.New("azure: a managed image cannot hold an Arm64 disk; publish Arm64 to a gallery only (no image_name)")
	case c.Digest == "":
		return errors.New("azure: the disk's digest is unknown")
	}
	if g := c.Gallery; g != nil {
		switch {
		case g.Name == "" || g.ImageDefinition == "":
			return errors.New("azure: gallery needs name and image_definition")
		case !versionRE.MatchString(g.Version):
			return fmt.Errorf("azure: gallery version %q: expected MAJOR.MINOR.PATCH, such as 1.4.0", g.Version)
		}
	}
	for k := range c.Tags {
		if strings.ContainsAny(k, "<>%&\\?/") || strings.HasPrefix(k, "layerimg-") {
			return fmt.Errorf("azure: tag %q: Azure forbids <>%%&\\?/ in tag names, and layerimg- is reserved", k)
		}
	}
	return nil
}

// Result names what was made or found.
type Result struct {
	ImageID               string `json:"image_id,omitempty"`
	GalleryImageVersionID string `json:"gallery_image_version_id,omitempty"`
	DiskID                string `json:"disk_id,omitempty"` // kept with keep_disk
	Existing              bool   `json:"existing,omitempty"`
	BytesSent             int64  `json:"bytes_sent,omitempty"`
	RangesSent            int64  `json:"ranges_sent,omitempty"`
}

type clients struct {
	disks    *armcompute.DisksClient
	images   *armcompute.ImagesClient
	defs     *armcompute.GalleryImagesClient
	versions *armcompute.GalleryImageVersionsClient
}

type publisher struct {
	cfg Config
	c   clients

	undo undo.Stack
}

// Publish uploads the disk (a fixed VHD, or a raw disk that is streamed as
// one) and makes the configured images from it. The same digest published
// again returns the images already there unless cfg.Force. On failure or
// interrupt, access is revoked and the temporary disk deleted.
func Publish(ctx context.Context, path string, cfg Config) (res *Result, err error) {
	// The disk's own word (its root partition's GPT type) goes first: an
	// image of the other architecture never boots.
	arch, err := export.DiskArch(ctx, path)
	if err != nil {
		return nil, fmt.Errorf("azure: %w", err)
	}
	if err := cfg.setArchitecture(arch, path+" is an "+arch+" disk (its root partition's GPT type)"); err != nil {
		return nil, err
	}
	if err := cfg.defaults(); err != nil {
		return nil, err
	}
	src, err := openSource(path, cfg.Digest)
	if err != nil {
		return nil, err
	}
	defer src.Close()
	p := &publisher{cfg: cfg, undo: undo.Stack{Cloud: "Azure", Log: cfg.Log, Redact: redactErr}}
	if p.c, err = cfg.clients(); err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			p.undo.Rollback(ctx)
			err = redactErr(err)
		}
	}()

	res = &Result{}
	needImage, needVersion, err := p.existing(ctx, res)
	if err != nil {
		return nil, err
	}
	if !needImage && !needVersion {
		res.Existing = true
		return res, nil
	}
	diskID, diskName, err := p.upload(ctx, src, res)
	if err != nil {
		return nil, err
	}
	if needImage {
		if res.ImageID, err = p.image(ctx, diskID); err != nil {
			return nil, err
		}
	}
	if needVersion {
		if res.GalleryImageVersionID, err = p.version(ctx, diskID); err != nil {
			return nil, err
		}
	}
	p.undo.Commit()
	if cfg.KeepDisk {
		res.DiskID = diskID
		return res, nil
	}
	if err := p.deleteDisk(ctx, diskName); err != nil {
		cfg.Log.Error("the image is made but the upload disk could not be deleted; delete it by hand", "disk", diskID, "err", redactErr(err))
	}
	return res, nil
}

func (c *Config) clients() (clients, error) {
	cc, err := c.cloudConfig()
	if err != nil {
		return clients{}, err
	}
	cred := c.Credential
	if cred == nil {
		o := &azidentity.DefaultAzureCredentialOptions{ClientOptions: azcore.ClientOptions{Cloud: cc}}
		// Microsoft's instance discovery knows only its own authorities:
		// an overridden one (Azure Stack, a fake) is taken as given.
		o.DisableInstanceDiscovery = c.AuthorityHost != ""
		if cred, err = azidentity.NewDefaultAzureCredential(o); err != nil {
			return clients{}, fmt.Errorf("azure: credentials: %w", err)
		}
	}
	opts := &arm.ClientOptions{ClientOptions: azcore.ClientOptions{Cloud: cc}}
	if c.HTTPClient != nil {
		opts.Transport = c.HTTPClient
	}
	opts.Retry = policy.RetryOptions{MaxRetries: 6}
	f, err := armcompute.NewClientFactory(c.SubscriptionID, cred, opts)
	if err != nil {
		return clients{}, fmt.Errorf("azure: %w", err)
	}
	return clients{disks: f.NewDisksClient(), images: f.NewImagesClient(), defs: f.NewGalleryImagesClient(),
		versions: f.NewGalleryImageVersionsClient()}, nil
}

func (p *publisher) poll() *runtime.PollUntilDoneOptions {
	return &runtime.PollUntilDoneOptions{Frequency: p.cfg.PollInterval}
}

// existing reports which targets still need making. A target of the same
// name from another disk is an error, except a managed image with --force,
// which is replaced.
func (p *publisher) existing(ctx context.Context, res *Result) (needImage, needVersion bool, err error) {
	cfg := p.cfg
	if cfg.ImageName != "" {
		needImage = true
		im, err := p.c.images.Get(ctx, cfg.ResourceGroup, cfg.ImageName, nil)
		switch {
		case notFound(err):
		case err != nil:
			return false, false, azErr("get image", imageID(cfg), err)
		case tag(im.Tags, DigestTag) == cfg.Digest && !cfg.Force:
			res.ImageID, needImage = *im.ID, false
			cfg.Log.Info("this disk is already published", "image", *im.ID)
		case !cfg.Force:
			return false, false, fmt.Errorf("azure: image %s exists and was made from another disk (%s); --force replaces it", *im.ID, tag(im.Tags, DigestTag))
		default:
			cfg.Log.Info("replacing the image (--force)", "image", *im.ID)
			poller, err := p.c.images.BeginDelete(ctx, cfg.ResourceGroup, cfg.ImageName, nil)
			if err == nil {
				_, err = poller.PollUntilDone(ctx, p.poll())
			}
			if err != nil {
				return false, false, azErr("delete image", *im.ID, err)
			}
		}
	}
	if g := cfg.Gallery; g != nil {
		needVersion = true
		v, err := p.c.versions.Get(ctx, cfg.ResourceGroup, g.Name, g.ImageDefinition, g.Version, nil)
		switch {
		case notFound(err):
		case err != nil:
			return false, false, azErr("get gallery image version", versionID(cfg), err)
		case tag(v.Tags, DigestTag) == cfg.Digest && !cfg.Force:
			res.GalleryImageVersionID, needVersion = *v.ID, false
			cfg.Log.Info("this disk is already published", "version", *v.ID)
		default:
			return false, false, fmt.Errorf("azure: gallery image version %s exists (from disk %s); versions cannot change, publish a new version", *v.ID, tag(v.Tags, DigestTag))
		}
		// A definition for the other architecture or generation refuses
		// the version: say so before uploading.
		if needVersion {
			def, err := p.c.defs.Get(ctx, cfg.ResourceGroup, g.Name, g.ImageDefinition, nil)
			switch {
			case notFound(err):
			case err != nil:
				return false, false, azErr("get gallery image definition", defIDOf(cfg), err)
			default:
				if err := checkDef(cfg, def.Properties); err != nil {
					return false, false, err
				}
			}
		}
	}
	return needImage, needVersion, nil
}

func tag(tags map[string]*string, k string) string {
	if v := tags[k]; v != nil {
		return *v
	}
	return ""
}

func (p *publisher) tags() map[string]*string {
	t := map[string]*string{DigestTag: &p.cfg.Digest}
	if p.cfg.Recipe != "" {
		t[RecipeTag] = &p.cfg.Recipe
	}
	if p.cfg.SBOM != "" {
		t[SBOMTag] = &p.cfg.SBOM
	}
	for k, v := range p.cfg.Tags {
		t[k] = &v
	}
	return t
}

func imageID(c Config) string {
	return fmt.Sprintf("/subscriptions/%s/resourceGroups/%s/providers/Microsoft.Compute/images/%s", c.SubscriptionID, c.ResourceGroup, c.ImageName)
}

func versionID(c Config) string {
	return fmt.Sprintf("/subscriptions/%s/resourceGroups/%s/providers/Microsoft.Compute/galleries/%s/images/%s/versions/%s",
		c.SubscriptionID, c.ResourceGroup, c.Gallery.Name, c.Gallery.ImageDefinition, c.Gallery.Version)
}

func diskID(c Config, name string) string {
	return fmt.Sprintf("/subscriptions/%s/resourceGroups/%s/providers/Microsoft.Compute/disks/%s", c.SubscriptionID, c.ResourceGroup, name)
}

// diskName is unique per run: two publishes of one disk must not share
// (and delete) each other's upload disk.
func diskName(digest string) string {
	h := sha256.Sum256([]byte(fmt.Sprintf("%s %d", digest, time.Now().UnixNano())))
	short := strings.TrimPrefix(digest, "sha256:")
	return fmt.Sprintf("layerimg-%s-%x", short[:min(12, len(short))], h[:3])
}

func (p *publisher) deleteDisk(ctx context.Context, name string) error {
	poller, err := p.c.disks.BeginDelete(ctx, p.cfg.ResourceGroup, name, nil)
	if err == nil {
		_, err = poller.PollUntilDone(ctx, p.poll())
	}
	if err != nil {
		return azErr("delete disk", diskID(p.cfg, name), err)
	}
	return nil
}

func (p *publisher) image(ctx context.Context, disk string) (string, error) {
	cfg := p.cfg
	poller, err := p.c.images.BeginCreateOrUpdate(ctx, cfg.ResourceGroup, cfg.ImageName, armcompute.Image{
		Location: &cfg.Location,
		Tags:     p.tags(),
		Properties: &armcompute.ImageProperties{
			HyperVGeneration: (*armcompute.HyperVGenerationTypes)(&cfg.HyperVGeneration),
			StorageProfile: &armcompute.ImageStorageProfile{OSDisk: &armcompute.ImageOSDisk{
				OSType:      (*armcompute.OperatingSystemTypes)(&cfg.OSType),
				OSState:     ptr(armcompute.OperatingSystemStateTypesGeneralized),
				ManagedDisk: &armcompute.SubResource{ID: &disk},
			}},
		},
	}, nil)
	id := imageID(cfg)
	if err != nil {
		return "", azErr("create image", id, err)
	}
	p.undo.Push("delete image "+id, func(ctx context.Context) error {
		poller, err := p.c.images.BeginDelete(ctx, cfg.ResourceGroup, cfg.ImageName, nil)
		if err == nil {
			_, err = poller.PollUntilDone(ctx, p.poll())
		}
		return err
	})
	r, err := poller.PollUntilDone(ctx, p.poll())
	if err != nil {
		return "", azErr("create image", id, err)
	}
	cfg.Log.Info("made managed image", "image", *r.ID)
	return *r.ID, nil
}

func ptr[T any](v T) *T { return &v }

// version makes the gallery image version, and the image definition first
// when it is missing.
func (p *publisher) version(ctx context.Context, disk string) (string, error) {
	cfg, g := p.cfg, p.cfg.Gallery
	def, err := p.c.defs.Get(ctx, cfg.ResourceGroup, g.Name, g.ImageDefinition, nil)
	defID := strings.TrimSuffix(versionID(cfg), "/versions/"+g.Version)
	switch {
	case notFound(err):
		props := &armcompute.GalleryImageProperties{
			OSType:           (*armcompute.OperatingSystemTypes)(&cfg.OSType),
			OSState:          ptr(armcompute.OperatingSystemStateTypesGeneralized),
			HyperVGeneration: (*armcompute.HyperVGeneration)(&cfg.HyperVGeneration),
			Identifier:       &armcompute.GalleryImageIdentifier{Publisher: &g.Publisher, Offer: &g.Offer, SKU: &g.SKU},
			Architecture:     ptr(armcompute.Architecture(cfg.Architecture)),
		}
		if cfg.SecurityType == "TrustedLaunch" {
			props.Features = []*armcompute.GalleryImageFeature{{Name: ptr("SecurityType"), Value: ptr("TrustedLaunch")}}
		}
		poller, err := p.c.defs.BeginCreateOrUpdate(ctx, cfg.ResourceGroup, g.Name, g.ImageDefinition,
			armcompute.GalleryImage{Location: &cfg.Location, Properties: props}, nil)
		if err == nil {
			_, err = poller.PollUntilDone(ctx, p.poll())
		}
		if err != nil {
			return "", azErr("create gallery image definition", defID, err)
		}
		cfg.Log.Info("made gallery image definition", "definition", defID)
	case err != nil:
		return "", azErr("get gallery image definition", defID, err)
	default:
		if err := checkDef(cfg, def.Properties); err != nil {
			return "", err
		}
	}
	regions := []*armcompute.TargetRegion{{Name: &cfg.Location}}
	for _, r := range g.ReplicaRegions {
		if r != cfg.Location {
			regions = append(regions, &armcompute.TargetRegion{Name: ptr(r)})
		}
	}
	id := versionID(cfg)
	poller, err := p.c.versions.BeginCreateOrUpdate(ctx, cfg.ResourceGroup, g.Name, g.ImageDefinition, g.Version, armcompute.GalleryImageVersion{
		Location: &cfg.Location,
		Tags:     p.tags(),
		Properties: &armcompute.GalleryImageVersionProperties{
			PublishingProfile: &armcompute.GalleryImageVersionPublishingProfile{TargetRegions: regions, ExcludeFromLatest: &g.ExcludeFromLatest},
			StorageProfile: &armcompute.GalleryImageVersionStorageProfile{
				OSDiskImage: &armcompute.GalleryOSDiskImage{Source: &armcompute.GalleryDiskImageSource{ID: &disk}},
			},
		},
	}, nil)
	if err != nil {
		return "", azErr("create gallery image version", id, err)
	}
	p.undo.Push("delete gallery image version "+id, func(ctx context.Context) error {
		poller, err := p.c.versions.BeginDelete(ctx, cfg.ResourceGroup, g.Name, g.ImageDefinition, g.Version, nil)
		if err == nil {
			_, err = poller.PollUntilDone(ctx, p.poll())
		}
		return err
	})
	r, err := poller.PollUntilDone(ctx, p.poll())
	if err != nil {
		return "", azErr("create gallery image version", id, err)
	}
	cfg.Log.Info("made gallery image version", "version", *r.ID, "regions", len(regions))
	return *r.ID, nil
}

func defIDOf(cfg Config) string {
	return strings.TrimSuffix(versionID(cfg), "/versions/"+cfg.Gallery.Version)
}

// checkDef refuses an existing definition of another generation or
// architecture than the disk's.
func checkDef(cfg Config, pr *armcompute.GalleryImageProperties) error {
	defID := defIDOf(cfg)
	if pr != nil && pr.HyperVGeneration != nil && string(*pr.HyperVGeneration) != cfg.HyperVGeneration {
		return fmt.Errorf("azure: gallery image definition %s is %s; this disk is published as %s", defID, *pr.HyperVGeneration, cfg.HyperVGeneration)
	}
	// A definition without one is x64, as ARM reads it.
	if a := defArch(pr); a != cfg.Architecture {
		return fmt.Errorf("azure: gallery image definition %s is for %s; this disk is %s: use a definition for %s", defID, a, cfg.Architecture, cfg.Architecture)
	}
	return nil
}

func defArch(pr *armcompute.GalleryImageProperties) string {
	if pr == nil || pr.Architecture == nil {
		return string(armcompute.ArchitectureX64)
	}
	return string(*pr.Architecture)
}

// architectures are Azure's names for the platforms' architectures.
var architectures = map[string]string{"amd64": string(armcompute.ArchitectureX64), "arm64": string(armcompute.ArchitectureArm64)}

// setArchitecture gives an empty Architecture the one of arch (amd64,
// arm64), and refuses one that differs; why says where arch comes from.
func (c *Config) setArchitecture(arch, why string) error {
	a, err := export.CloudArch("azure", c.Architecture, arch, why, architectures)
	if err != nil {
		return err
	}
	c.Architecture = a
	return nil
}
