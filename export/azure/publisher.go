package azure

import (
	"context"

	"github.com/layerimg/layerimg/disk/format"
	"github.com/layerimg/layerimg/export"
	"github.com/layerimg/layerimg/export/internal/result"
)

// Target names this publisher in recipes, the CLI and manifests.
const Target = "azure"

// Target implements export.Result.
func (*Result) Target() string { return Target }

// Publisher uploads disks to managed disks and makes images with one Config.
type Publisher struct{ cfg Config }

// New returns a Publisher for cfg. cfg.Digest and cfg.BootMode are set per
// disk.
func New(cfg Config) *Publisher { return &Publisher{cfg: cfg} }

// Formats: Azure takes fixed VHDs; a raw disk is streamed as one.
func (p *Publisher) Formats() []format.Format { return []format.Format{format.VHD, format.Raw} }

// Publish publishes d.
// The architecture follows d's platform; a Config, platform and disk that
// disagree are refused before anything is uploaded.
func (p *Publisher) Publish(ctx context.Context, d export.Disk) (export.Result, error) {
	cfg := p.cfg
	cfg.Digest, cfg.BootMode = d.Digest, d.Boot
	arch, err := export.CheckArch(ctx, Target, d)
	if err != nil {
		return nil, err
	}
	if err := cfg.setArchitecture(arch, "the image's platform is "+d.Platform); err != nil {
		return nil, err
	}
	return result.Of(Publish(ctx, d.Path, cfg))
}
