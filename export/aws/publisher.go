package aws

import (
	"context"
	"strings"

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
// Config says.
func (p *Publisher) Publish(ctx context.Context, d export.Disk) (export.Result, error) {
	cfg := p.cfg
	cfg.Digest = d.Digest
	if cfg.Architecture == "" && strings.HasSuffix(d.Platform, "/arm64") {
		cfg.Architecture = "arm64"
	}
	return result.Of(Publish(ctx, d.Path, cfg))
}
