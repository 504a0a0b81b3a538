package aws

import (
	"context"

	"github.com/layerimg/layerimg/disk/format"
	"github.com/layerimg/layerimg/export"
	"github.com/layerimg/layerimg/export/internal/result"
)

// Target names this publisher in recipes, the CLI and manifests.
const Target = "aws"

// Target implements export.Result.
func (*Result) Target() string { return Target }

// Publisher publishes disks as AMIs with one Config.
type Publisher struct{ cfg Config }

// New returns a Publisher for cfg. cfg.Digest is set per disk.
func New(cfg Config) *Publisher { return &Publisher{cfg: cfg} }

// Formats are the raw disk or a fixed VHD for the EBS direct APIs, or a
// streamOptimized VMDK for import-snapshot.
func (p *Publisher) Formats() []format.Format {
	if p.cfg.Method == ImportSnapshot {
		return []format.Format{format.VMDK}
	}
	return []format.Format{format.Raw, format.VHD}
}

// Publish publishes d. The architecture follows d's platform unless the
// Config says; a Config, platform and disk that disagree are refused
// before anything is uploaded.
func (p *Publisher) Publish(ctx context.Context, d export.Disk) (export.Result, error) {
	cfg := p.cfg
	cfg.Digest = d.Digest
	arch, err := export.CheckArch(ctx, Target, d)
	if err != nil {
		return nil, err
	}
	if err := cfg.setArchitecture(arch, "the image's platform is "+d.Platform); err != nil {
		return nil, err
	}
	return result.Of(Publish(ctx, d.Path, cfg))
}

// architectures are EC2's names for the platforms' architectures.
var architectures = map[string]string{"amd64": "x86_64", "arm64": "arm64", "386": "i386"}

// setArchitecture gives an empty Architecture the one of arch (amd64,
// arm64), and refuses one that differs; why says where arch comes from.
func (c *Config) setArchitecture(arch, why string) error {
	a, err := export.CloudArch("aws", c.Architecture, arch, why, architectures)
	if err != nil {
		return err
	}
	c.Architecture = a
	return nil
}
