package vsphere

import (
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
