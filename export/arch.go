package export

import (
	"context"
	"errors"
	"fmt"

	"github.com/layerimg/layerimg/disk"
	"github.com/layerimg/layerimg/disk/format"
)

// Arch is the architecture of a platform (linux/arm64: arm64), "" for none.
func Arch(platform string) string { return disk.ArchOfPlatform(platform) }

// DiskArch is the architecture a raw disk or fixed VHD is for, read from
// its GPT: the type of its root partition, as layerimg sets it
// (disk.ArchOf). It is "" for other formats, whose publishers check them
// on their own terms, and for a disk whose partitions do not say.
func DiskArch(ctx context.Context, path string) (string, error) {
	if f, err := format.Sniff(path); err != nil || (f != format.Raw && f != format.VHD) {
		return "", nil
	}
	a, err := disk.ArchOf(ctx, path)
	if errors.Is(err, disk.ErrNoArch) {
		return "", nil
	}
	return a, err
}

// CheckArch refuses a disk whose GPT says another architecture than the
// image's platform, and returns the architecture the disk is for (either
// one; "" when neither says). target names the publisher in the error.
func CheckArch(ctx context.Context, target string, d Disk) (string, error) {
	want := Arch(d.Platform)
	got := ""
	var err error
	if d.Format == format.Raw || d.Format == format.VHD {
		got, err = DiskArch(ctx, d.Path)
	}
	if err != nil {
		return "", fmt.Errorf("%s: %w", target, err)
	}
	if want != "" && got != "" && want != got {
		return "", fmt.Errorf("%s: %s is an %s disk (its root partition's GPT type), but the image's platform is %s", target, d.Path, got, d.Platform)
	}
	if want == "" {
		return got, nil
	}
	return want, nil
}

// CloudArch is the name a cloud gives arch (amd64, arm64) among names,
// checked against the one the user asked for ("" for none): asked when
// they agree, names[arch] when nothing was asked. cloud and why (where
// arch comes from) word the errors. An empty arch leaves asked as it is.
func CloudArch(cloud, asked, arch, why string, names map[string]string) (string, error) {
	if arch == "" {
		return asked, nil
	}
	a, ok := names[arch]
	if !ok {
		return "", fmt.Errorf("%s: there are no %s images (%s)", cloud, arch, why)
	}
	if asked != "" && asked != a {
		return "", fmt.Errorf("%s: architecture %s was asked for, but %s: an image of this disk must say %s", cloud, asked, why, a)
	}
	return a, nil
}
