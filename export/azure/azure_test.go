package azure

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/compute/armcompute/v6"

	"github.com/layerimg/layerimg/disk/format"
	"github.com/layerimg/layerimg/disk/vhd"
	"github.com/layerimg/layerimg/export"
	"github.com/layerimg/layerimg/export/internal/exporttest"
	"github.com/layerimg/layerimg/internal/armfake"
	"github.com/layerimg/layerimg/internal/azurite"
)

const sub = "00000000-1111-2222-3333-444444444444"

// storage is the package's one Azurite, started by TestMain.
var storage *azurite.Server

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "azurite-")
	if err != nil {
		panic(err)
	}
	storage, err = azurite.Start(context.Background(), dir)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	code := m.Run()
	storage.Stop()
	os.RemoveAll(dir)
	os.Exit(code)
}

type token struct{}

func (token) GetToken(context.Context, policy.TokenRequestOptions) (azcore.AccessToken, error) {
	return azcore.AccessToken{Token: armfake.Token, ExpiresOn: time.Now().Add(time.Hour)}, nil
}

func fake(t *testing.T) *armfake.Server { return fakeB(t) }

func fakeB(t testing.TB) *armfake.Server {
	s := armfake.New(sub, storage.URL, azurite.Account, azurite.Key)
	t.Cleanup(s.Close)
	s.AddGallery("rg", "gal", "westeurope")
	return s
}

func testConfig(s *armfake.Server, log io.Writer) Config {
	return Config{SubscriptionID: sub, ResourceGroup: "rg", Location: "westeurope", ImageName: "web-1.4",
		Digest: "sha256:" + strings.Repeat("cd", 32), Recipe: "web", BootMode: "systemd-boot",
		Credential: token{}, Endpoint: s.URL, HTTPClient: s.Client(), PollInterval: 10 * time.Millisecond,
		Parallel: 4, Log: slog.New(slog.NewTextHandler(log, nil))}
}

// rawDisk is a sparse raw disk of 40 MiB + 4 KiB (not a whole MiB, so the
// VHD pads it) with data that starts and ends mid-sector, a run longer than
// 4 MiB, a single sector alone, and zeros between.
func rawDisk(t *testing.T) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "disk.raw")
	const size = 40<<20 + 4096
	exporttest.SparseDisk(t, p, size, map[int64][]byte{
		0:             bytes.Repeat([]byte{0xEE}, 4096),
		8<<20 + 100:   bytes.Repeat([]byte("layerimg"), (6<<20)/8), // crosses 4 MiB boundaries; starts mid-sector
		20 << 20:      {1},
		20<<20 + 1536: {2}, // one zero sector between two single sectors
		size - 512:    bytes.Repeat([]byte{9}, 512),
	})
	return p
}

func mutating(calls []armfake.Call) []string {
	var out []string
	for _, c := range calls {
		if c.Method != "GET" {
			out = append(out, c.Op)
		}
	}
	return out
}

// download fetches a disk's blob from Azurite into a file.
func download(t *testing.T, s *armfake.Server, d armfake.Disk) string {
	t.Helper()
	pb, err := s.BlobClient(d)
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "blob.vhd")
	f, _ := os.Create(p)
	defer f.Close()
	if _, err := pb.DownloadFile(context.Background(), f, nil); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestPublishImageAndGalleryVersion(t *testing.T) {
	s := fake(t)
	raw := rawDisk(t)
	var log bytes.Buffer
	cfg := testConfig(s, &log)
	cfg.SBOM = "sha256:" + strings.Repeat("5b", 32)
	cfg.Gallery = &Gallery{Name: "gal", ImageDefinition: "web", Version: "1.4.0", ReplicaRegions: []string{"northeurope", "eastus"}}
	cfg.Tags = map[string]string{"team": "platform"}
	cfg.MergeGap = -1 // only non-zero sectors
	res, err := Publish(context.Background(), raw, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasSuffix(res.ImageID, "/images/web-1.4") || !strings.HasSuffix(res.GalleryImageVersionID, "/versions/1.4.0") || res.Existing || res.DiskID != "" {
		t.Fatalf("result: %+v", res)
	}

	// The ARM calls, in order (GETs aside).
	want := []string{"CreateDisk", "GrantAccess", "RevokeAccess", "CreateImage", "CreateGalleryImage", "CreateVersion", "DeleteDisk"}
	if got := mutating(s.Calls()); !slices.Equal(got, want) {
		t.Fatalf("ARM calls:\n got %v\nwant %v", got, want)
	}

	disks := s.Disks()
	if len(disks) != 1 || !disks[0].Deleted || disks[0].UploadSize != 40<<20+1<<20+512 {
		t.Fatalf("disks: %+v", disks)
	}
	// The blob in Azurite is the VHD, checked by qemu-img (which reads a
	// fixed VHD by its footer) against the raw disk.
	blobPath := download(t, s, disks[0])
	if err := vhd.Check(blobPath); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("qemu-img", "compare", "-f", "raw", "-F", "vpc", raw, blobPath).CombinedOutput(); err != nil {
		t.Fatalf("qemu-img compare raw and the uploaded VHD: %s", out)
	}
	rawBytes, _ := os.ReadFile(raw)
	blobBytes, _ := os.ReadFile(blobPath)
	if !bytes.Equal(blobBytes[:len(rawBytes)], rawBytes) {
		t.Fatal("the blob's data is not the raw disk")
	}

	// Only non-zero sectors were written (and all of them), in writes of at
	// most 4 MiB; the footer last.
	pages := s.Pages()
	if last := pages[len(pages)-1]; last.Offset != 41<<20 || last.Count != 512 {
		t.Fatalf("last write %+v is not the footer", last)
	}
	written := map[int64]bool{}
	for _, pg := range pages[:len(pages)-1] {
		if pg.Count > MaxWrite || pg.Offset%512 != 0 || pg.Count%512 != 0 {
			t.Fatalf("bad write %+v", pg)
		}
		for off := pg.Offset; off < pg.Offset+pg.Count; off += 512 {
			if isZero(rawBytes[off : off+512]) {
				t.Fatalf("zero sector at %d was sent", off)
			}
			written[off] = true
		}
	}
	nonzero := 0
	for off := 0; off < len(rawBytes); off += 512 {
		if !isZero(rawBytes[off : off+512]) {
			nonzero++
			if !written[int64(off)] {
				t.Fatalf("non-zero sector at %d was not sent", off)
			}
		}
	}
	if res.BytesSent != int64(nonzero*512+512) {
		t.Fatalf("bytes sent %d, non-zero sectors %d", res.BytesSent, nonzero)
	}

	// What was made.
	im := s.Images()[0]
	if im.Tags[DigestTag] != cfg.Digest || im.Tags["team"] != "platform" || im.HyperVGeneration != "V2" || im.SourceDisk != disks[0].ID || im.Tags[SBOMTag] != cfg.SBOM {
		t.Fatalf("image %+v", im)
	}
	v := s.Versions()[0]
	if !slices.Equal(v.TargetRegions, []string{"westeurope", "northeurope", "eastus"}) || v.Tags[DigestTag] != cfg.Digest {
		t.Fatalf("version %+v", v)
	}
	if d := s.GalleryImages()[0]; d.Publisher != "layerimg" || d.Offer != "web" || d.HyperVGeneration != "V2" {
		t.Fatalf("definition %+v", d)
	}
	if strings.Contains(log.String(), "sig=") && !strings.Contains(log.String(), "sig=REDACTED") {
		t.Fatal("a SAS signature reached the log")
	}
}

// TestMergeGap checks the default write policy: every write starts and
// ends with a non-zero sector, its zeros are gaps shorter than 4 KiB, and
// the blob is still exactly the disk.
func TestMergeGap(t *testing.T) {
	s := fake(t)
	raw := rawDisk(t)
	res, err := Publish(context.Background(), raw, testConfig(s, io.Discard))
	if err != nil {
		t.Fatal(err)
	}
	rawBytes, _ := os.ReadFile(raw)
	pages := s.Pages()
	for _, pg := range pages[:len(pages)-1] {
		b := rawBytes[pg.Offset : pg.Offset+pg.Count]
		if isZero(b[:512]) || isZero(b[len(b)-512:]) {
			t.Fatalf("write %+v starts or ends with zeros", pg)
		}
		zeros := 0
		for off := 0; off < len(b); off += 512 {
			if isZero(b[off : off+512]) {
				if zeros++; zeros*512 > DefaultMergeGap {
					t.Fatalf("write %+v carries a zero gap longer than %d bytes", pg, DefaultMergeGap)
				}
			} else {
				zeros = 0
			}
		}
	}
	if res.RangesSent != 6 { // the 4 KiB head, two 4 MiB runs and a tail of the 6 MiB run, the two singles merged, the last sector; + footer
		t.Errorf("%d writes: %+v", res.RangesSent, pages)
	}
	if out, err := exec.Command("qemu-img", "compare", "-f", "raw", "-F", "vpc", raw, download(t, s, s.Disks()[0])).CombinedOutput(); err != nil {
		t.Fatalf("%s", out)
	}
}

func isZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

func TestPublishTwiceUploadsOnce(t *testing.T) {
	s := fake(t)
	raw := rawDisk(t)
	cfg := testConfig(s, io.Discard)
	cfg.Gallery = &Gallery{Name: "gal", ImageDefinition: "web", Version: "1.4.0"}
	first, err := Publish(context.Background(), raw, cfg)
	if err != nil {
		t.Fatal(err)
	}
	n := len(s.Calls())
	again, err := Publish(context.Background(), raw, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if !again.Existing || again.ImageID != first.ImageID || again.GalleryImageVersionID != first.GalleryImageVersionID || again.BytesSent != 0 {
		t.Fatalf("second publish %+v", again)
	}
	if m := mutating(s.Calls()[n:]); len(m) != 0 {
		t.Fatalf("the second publish changed things: %v", m)
	}
	// Another disk under the same names is refused, not overwritten.
	cfg.Digest = "sha256:" + strings.Repeat("ef", 32)
	if _, err := Publish(context.Background(), raw, cfg); err == nil || !strings.Contains(err.Error(), "made from another disk") {
		t.Fatalf("err = %v", err)
	}
	// --force replaces the managed image; the version stays immutable.
	cfg.Force, cfg.Gallery = true, nil
	res, err := Publish(context.Background(), raw, cfg)
	if err != nil || res.Existing || len(s.Images()) != 1 || s.Images()[0].Tags[DigestTag] != cfg.Digest {
		t.Fatalf("--force: %+v %v", res, err)
	}
}

// TestCleanupAtEachStage fails each stage for good: nothing is left, and
// the error names the operation, the resource and Azure's code.
func TestCleanupAtEachStage(t *testing.T) {
	raw := rawDisk(t)
	for _, tc := range []struct {
		op     string
		status int
		code   string
		once   bool // the cleanup's own call of the op succeeds
		want   []string
	}{
		{"CreateDisk", 400, "InvalidParameter", false, []string{"create disk /subscriptions/" + sub + "/resourceGroups/rg/providers/Microsoft.Compute/disks/layerimg-"}},
		{"GrantAccess", 409, "OperationNotAllowed", false, []string{"grant access to disk"}},
		{"UploadPages", 403, "AuthorizationFailure", false, []string{"upload pages ", " of http://127.0.0.1:", "/disks/layerimg-", "(HTTP 403): injected"}},
		{"RevokeAccess", 409, "Conflict", true, []string{"revoke access to disk"}},
		{"CreateImage", 400, "InvalidParameter", false, []string{"create image", "/images/web-1.4"}},
		{"CreateVersion", 409, "Conflict", false, []string{"create gallery image version", "/versions/1.4.0"}},
		// Failures reported by the long-running operation, not its start.
		{"async CreateDisk", 500, "InternalOperationError", false, []string{"create disk", "injected failure of the operation"}},
		{"async CreateImage", 400, "InvalidVhd", false, []string{"create image", "injected failure of the operation"}},
	} {
		t.Run(tc.op, func(t *testing.T) {
			s := fake(t)
			name, async := strings.CutPrefix(tc.op, "async ")
			s.Inject = func(op string, n int) *armfake.Fault {
				if op == name && (n == 1 || !tc.once) {
					return &armfake.Fault{Status: tc.status, Code: tc.code, Async: async}
				}
				return nil
			}
			cfg := testConfig(s, io.Discard)
			cfg.Gallery = &Gallery{Name: "gal", ImageDefinition: "web", Version: "1.4.0"}
			_, err := Publish(context.Background(), raw, cfg)
			exporttest.FailedNaming(t, err, append(tc.want, tc.code)...)
			if strings.Contains(err.Error(), "sig=") || strings.Contains(err.Error(), "?se=") {
				t.Errorf("the SAS is in the error: %v", err)
			}
			for _, d := range s.Disks() {
				if !d.Deleted {
					t.Errorf("disk %s left behind in state %s", d.Name, d.State)
				}
			}
			if len(s.Images()) != 0 || len(s.Versions()) != 0 {
				t.Errorf("left behind: %d images, %d versions", len(s.Images()), len(s.Versions()))
			}
		})
	}
}

func TestInterruptCleansUp(t *testing.T) {
	s := fake(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	s.Inject = func(op string, n int) *armfake.Fault {
		if op == "UploadPages" && n == 2 {
			cancel() // Ctrl-C mid-upload
		}
		return nil
	}
	_, err := Publish(ctx, rawDisk(t), testConfig(s, io.Discard))
	if err == nil || !strings.Contains(err.Error(), "canceled") {
		t.Fatalf("err = %v", err)
	}
	got := mutating(s.Calls())
	if !slices.Equal(got, []string{"CreateDisk", "GrantAccess", "RevokeAccess", "DeleteDisk"}) {
		t.Fatalf("calls %v", got)
	}
	if d := s.Disks()[0]; !d.Deleted {
		t.Fatalf("disk left in state %s", d.State)
	}
}

func TestRetriesTransientFailures(t *testing.T) {
	s := fake(t)
	s.PendingPolls = 1
	s.Inject = func(op string, n int) *armfake.Fault {
		switch {
		case op == "UploadPages" && n%3 == 0:
			return &armfake.Fault{Status: 503, Code: "ServerBusy"}
		case op == "CreateDisk" && n == 1, op == "CreateImage" && n == 1:
			return &armfake.Fault{Status: 500, Code: "InternalServerError"}
		}
		return nil
	}
	raw := rawDisk(t)
	if _, err := Publish(context.Background(), raw, testConfig(s, io.Discard)); err != nil {
		t.Fatal(err)
	}
	if len(s.Disks()) != 1 || len(s.Images()) != 1 {
		t.Fatalf("%d disks, %d images", len(s.Disks()), len(s.Images()))
	}
	if out, err := exec.Command("qemu-img", "compare", "-f", "raw", "-F", "vpc", raw, download(t, s, s.Disks()[0])).CombinedOutput(); err != nil {
		t.Fatalf("after retries: %s", out)
	}
}

func TestRefusesBeforeCreatingAnything(t *testing.T) {
	s := fake(t)
	dir := t.TempDir()
	raw := rawDisk(t)
	badVHD := filepath.Join(dir, "bad.vhd") // footer of a 1000-byte disk
	os.WriteFile(badVHD, append(make([]byte, 1000), vhd.Footer(1000, [16]byte{}, time.Unix(0, 0))...), 0o644)
	vmdk := filepath.Join(dir, "d.vmdk")
	os.WriteFile(vmdk, append([]byte("KDMV"), make([]byte, 1020)...), 0o644)
	for _, tc := range []struct {
		path string
		mod  func(*Config)
		want string
	}{
		{badVHD, nil, "not a whole number of MiB plus the 512-byte footer"},
		{vmdk, nil, "is a VMDK"},
		{filepath.Join(dir, "nope.vhd"), nil, "nope.vhd"},
		{raw, func(c *Config) {
			c.SecurityType = "TrustedLaunch"
			c.Gallery = &Gallery{Name: "g", ImageDefinition: "d", Version: "1.0.0"}
		}, "needs the disk's boot: grub"},
		{raw, func(c *Config) { c.SubscriptionID = "" }, "no subscription"},
		{raw, func(c *Config) { c.ImageName = "" }, "nothing to make"},
		{raw, func(c *Config) { c.Gallery = &Gallery{Name: "g", ImageDefinition: "d", Version: "v1"} }, "MAJOR.MINOR.PATCH"},
		{raw, func(c *Config) { c.Tags = map[string]string{"a/b": "c"} }, "forbids"},
	} {
		cfg := testConfig(s, io.Discard)
		if tc.mod != nil {
			tc.mod(&cfg)
		}
		if _, err := Publish(context.Background(), tc.path, cfg); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: err = %v", tc.want, err)
		}
	}
	if c := s.Calls(); len(c) != 0 {
		t.Fatalf("refused input still called ARM: %v", c)
	}
}

func TestFixedVHDAndTrustedLaunch(t *testing.T) {
	s := fake(t)
	raw := rawDisk(t)
	// A fixed VHD as layerimg writes it.
	vhdPath := filepath.Join(t.TempDir(), "disk.vhd")
	if err := format.Convert(context.Background(), raw, vhdPath, format.VHD, format.Stamp{VHDID: [16]byte{1}, Created: time.Unix(0, 0)}); err != nil {
		t.Fatal(err)
	}
	cfg := testConfig(s, io.Discard)
	cfg.ImageName, cfg.BootMode, cfg.SecurityType, cfg.KeepDisk = "", "grub", "TrustedLaunch", true
	cfg.Gallery = &Gallery{Name: "gal", ImageDefinition: "web-tl", Version: "2.0.0", ExcludeFromLatest: true}
	res, err := Publish(context.Background(), vhdPath, cfg)
	if err != nil {
		t.Fatal(err)
	}
	d := s.Disks()[0]
	if res.DiskID != d.ID || d.Deleted || d.SecurityType != "TrustedLaunch" || d.State != "Unattached" {
		t.Fatalf("kept disk %+v, result %+v", d, res)
	}
	if g := s.GalleryImages()[0]; g.SecurityType != "TrustedLaunch" {
		t.Fatalf("definition %+v", g)
	}
	if v := s.Versions()[0]; !v.ExcludeFromLatest {
		t.Fatalf("version %+v", v)
	}
	want, _ := os.ReadFile(vhdPath)
	got, _ := os.ReadFile(download(t, s, d))
	if !bytes.Equal(got, want) {
		t.Fatal("the blob is not the VHD byte for byte")
	}
}

// TestFakeRejects checks, through armcompute itself, that the ARM fake
// refuses what Azure refuses.
func TestFakeRejects(t *testing.T) {
	s := fake(t)
	cfg := testConfig(s, io.Discard)
	c, err := cfg.clients()
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	p := &publisher{cfg: cfg, c: c}
	mkDisk := func(name string, size int64) error {
		poller, err := c.disks.BeginCreateOrUpdate(ctx, "rg", name, armcompute.Disk{Location: ptr("westeurope"),
			Properties: &armcompute.DiskProperties{CreationData: &armcompute.CreationData{
				CreateOption: ptr(armcompute.DiskCreateOptionUpload), UploadSizeBytes: ptr(size)}}}, nil)
		if err == nil {
			_, err = poller.PollUntilDone(ctx, p.poll())
		}
		return err
	}
	for _, size := range []int64{64 << 20, 64<<20 + 1024, 1<<20 + 512} {
		if err := mkDisk("bad", size); err == nil || !strings.Contains(err.Error(), "uploadSizeBytes") {
			t.Errorf("uploadSizeBytes %d: %v", size, err)
		}
	}
	if err := mkDisk("good", 64<<20+512); err != nil {
		t.Fatal(err)
	}
	gp, err := c.disks.BeginGrantAccess(ctx, "rg", "good", armcompute.GrantAccessData{Access: ptr(armcompute.AccessLevelRead), DurationInSeconds: ptr(int32(60))}, nil)
	if err == nil || !strings.Contains(err.Error(), "only Write access") {
		t.Errorf("read access to a disk awaiting upload: %v", err)
	}
	gp, err = c.disks.BeginGrantAccess(ctx, "rg", "good", armcompute.GrantAccessData{Access: ptr(armcompute.AccessLevelWrite), DurationInSeconds: ptr(int32(60))}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := gp.PollUntilDone(ctx, p.poll()); err != nil {
		t.Fatal(err)
	}
	id := diskID(cfg, "good")
	mkImage := func() error {
		poller, err := c.images.BeginCreateOrUpdate(ctx, "rg", "img", armcompute.Image{Location: ptr("westeurope"),
			Properties: &armcompute.ImageProperties{StorageProfile: &armcompute.ImageStorageProfile{OSDisk: &armcompute.ImageOSDisk{
				OSType: ptr(armcompute.OperatingSystemTypesLinux), OSState: ptr(armcompute.OperatingSystemStateTypesGeneralized),
				ManagedDisk: &armcompute.SubResource{ID: &id}}}}}, nil)
		if err == nil {
			_, err = poller.PollUntilDone(ctx, p.poll())
		}
		return err
	}
	if err := mkImage(); err == nil || !strings.Contains(err.Error(), "access revoked") {
		t.Errorf("image from a disk whose access was never revoked: %v", err)
	}
	if err := p.deleteDisk(ctx, "good"); err == nil || !strings.Contains(err.Error(), "revoke access before deleting") {
		t.Errorf("delete during upload: %v", err)
	}
	if err := p.revoke(ctx, "good"); err != nil {
		t.Fatal(err)
	}
	if err := mkImage(); err == nil || !strings.Contains(err.Error(), "InvalidVhd") {
		t.Errorf("image from a disk with no VHD footer: %v", err)
	}
}

// An arm64 disk becomes an Arm64 disk and gallery image definition, an
// amd64 one x64; what disagrees (disk, platform, config, an existing
// definition) is refused before anything is made, and the ARM fake rejects
// what ARM rejects: Arm64 with V1, a managed image of an Arm64 disk, and a
// version whose definition is for the other architecture.
func TestArchitectures(t *testing.T) {
	dir := t.TempDir()
	disks := map[string]string{}
	for _, arch := range []string{"amd64", "arm64"} {
		disks[arch] = filepath.Join(dir, arch+".raw")
		exporttest.GPTDisk(t, disks[arch], 200<<20, arch)
	}
	gallery := func(c *Config) {
		c.ImageName, c.KeepDisk = "", true
		c.Gallery = &Gallery{Name: "gal", ImageDefinition: "web", Version: "1.0.0"}
	}
	for _, tc := range []struct {
		arch, platform, want string
	}{
		{"amd64", "linux/amd64", "x64"},
		{"arm64", "linux/arm64", "Arm64"},
	} {
		s := fake(t)
		cfg := testConfig(s, io.Discard)
		gallery(&cfg)
		_, err := New(cfg).Publish(context.Background(), export.Disk{Path: disks[tc.arch], Format: format.Raw, Platform: tc.platform, Digest: cfg.Digest})
		if err != nil {
			t.Fatalf("%s: %v", tc.arch, err)
		}
		if defs := s.GalleryImages(); len(defs) != 1 || defs[0].Architecture != tc.want {
			t.Errorf("%s: definitions %+v, want %s", tc.arch, defs, tc.want)
		}
		if ds := s.Disks(); len(ds) != 1 || ds[0].Architecture != tc.want {
			t.Errorf("%s: disks %+v, want %s", tc.arch, ds, tc.want)
		}
	}

	for _, tc := range []struct {
		name, disk, platform string
		mod                  func(*Config)
		want                 string
	}{
		{"arm64 disk, amd64 platform", "arm64", "linux/amd64", gallery, "is an arm64 disk"},
		{"x64 asked for arm64", "arm64", "linux/arm64", func(c *Config) { gallery(c); c.Architecture = "x64" }, "architecture x64 was asked for"},
		{"arm64 managed image", "arm64", "linux/arm64", nil, "a managed image cannot hold an Arm64 disk"},
		{"arm64 on V1", "arm64", "linux/arm64", func(c *Config) { gallery(c); c.HyperVGeneration = "V1" }, "Arm64 images need hyper_v_generation V2"},
		{"cli, V1 arm64 disk", "arm64", "", func(c *Config) { gallery(c); c.HyperVGeneration = "V1" }, "Arm64 images need hyper_v_generation V2"},
	} {
		s := fake(t)
		cfg := testConfig(s, io.Discard)
		if tc.mod != nil {
			tc.mod(&cfg)
		}
		var err error
		if tc.platform == "" {
			_, err = Publish(context.Background(), disks[tc.disk], cfg)
		} else {
			_, err = New(cfg).Publish(context.Background(), export.Disk{Path: disks[tc.disk], Format: format.Raw, Platform: tc.platform, Digest: cfg.Digest})
		}
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: err = %v, want %q", tc.name, err, tc.want)
		}
		if c := s.Calls(); len(c) != 0 {
			t.Errorf("%s: refused input still called ARM: %v", tc.name, c)
		}
	}

	// An existing x64 definition: an arm64 disk is refused before upload.
	s := fake(t)
	cfg := testConfig(s, io.Discard)
	gallery(&cfg)
	c, err := cfg.clients()
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	p := &publisher{cfg: cfg, c: c}
	mkDef := func(name string, arch armcompute.Architecture, gen armcompute.HyperVGeneration) error {
		poller, err := c.defs.BeginCreateOrUpdate(ctx, "rg", "gal", name, armcompute.GalleryImage{Location: ptr("westeurope"),
			Properties: &armcompute.GalleryImageProperties{OSType: ptr(armcompute.OperatingSystemTypesLinux),
				OSState: ptr(armcompute.OperatingSystemStateTypesGeneralized), HyperVGeneration: &gen, Architecture: &arch,
				Identifier: &armcompute.GalleryImageIdentifier{Publisher: ptr("p"), Offer: ptr("o"), SKU: ptr(name)}}}, nil)
		if err == nil {
			_, err = poller.PollUntilDone(ctx, p.poll())
		}
		return err
	}
	if err := mkDef("web", armcompute.ArchitectureX64, armcompute.HyperVGenerationV2); err != nil {
		t.Fatal(err)
	}
	if err := mkDef("arm-v1", armcompute.ArchitectureArm64, armcompute.HyperVGenerationV1); err == nil || !strings.Contains(err.Error(), "need hyperVGeneration V2") {
		t.Errorf("fake: Arm64 definition on V1: %v", err)
	}
	if err := mkDef("bad", "aarch64", armcompute.HyperVGenerationV2); err == nil || !strings.Contains(err.Error(), "'aarch64' of parameter 'architecture' is invalid") {
		t.Errorf("fake: unknown architecture: %v", err)
	}
	_, err = Publish(ctx, disks["arm64"], cfg)
	if err == nil || !strings.Contains(err.Error(), "is for x64; this disk is Arm64") {
		t.Errorf("arm64 disk into an x64 definition: %v", err)
	}
	if got := mutating(s.Calls()); slices.Contains(got, "CreateDisk") {
		t.Errorf("the refused publish made a disk: %v", got)
	}

	// The fake itself: an Arm64 disk (kept) cannot go into the x64
	// definition nor a managed image.
	cfg.Gallery.ImageDefinition = "arm"
	if _, err := Publish(ctx, disks["arm64"], cfg); err != nil {
		t.Fatal(err)
	}
	var armDisk string
	for _, d := range s.Disks() {
		if d.Architecture == "Arm64" && !d.Deleted {
			armDisk = d.ID
		}
	}
	if armDisk == "" {
		t.Fatalf("no kept Arm64 disk: %+v", s.Disks())
	}
	vp, err := c.versions.BeginCreateOrUpdate(ctx, "rg", "gal", "web", "2.0.0", armcompute.GalleryImageVersion{Location: ptr("westeurope"),
		Properties: &armcompute.GalleryImageVersionProperties{StorageProfile: &armcompute.GalleryImageVersionStorageProfile{
			OSDiskImage: &armcompute.GalleryOSDiskImage{Source: &armcompute.GalleryDiskImageSource{ID: &armDisk}}}}}, nil)
	if err == nil {
		_, err = vp.PollUntilDone(ctx, p.poll())
	}
	if err == nil || !strings.Contains(err.Error(), "architecture Arm64 does not match the gallery image definition's x64") {
		t.Errorf("fake: Arm64 disk into an x64 definition: %v", err)
	}
	ip, err := c.images.BeginCreateOrUpdate(ctx, "rg", "img", armcompute.Image{Location: ptr("westeurope"),
		Properties: &armcompute.ImageProperties{HyperVGeneration: ptr(armcompute.HyperVGenerationTypesV2), StorageProfile: &armcompute.ImageStorageProfile{OSDisk: &armcompute.ImageOSDisk{
			OSType: ptr(armcompute.OperatingSystemTypesLinux), OSState: ptr(armcompute.OperatingSystemStateTypesGeneralized),
			ManagedDisk: &armcompute.SubResource{ID: &armDisk}}}}}, nil)
	if err == nil {
		_, err = ip.PollUntilDone(ctx, p.poll())
	}
	if err == nil || !strings.Contains(err.Error(), "Managed images do not support Arm64 disks") {
		t.Errorf("fake: managed image of an Arm64 disk: %v", err)
	}
}
