package vsphere

import (
	"context"
	"fmt"

	"github.com/layerimg/layerimg/disk/format"
	"github.com/layerimg/layerimg/export"
	"github.com/layerimg/layerimg/export/internal/result"
)

// Target names this publisher in recipes, the CLI and manifests.
const Target = "vsphere"

// Target implements export.Result.
func (*Result) Target() string { return Target }

// Publisher imports disks as vSphere templates with one Config.
type Publisher struct{ cfg Config }

// New returns a Publisher for cfg. cfg.Digest and cfg.BootMode are set per
// disk.
func New(cfg Config) *Publisher { return &Publisher{cfg: cfg} }

// Formats: the OVF import takes only a streamOptimized VMDK.
func (p *Publisher) Formats() []format.Format { return []format.Format{format.VMDK} }

// Publish publishes d. A disk for another architecture than x86 is
// refused unless the Config names its guest id (see checkArch).
func (p *Publisher) Publish(ctx context.Context, d export.Disk) (export.Result, error) {
	cfg := p.cfg
	cfg.Digest, cfg.BootMode = d.Digest, d.Boot
	if err := cfg.checkArch(ctx, d); err != nil {
		return nil, err
	}
	return result.Of(Publish(ctx, d.Path, cfg))
}

// checkArch refuses a disk for a non-x86 architecture when no guest id was
// asked for: the default (debian12_64Guest) is an x86 guest, and vSphere
// runs arm64 guests only on ESXi-Arm hosts, whose guest ids layerimg cannot
// know (vSphere API 9.1 tells a guest id's architecture only through the
// host's GuestOsDescriptor). Such a guest boots only with EFI firmware.
func (c *Config) checkArch(ctx context.Context, d export.Disk) error {
	arch, err := export.CheckArch(ctx, Target, d)
	if err != nil {
		return err
	}
	if arch == "" || arch == "amd64" || arch == "386" {
		return nil
	}
	switch {
	case c.GuestID == "":
		return fmt.Errorf("vsphere: this disk is for %s, and the default guest id %s is an x86 guest; vSphere runs %s guests only on ESXi-Arm: set publish.vsphere.guest_id to the guest id your ESXi-Arm host offers for this OS to publish there", d.Platform, DefaultConfig().GuestID, arch)
	case c.Firmware == "bios":
		return fmt.Errorf("vsphere: this disk is for %s, which boots only with firmware efi, not bios", d.Platform)
	}
	c.Firmware = "efi"
	return nil
}
