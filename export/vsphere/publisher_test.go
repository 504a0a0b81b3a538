package vsphere

import (
	"context"
	"strings"
	"testing"

	"github.com/layerimg/layerimg/disk/format"
	"github.com/layerimg/layerimg/export"
	"github.com/layerimg/layerimg/export/internal/exporttest"
)

var _ export.Publisher = (*Publisher)(nil)

func TestPublisher(t *testing.T) {
	s, tp := sim(t)
	p := New(Config{URL: s.URL.String(), Thumbprint: tp, Cluster: "DC0_C0", Network: "VM Network", TemplateName: "web-publisher", SecureBoot: true})
	if _, _, ok := export.Pick(p, map[format.Format]string{format.Raw: "disk.raw"}); ok {
		t.Error("picked a raw disk for vSphere")
	}
	d := export.Disk{Path: streamVMDK(t), Format: format.VMDK, Digest: "sha256:publisher"}
	res := exporttest.NeedsGrub(t, p, d)
	exporttest.Recorded(t, res, "vsphere", `"template":"web-publisher"`)
}

// An arm64 disk is refused, before any vCenter call, unless a guest id is
// asked for (and then only with EFI); an amd64 disk goes as before.
func TestPublisherArchitecture(t *testing.T) {
	s, tp := sim(t)
	base := Config{URL: s.URL.String(), Thumbprint: tp, Cluster: "DC0_C0", Network: "VM Network"}
	vmdk := streamVMDK(t)
	for _, tc := range []struct {
		name, platform, guest, firmware string
		want                            string // in the error; "" publishes
	}{
		{"arm64, default guest", "linux/arm64", "", "", "the default guest id debian12_64Guest is an x86 guest"},
		{"arm64, bios", "linux/arm64", "other5xLinux64Guest", "bios", "boots only with firmware efi"},
		{"arm64, guest asked", "linux/arm64", "other5xLinux64Guest", "", ""},
		{"amd64", "linux/amd64", "", "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := base
			cfg.TemplateName, cfg.GuestID, cfg.Firmware = "arch-"+strings.ReplaceAll(tc.name, " ", "-"), tc.guest, tc.firmware
			cfg.TemplateName = strings.NewReplacer(",", "").Replace(cfg.TemplateName)
			res, err := New(cfg).Publish(context.Background(), export.Disk{Path: vmdk, Format: format.VMDK, Platform: tc.platform, Digest: "sha256:" + tc.name})
			if tc.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				exporttest.Recorded(t, res, "vsphere", `"template":"`+cfg.TemplateName+`"`)
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), tc.platform) {
				t.Fatalf("err = %v, want %q", err, tc.want)
			}
			if res != nil {
				t.Errorf("a refused publish returned %v", res)
			}
		})
	}
}
