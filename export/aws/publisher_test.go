package aws

import (
	"context"
	"io"
	"strings"
	"testing"

	"github.com/layerimg/layerimg/disk/format"
	"github.com/layerimg/layerimg/export"
	"github.com/layerimg/layerimg/export/internal/exporttest"
)

var _ export.Publisher = (*Publisher)(nil)

// Through export.Publisher: the raw disk is picked over the VHD, the
// architecture follows the platform, and the result is the manifest's JSON.
func TestPublisher(t *testing.T) {
	s := fake(t)
	raw := sparseDisk(t)
	cfg := testConfig(s, io.Discard)
	cfg.Digest = ""
	p := New(cfg)
	f, path, ok := export.Pick(p, map[format.Format]string{format.VHD: "/nope.vhd", format.Raw: raw, format.QCOW2: "/nope.qcow2"})
	if !ok || f != format.Raw || path != raw {
		t.Fatalf("Pick = %s %s %v", f, path, ok)
	}
	res, err := p.Publish(context.Background(), export.Disk{Path: path, Format: f, Platform: "linux/arm64", Digest: "sha256:" + strings.Repeat("ef", 32)})
	if err != nil {
		t.Fatal(err)
	}
	exporttest.Recorded(t, res, "aws", `"image_id":"ami-`)
	if ims := s.Images(); len(ims) != 1 || ims[0].Architecture != "arm64" {
		t.Errorf("images: %+v", ims)
	}
	if got := New(Config{Method: ImportSnapshot}).Formats(); len(got) != 1 || got[0] != format.VMDK {
		t.Errorf("import-snapshot Formats = %v", got)
	}
	// A failure before anything exists is a nil Result, not a typed nil.
	if res, err := p.Publish(context.Background(), export.Disk{Path: "/nonexistent.raw", Digest: "sha256:x"}); err == nil || res != nil {
		t.Errorf("Publish(missing) = %v, %v", res, err)
	}
}

// The AMI's architecture follows the disk (its root partition's GPT type)
// and the image's platform; a disk, platform and config that disagree are
// refused before any AWS call.
func TestPublisherArchitecture(t *testing.T) {
	dir := t.TempDir()
	disks := map[string]string{}
	for _, arch := range []string{"amd64", "arm64"} {
		disks[arch] = dir + "/" + arch + ".raw"
		exporttest.GPTDisk(t, disks[arch], 1<<30, arch)
	}
	for _, tc := range []struct {
		name, disk, platform, asked string
		viaCLI                      bool   // aws.Publish, as layerimg publish aws calls it
		want                        string // the AMI's architecture, or the error
	}{
		{name: "arm64", disk: "arm64", platform: "linux/arm64", want: "arm64"},
		{name: "amd64", disk: "amd64", platform: "linux/amd64", want: "x86_64"},
		{name: "arm64 asked", disk: "arm64", platform: "linux/arm64", asked: "arm64", want: "arm64"},
		{name: "arm64 disk, amd64 platform", disk: "arm64", platform: "linux/amd64", want: "is an arm64 disk"},
		{name: "amd64 disk, arm64 platform", disk: "amd64", platform: "linux/arm64", want: "is an amd64 disk"},
		{name: "x86_64 asked for arm64", disk: "arm64", platform: "linux/arm64", asked: "x86_64", want: "architecture x86_64 was asked for, but the image's platform is linux/arm64"},
		{name: "arm64 asked for amd64", disk: "amd64", platform: "linux/amd64", asked: "arm64", want: "architecture arm64 was asked for"},
		{name: "cli, disk says arm64", disk: "arm64", viaCLI: true, want: "arm64"},
		{name: "cli, disk says amd64", disk: "amd64", viaCLI: true, want: "x86_64"},
		{name: "cli, x86_64 asked for arm64 disk", disk: "arm64", viaCLI: true, asked: "x86_64", want: "is an arm64 disk (its root partition's GPT type)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := fake(t)
			cfg := testConfig(s, io.Discard)
			cfg.Architecture = tc.asked
			var err error
			if tc.viaCLI {
				_, err = Publish(context.Background(), disks[tc.disk], cfg)
			} else {
				cfg.Digest = ""
				_, err = New(cfg).Publish(context.Background(), export.Disk{Path: disks[tc.disk], Format: format.Raw, Platform: tc.platform,
					Digest: "sha256:" + strings.Repeat("cd", 32)})
			}
			if !strings.Contains(tc.want, " ") { // an architecture
				if err != nil {
					t.Fatal(err)
				}
				if ims := s.Images(); len(ims) != 1 || ims[0].Architecture != tc.want || ims[0].BootMode != "uefi" {
					t.Errorf("images: %+v, want one %s uefi", ims, tc.want)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want %q", err, tc.want)
			}
			if n := len(s.Calls()); n != 0 {
				t.Errorf("a refused publish made %d AWS calls", n)
			}
		})
	}
}
