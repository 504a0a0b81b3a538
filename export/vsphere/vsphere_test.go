package vsphere

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vmware/govmomi"
	"github.com/vmware/govmomi/find"
	"github.com/vmware/govmomi/object"
	"github.com/vmware/govmomi/simulator"
	"github.com/vmware/govmomi/vapi/library"
	"github.com/vmware/govmomi/vapi/rest"
	_ "github.com/vmware/govmomi/vapi/simulator"
	"github.com/vmware/govmomi/vim25/mo"
	"github.com/vmware/govmomi/vim25/soap"
	"github.com/vmware/govmomi/vim25/types"

	"github.com/layerimg/layerimg/disk/format"
	"github.com/layerimg/layerimg/export/internal/exporttest"
)

// sim starts govmomi's in-process vCenter and returns it with its URL
// (credentials included) and certificate thumbprint.
func sim(t *testing.T) (*simulator.Server, string) {
	t.Helper()
	model := simulator.VPX()
	if err := model.Create(); err != nil {
		t.Fatal(err)
	}
	model.Service.TLS = new(tls.Config)    // a self-signed certificate, as a real vCenter's often is
	model.Service.RegisterEndpoints = true // the content library (vAPI)
	s := model.Service.NewServer()
	t.Cleanup(func() { s.Close(); model.Remove() })
	return s, soap.ThumbprintSHA1(s.Certificate())
}

// streamVMDK makes a small streamOptimized VMDK with data in it.
func streamVMDK(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	raw := filepath.Join(dir, "disk.raw")
	exporttest.SparseDisk(t, raw, 64<<20, map[int64][]byte{1 << 20: []byte(strings.Repeat("layerimg", 5000))})
	out := filepath.Join(dir, "disk.vmdk")
	if err := format.Convert(context.Background(), raw, out, format.VMDK, format.Stamp{}); err != nil {
		t.Fatal(err)
	}
	return out
}

// nfcProxy is a TLS proxy in front of the simulator that keeps the sha256
// of every NFC upload (the simulator itself throws the bytes away) and can
// be told to fail them.
type nfcProxy struct {
	mu      sync.Mutex
	sums    []string
	failNFC bool
	stall   chan struct{} // when set, NFC uploads wait on it
	url     string
}

func newNFCProxy(t *testing.T, target *url.URL) *nfcProxy {
	t.Helper()
	p := &nfcProxy{}
	rp := httputil.NewSingleHostReverseProxy(&url.URL{Scheme: "https", Host: target.Host})
	rp.Transport = &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.URL.Path, "/nfc/") && (r.Method == http.MethodPost || r.Method == http.MethodPut) {
			p.mu.Lock()
			fail, stall := p.failNFC, p.stall
			p.mu.Unlock()
			if stall != nil {
				select {
				case <-stall:
				case <-r.Context().Done():
					return
				}
			}
			if fail {
				io.CopyN(io.Discard, r.Body, 4096)
				http.Error(w, "injected NFC failure", http.StatusInternalServerError)
				return
			}
			h := sha256.New()
			body, _ := io.ReadAll(io.TeeReader(r.Body, h))
			p.mu.Lock()
			p.sums = append(p.sums, string(h.Sum(nil)))
			p.mu.Unlock()
			r.Body = io.NopCloser(strings.NewReader(string(body)))
			r.ContentLength = int64(len(body))
		}
		rp.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	u, _ := url.Parse(srv.URL)
	u.User = target.User
	u.Path = "/sdk"
	p.url = u.String()
	// A vCenter names itself in lease URLs: make the simulator name the
	// proxy, so that the uploads pass through it.
	ctx := context.Background()
	c, err := govmomi.NewClient(ctx, target, true)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Logout(ctx)
	om := object.NewOptionManager(c.Client, *c.Client.ServiceContent.Setting)
	if err := om.Update(ctx, []types.BaseOptionValue{&types.OptionValue{Key: "vcsim.server.url", Value: p.url}}); err != nil {
		t.Fatal(err)
	}
	return p
}

type vmInfo struct {
	mo.VirtualMachine
}

func lookupVM(t *testing.T, s *simulator.Server, name string) *mo.VirtualMachine {
	t.Helper()
	ctx := context.Background()
	c, err := govmomi.NewClient(ctx, s.URL, true)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Logout(ctx)
	f := find.NewFinder(c.Client, true)
	dc, _ := f.DefaultDatacenter(ctx)
	f.SetDatacenter(dc)
	vm, err := f.VirtualMachine(ctx, name)
	if err != nil {
		return nil
	}
	var m mo.VirtualMachine
	if err := vm.Properties(ctx, vm.Reference(), []string{"name", "config"}, &m); err != nil {
		t.Fatal(err)
	}
	return &m
}

func countVMs(t *testing.T, s *simulator.Server) (names []string) {
	t.Helper()
	ctx := context.Background()
	c, _ := govmomi.NewClient(ctx, s.URL, true)
	defer c.Logout(ctx)
	f := find.NewFinder(c.Client, true)
	dc, _ := f.DefaultDatacenter(ctx)
	f.SetDatacenter(dc)
	vms, _ := f.VirtualMachineList(ctx, "*")
	for _, v := range vms {
		names = append(names, v.Name())
	}
	return names
}

func digestOf(m *mo.VirtualMachine) string {
	for _, o := range m.Config.ExtraConfig {
		if ov := o.GetOptionValue(); ov.Key == DigestKey {
			return ov.Value.(string)
		}
	}
	return ""
}

func TestPublishTemplate(t *testing.T) {
	s, tp := sim(t)
	disk := streamVMDK(t)
	want, _ := os.ReadFile(disk)
	wantSum := sha256.Sum256(want)
	proxy := newNFCProxy(t, s.URL)
	ctx := context.Background()
	for _, ctrl := range []string{"pvscsi", "nvme"} {
		t.Run(ctrl, func(t *testing.T) {
			name := "web-" + ctrl
			res, err := Publish(ctx, disk, Config{URL: proxy.url, Insecure: true, Cluster: "DC0_C0", Network: "VM Network", TemplateName: name, CPUs: 4, MemoryMB: 4096,
				DiskController: ctrl, Annotation: "built by layerimg", Digest: "sha256:" + ctrl, BootMode: "grub", SecureBoot: true, SBOM: "sha256:sbom-" + ctrl})
			if err != nil {
				t.Fatal(err)
			}
			if res.Existing || res.Template != name {
				t.Errorf("result %+v", res)
			}
			m := lookupVM(t, s, name)
			if m == nil {
				t.Fatal("template not found")
			}
			cfg := m.Config
			if !cfg.Template || cfg.Firmware != "efi" || cfg.Hardware.NumCPU != 4 || cfg.Hardware.MemoryMB != 4096 || cfg.Annotation != "built by layerimg" {
				t.Errorf("template=%v firmware=%s cpus=%d mem=%d annotation=%q", cfg.Template, cfg.Firmware, cfg.Hardware.NumCPU, cfg.Hardware.MemoryMB, cfg.Annotation)
			}
			if cfg.BootOptions == nil || cfg.BootOptions.EfiSecureBootEnabled == nil || !*cfg.BootOptions.EfiSecureBootEnabled {
				t.Error("secure boot not enabled")
			}
			if sbom := extraConfig(m, SBOMKey); sbom != "sha256:sbom-"+ctrl {
				t.Errorf("%s = %q", SBOMKey, sbom)
			}
			var nic bool
			controllers := map[int32]string{}
			var diskOn []int32
			for _, d := range cfg.Hardware.Device {
				switch dev := d.(type) {
				case *types.VirtualVmxnet3:
					nic = true
				case *types.ParaVirtualSCSIController:
					controllers[dev.Key] = "pvscsi"
				case *types.VirtualNVMEController:
					controllers[dev.Key] = "nvme"
				case *types.VirtualDisk:
					diskOn = append(diskOn, dev.ControllerKey)
				}
			}
			if !nic || len(diskOn) != 1 || controllers[diskOn[0]] != ctrl {
				t.Errorf("vmxnet3 %v; disks on controllers %v of %v, want %s", nic, diskOn, controllers, ctrl)
			}
			if digestOf(m) != "sha256:"+ctrl {
				t.Errorf("digest %q", digestOf(m))
			}
		})
	}
	// The bytes sent over the lease are the VMDK, byte for byte.
	proxy.mu.Lock()
	sums := append([]string(nil), proxy.sums...)
	proxy.mu.Unlock()
	if len(sums) != 2 || sums[0] != string(wantSum[:]) || sums[1] != string(wantSum[:]) {
		t.Errorf("%d NFC uploads; equal to the VMDK: %v", len(sums), len(sums) > 0 && sums[0] == string(wantSum[:]))
	}
	// The same digest again returns the template already there.
	before := countVMs(t, s)
	res, err := Publish(ctx, disk, Config{URL: s.URL.String(), Thumbprint: tp, Cluster: "DC0_C0", Network: "VM Network", TemplateName: "another-name", Digest: "sha256:pvscsi"})
	if err != nil || !res.Existing || res.Template != "web-pvscsi" {
		t.Errorf("republish: %+v %v", res, err)
	}
	if after := countVMs(t, s); len(after) != len(before) {
		t.Errorf("republishing made a VM: %v -> %v", before, after)
	}
	// A name in use without replace_existing is refused.
	if _, err := Publish(ctx, disk, Config{URL: s.URL.String(), Thumbprint: tp, Cluster: "DC0_C0", Network: "VM Network", TemplateName: "web-pvscsi", Digest: "sha256:new"}); err == nil || !strings.Contains(err.Error(), "replace_existing") {
		t.Errorf("name in use: %v", err)
	}
}

func TestReplaceExistingSurvivesFailure(t *testing.T) {
	s, _ := sim(t)
	disk := streamVMDK(t)
	proxy := newNFCProxy(t, s.URL)
	ctx := context.Background()
	cfg := Config{URL: proxy.url, Insecure: true, Cluster: "DC0_C0", Network: "VM Network", TemplateName: "golden", Digest: "sha256:v1"}
	if _, err := Publish(ctx, disk, cfg); err != nil {
		t.Fatal(err)
	}
	before := countVMs(t, s)
	// v2 fails midway, in the upload: the old template keeps its name, and
	// neither the half-imported VM nor the renamed-aside name is left.
	proxy.failNFC = true
	cfg.Digest, cfg.ReplaceExisting = "sha256:v2", true
	_, err := Publish(ctx, disk, cfg)
	if err == nil || !strings.Contains(err.Error(), "NFC upload") {
		t.Fatalf("injected failure: %v", err)
	}
	m := lookupVM(t, s, "golden")
	if m == nil || digestOf(m) != "sha256:v1" || !m.Config.Template {
		t.Fatalf("the old template did not survive: %+v", m)
	}
	if after := countVMs(t, s); strings.Join(after, ",") != strings.Join(before, ",") {
		t.Errorf("VMs before %v, after the failed replace %v", before, after)
	}
	// v2 again, working: it takes the name and the old one is gone.
	proxy.failNFC = false
	if _, err := Publish(ctx, disk, cfg); err != nil {
		t.Fatal(err)
	}
	if m := lookupVM(t, s, "golden"); m == nil || digestOf(m) != "sha256:v2" {
		t.Errorf("after the replace: %+v", m)
	}
	for _, n := range countVMs(t, s) {
		if strings.Contains(n, "replaced") {
			t.Errorf("old template %s left behind", n)
		}
	}
}

// TestInterruptCleansUp cancels a publish while the disk uploads: the lease
// is aborted and the half-imported VM deleted.
func TestInterruptCleansUp(t *testing.T) {
	s, _ := sim(t)
	disk := streamVMDK(t)
	proxy := newNFCProxy(t, s.URL)
	before := countVMs(t, s)
	stall := make(chan struct{})
	defer close(stall)
	proxy.mu.Lock()
	proxy.stall = stall
	proxy.mu.Unlock()
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		time.Sleep(500 * time.Millisecond)
		cancel()
	}()
	_, err := Publish(ctx, disk, Config{URL: proxy.url, Insecure: true, Cluster: "DC0_C0", Network: "VM Network", TemplateName: "interrupted", Digest: "sha256:int"})
	if err == nil {
		t.Fatal("an interrupted publish succeeded")
	}
	if after := countVMs(t, s); strings.Join(after, ",") != strings.Join(before, ",") {
		t.Errorf("VMs before %v, after the interrupt %v", before, after)
	}
}

func TestUnknownCertificate(t *testing.T) {
	s, tp := sim(t)
	disk := streamVMDK(t)
	_, err := Publish(context.Background(), disk, Config{URL: s.URL.String(), TemplateName: "x"})
	var ce *CertError
	if !errors.As(err, &ce) || ce.Thumbprint != tp || !strings.Contains(err.Error(), tp) {
		t.Fatalf("err = %v; want the thumbprint %s", err, tp)
	}
	// Pinned, it connects.
	if _, err := Publish(context.Background(), disk, Config{URL: s.URL.String(), Thumbprint: tp, ResourcePool: "DC0_C0/Resources", Network: "VM Network", TemplateName: "x", Digest: "sha256:x"}); err != nil {
		t.Errorf("with the thumbprint pinned: %v", err)
	}
}

func TestRefusals(t *testing.T) {
	disk := streamVMDK(t)
	ctx := context.Background()
	for _, tc := range []struct {
		cfg  Config
		want string
	}{
		{Config{URL: "x", TemplateName: "t", DiskController: "lsilogic"}, "no LSI Logic or AHCI driver"},
		{Config{URL: "x", TemplateName: "t", SecureBoot: true, BootMode: "systemd-boot"}, "secure_boot needs the disk's boot: grub"},
		{Config{URL: "x"}, "template_name is required"},
		{Config{TemplateName: "t"}, "no URL"},
	} {
		if _, err := Publish(ctx, disk, tc.cfg); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: %v", tc.cfg, err)
		}
	}
	raw := filepath.Join(t.TempDir(), "x.vmdk")
	os.WriteFile(raw, make([]byte, 4096), 0o644)
	if _, err := Publish(ctx, raw, Config{URL: "x", TemplateName: "t"}); err == nil || !strings.Contains(err.Error(), "not a VMDK") {
		t.Errorf("not a vmdk: %v", err)
	}
}

func TestFromEnv(t *testing.T) {
	t.Setenv("GOVC_URL", "vc.example")
	t.Setenv("GOVC_DATASTORE", "ds1")
	t.Setenv("GOVC_INSECURE", "true")
	c := Config{Datastore: "mine"}.FromEnv()
	if c.URL != "vc.example" || c.Datastore != "mine" || !c.Insecure {
		t.Errorf("%+v", c)
	}
}

// TestContentLibrary stores the template in a content library too. The
// simulator keeps library files on its datastore: it reads a VMDK's header
// and descriptor off the stream, writes a descriptor of its own as
// disk.vmdk, and stores the rest of the bytes as they came in
// disk-flat.vmdk, which is compared here with the end of the VMDK.
func TestContentLibrary(t *testing.T) {
	s, tp := sim(t)
	disk := streamVMDK(t)
	ctx := context.Background()
	c, err := govmomi.NewClient(ctx, s.URL, true)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Logout(ctx)
	rc := rest.NewClient(c.Client)
	if err := rc.Login(ctx, s.URL.User); err != nil {
		t.Fatal(err)
	}
	f := find.NewFinder(c.Client, true)
	dc, _ := f.DefaultDatacenter(ctx)
	f.SetDatacenter(dc)
	ds, _ := f.Datastore(ctx, "LocalDS_0")
	m := library.NewManager(rc)
	if _, err := m.CreateLibrary(ctx, library.Library{Name: "golden", Type: "LOCAL",
		Storage: []library.StorageBacking{{DatastoreID: ds.Reference().Value, Type: "DATASTORE"}}}); err != nil {
		t.Fatal(err)
	}
	res, err := Publish(ctx, disk, Config{URL: s.URL.String(), Thumbprint: tp, Cluster: "DC0_C0", Network: "VM Network",
		TemplateName: "web-lib", Digest: "sha256:lib", ContentLibrary: "golden"})
	if err != nil {
		t.Fatal(err)
	}
	if res.LibraryItem == "" {
		t.Fatal("no library item")
	}
	storage, err := m.ListLibraryItemStorage(ctx, res.LibraryItem)
	if err != nil {
		t.Fatal(err)
	}
	want, _ := os.ReadFile(disk)
	found := false
	for _, st := range storage {
		if st.Name != "disk.vmdk" {
			continue
		}
		for _, uri := range st.StorageURIs {
			u, err := url.Parse(uri)
			if err != nil {
				continue
			}
			got, err := os.ReadFile(strings.TrimSuffix(u.Path, ".vmdk") + "-flat.vmdk")
			if err != nil {
				t.Errorf("%s: %v", uri, err)
				continue
			}
			found = true
			if len(got) < len(want)-64<<10 || string(got) != string(want[len(want)-len(got):]) {
				t.Errorf("the library holds %d bytes that are not the end of the %d-byte VMDK", len(got), len(want))
			}
		}
	}
	if !found {
		t.Errorf("disk.vmdk not found in the library item's storage: %+v", storage)
	}
	if _, err := Publish(ctx, disk, Config{URL: s.URL.String(), Thumbprint: tp, Cluster: "DC0_C0", Network: "VM Network",
		TemplateName: "web-nolib", Digest: "sha256:nolib", ContentLibrary: "missing"}); err == nil || !strings.Contains(err.Error(), `content library "missing"`) {
		t.Errorf("a missing library: %v", err)
	}
}

func extraConfig(m *mo.VirtualMachine, key string) string {
	for _, o := range m.Config.ExtraConfig {
		if ov := o.GetOptionValue(); ov.Key == key {
			return ov.Value.(string)
		}
	}
	return ""
}
