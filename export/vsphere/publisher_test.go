package vsphere

import (
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/layerimg/layerimg/disk/format"
	"github.com/layerimg/layerimg/export"
)

var _ export.Publisher = (*Publisher)(nil)

func TestPublisher(t *testing.T) {
	s, tp := sim(t)
	p := New(Config{URL: s.URL.String(), Thumbprint: tp, Cluster: "DC0_C0", Network: "VM Network", TemplateName: "web-publisher", SecureBoot: true})
	if _, _, ok := export.Pick(p, map[format.Format]string{format.Raw: "disk.raw"}); ok {
		t.Error("picked a raw disk for vSphere")
	}
	d := export.Disk{Path: streamVMDK(t), Format: format.VMDK, Boot: "systemd-boot", Digest: "sha256:publisher"}
	if _, err := p.Publish(context.Background(), d); err == nil || !strings.Contains(err.Error(), "grub") {
		t.Fatalf("secure boot of a systemd-boot disk: %v", err)
	}
	d.Boot = "grub"
	res, err := p.Publish(context.Background(), d)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(res)
	if res.Target() != "vsphere" || !strings.Contains(string(b), `"template":"web-publisher"`) {
		t.Errorf("%s: %s", res.Target(), b)
	}
}
