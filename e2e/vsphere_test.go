package e2e_test

import (
	"context"
	"crypto/tls"
	"fmt"
	"testing"

	"github.com/vmware/govmomi/simulator"
	"github.com/vmware/govmomi/vim25/soap"

	"github.com/layerimg/layerimg"
	"github.com/layerimg/layerimg/export/vsphere"
)

// TestBuildPublishVSphere runs build --publish vsphere against govmomi's
// simulator: the raw disk is converted to a VMDK on the way, the template is
// made, and a second build of the same disk finds it instead of importing.
func TestBuildPublishVSphere(t *testing.T) {
	needRoot(t)
	model := simulator.VPX()
	if err := model.Create(); err != nil {
		t.Fatal(err)
	}
	model.Service.TLS = new(tls.Config)
	s := model.Service.NewServer()
	defer func() { s.Close(); model.Remove() }()
	pass, _ := s.URL.User.Password()
	recipe := fixture(t, "story.yaml") + fmt.Sprintf(`publish:
  vsphere:
    url: %s
    username: %s
    thumbprint: %s
    cluster: DC0_C0
    network: VM Network
    template_name: story-${LAST}
    cpus: 2
    memory_mb: 1024
`, s.URL.Host, s.URL.User.Username(), soap.ThumbprintSHA1(s.Certificate()))
	dir := busyboxContext(t, recipe, map[string]string{"conf/motd": "hello\n"})
	t.Setenv("GOVC_PASSWORD", pass) // the password stays out of the recipe
	o := layerimg.Options{CacheDir: t.TempDir(), DiskDir: t.TempDir(), Formats: []string{"raw"}, Publish: []string{"vsphere"}}
	res := build(t, load(t, dir, nil), o)
	r, ok := res.Published["vsphere"].(*vsphere.Result)
	if !ok || r.Template != "story-one" || r.Existing {
		t.Fatalf("published %+v", res.Published)
	}
	res = build(t, load(t, dir, nil), o)
	if r2 := res.Published["vsphere"].(*vsphere.Result); !r2.Existing || r2.MoRef != r.MoRef {
		t.Errorf("second publish %+v, first %+v", r2, r)
	}
	_, err := layerimg.Build(context.Background(), load(t, dir, nil), layerimg.Options{CacheDir: o.CacheDir, Publish: []string{"vsphere"}})
	if err == nil {
		t.Error("--publish without -o succeeded")
	}
}
