package azure

import (
	"context"
	"encoding/json"
	"io"
	"strings"
	"testing"

	"github.com/layerimg/layerimg/disk/format"
	"github.com/layerimg/layerimg/export"
)

var _ export.Publisher = (*Publisher)(nil)

// Through export.Publisher: the disk's boot layout and digest reach the
// config (TrustedLaunch needs grub), and the result is the manifest's JSON.
func TestPublisher(t *testing.T) {
	s := fake(t)
	cfg := testConfig(s, io.Discard)
	cfg.ImageName, cfg.SecurityType = "", "TrustedLaunch"
	cfg.Gallery = &Gallery{Name: "gal", ImageDefinition: "web", Version: "1.0.0"}
	p := New(cfg)
	if got := p.Formats(); len(got) != 2 || got[0] != format.VHD {
		t.Errorf("Formats = %v", got)
	}
	d := export.Disk{Path: rawDisk(t), Format: format.Raw, Boot: "systemd-boot", Digest: "sha256:" + strings.Repeat("12", 32)}
	if res, err := p.Publish(context.Background(), d); err == nil || res != nil || !strings.Contains(err.Error(), "grub") {
		t.Fatalf("TrustedLaunch of a systemd-boot disk: %v, %v", res, err)
	}
	d.Boot = "grub"
	res, err := p.Publish(context.Background(), d)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(res)
	if res.Target() != "azure" || !strings.Contains(string(b), `"gallery_image_version_id":"/subscriptions/`) {
		t.Errorf("%s: %s", res.Target(), b)
	}
}
