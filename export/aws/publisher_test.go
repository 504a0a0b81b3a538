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
