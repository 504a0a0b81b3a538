package export_test

import (
	"context"
	"path/filepath"
	"strings"
	"testing"

	"github.com/layerimg/layerimg/disk/format"
	"github.com/layerimg/layerimg/export"
	"github.com/layerimg/layerimg/export/internal/exporttest"
)

// A disk's architecture is its root partition's GPT type; a platform that
// says otherwise is refused, naming the disk and both.
func TestDiskArch(t *testing.T) {
	dir := t.TempDir()
	for _, arch := range []string{"amd64", "arm64"} {
		p := filepath.Join(dir, arch+".raw")
		exporttest.GPTDisk(t, p, 200<<20, arch)
		got, err := export.DiskArch(context.Background(), p)
		if err != nil || got != arch {
			t.Errorf("%s disk: DiskArch = %q, %v", arch, got, err)
		}
		for _, platform := range []string{"linux/amd64", "linux/arm64", ""} {
			a, err := export.CheckArch(context.Background(), "aws", export.Disk{Path: p, Format: format.Raw, Platform: platform})
			switch {
			case platform == "" && a != arch, platform == "linux/"+arch && a != arch:
				t.Errorf("%s disk, platform %q: %q, %v", arch, platform, a, err)
			case platform != "" && platform != "linux/"+arch:
				if err == nil || !strings.Contains(err.Error(), p) || !strings.Contains(err.Error(), "is an "+arch+" disk") || !strings.Contains(err.Error(), platform) {
					t.Errorf("%s disk, platform %s: error %v", arch, platform, err)
				}
			}
		}
		// A VMDK keeps its sectors in grains: the platform alone says.
		if a, err := export.CheckArch(context.Background(), "aws", export.Disk{Path: p, Format: format.VMDK, Platform: "linux/riscv64"}); err != nil || a != "riscv64" {
			t.Errorf("vmdk: %q, %v", a, err)
		}
	}
	plain := filepath.Join(dir, "plain.raw")
	exporttest.SparseDisk(t, plain, 1<<20, map[int64][]byte{0: []byte("no GPT")})
	if a, err := export.DiskArch(context.Background(), plain); err != nil || a != "" {
		t.Errorf("disk without GPT: %q, %v", a, err)
	}
}

func TestCloudArch(t *testing.T) {
	names := map[string]string{"amd64": "x86_64", "arm64": "arm64"}
	for _, tc := range []struct {
		asked, arch, want, err string
	}{
		{"", "", "", ""},
		{"x86_64", "", "x86_64", ""},
		{"", "arm64", "arm64", ""},
		{"arm64", "arm64", "arm64", ""},
		{"x86_64", "arm64", "", "architecture x86_64 was asked for, but the disk says so: an image of this disk must say arm64"},
		{"", "riscv64", "", "there are no riscv64 images"},
	} {
		got, err := export.CloudArch("aws", tc.asked, tc.arch, "the disk says so", names)
		if got != tc.want || (err == nil) != (tc.err == "") || (err != nil && !strings.Contains(err.Error(), tc.err)) {
			t.Errorf("CloudArch(%q, %q) = %q, %v; want %q, %q", tc.asked, tc.arch, got, err, tc.want, tc.err)
		}
	}
}
