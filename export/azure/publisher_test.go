package azure

import (
	"io"
	"strings"
	"testing"

	"github.com/layerimg/layerimg/disk/format"
	"github.com/layerimg/layerimg/export"
	"github.com/layerimg/layerimg/export/internal/exporttest"
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
	d := export.Disk{Path: rawDisk(t), Format: format.Raw, Digest: "sha256:" + strings.Repeat("12", 32)}
	res := exporttest.NeedsGrub(t, p, d)
	exporttest.Recorded(t, res, "azure", `"gallery_image_version_id":"/subscriptions/`)
}
