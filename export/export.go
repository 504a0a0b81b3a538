// Package export is the last stage: it takes a finished disk and makes a
// cloud resource (or a registry artifact) of it. Each target is a package
// (aws, azure, vsphere) with a Publisher; the orchestrator picks the disk
// file the publisher accepts best, calls Publish and records the Result in
// the manifest as it is.
package export

import (
	"context"

	"github.com/layerimg/layerimg/disk/format"
)

// Disk is a finished disk file and what the publisher needs to know of it.
type Disk struct {
	Path   string
	Format format.Format
	// Boot is the disk's boot layout (systemd-boot, grub or none): Secure
	// Boot and Trusted Launch need grub.
	Boot string
	// Platform is the image's OS/architecture, such as linux/arm64.
	Platform string
	// Digest names the disk (sha256:...): resources are tagged with it, so
	// that the same disk published again finds them.
	Digest string
}

// Result is what a publish made or found. Implementations marshal to the
// JSON the manifest records under Target().
type Result interface {
	Target() string
}

// Publisher publishes finished disks to one target.
type Publisher interface {
	// Formats lists the disk formats Publish takes, best first.
	Formats() []format.Format
	// Publish makes (or finds) the target's resources for d. A Result can
	// come back with an error when part of the work is done (an image made,
	// a copy failed), so that the caller can say what exists.
	Publish(ctx context.Context, d Disk) (Result, error)
}

// Pick chooses, from the files at hand, the one p takes best.
func Pick(p Publisher, files map[format.Format]string) (format.Format, string, bool) {
	for _, f := range p.Formats() {
		if path, ok := files[f]; ok {
			return f, path, true
		}
	}
	return "", "", false
}
