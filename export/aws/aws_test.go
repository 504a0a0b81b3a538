package aws

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/layerimg/layerimg/export/internal/exporttest"
	"github.com/layerimg/layerimg/internal/awsfake"
)

// env points the SDK's credential chain at fixed keys and nothing else.
func env(t testing.TB) {
	t.Setenv("AWS_ACCESS_KEY_ID", "AKIDLAYERIMG")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "not-a-secret-but-never-logged")
	t.Setenv("AWS_SESSION_TOKEN", "")
	t.Setenv("AWS_PROFILE", "")
	t.Setenv("AWS_CONFIG_FILE", filepath.Join(t.TempDir(), "none"))
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", filepath.Join(t.TempDir(), "none"))
	t.Setenv("AWS_EC2_METADATA_DISABLED", "true")
	t.Setenv("AWS_ENDPOINT_URL", "")
	os.Unsetenv("AWS_CA_BUNDLE") // t.Setenv above restores the environment after the test
	t.Setenv("AWS_REGION", "")
}

func fake(t *testing.T) *awsfake.Server {
	t.Helper()
	env(t)
	s := awsfake.New()
	t.Cleanup(s.Close)
	return s
}

func testConfig(s *awsfake.Server, log io.Writer) Config {
	return Config{
		Region: "eu-west-1", Recipe: "web", Digest: "sha256:" + strings.Repeat("ab", 32),
		Endpoint: s.URL, HTTPClient: s.Client(), PollInterval: time.Millisecond, MaxBackoff: 20 * time.Millisecond,
		Parallel: 8, Log: slog.New(slog.NewTextHandler(log, nil)),
	}
}

// sparseDisk makes a sparse raw disk just over 1 GiB (so the last block is
// short) with data in a few places, and returns its path.
func sparseDisk(t *testing.T) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "disk.raw")
	writeSparseDisk(t, p, 1<<30+3*512)
	return p
}

func writeSparseDisk(t *testing.T, p string, size int64) {
	exporttest.SparseDisk(t, p, size, map[int64][]byte{
		0:                bytes.Repeat([]byte("GPT head"), 1<<17), // 1 MiB: two whole blocks
		100<<20 + 12345:  []byte("one byte in the middle of a block"),
		(512<<20 - 4096): bytes.Repeat([]byte{7}, 8192), // straddles a block boundary
		size - 512:       bytes.Repeat([]byte{9}, 512),  // in the short last block
	})
}

// sameAsDisk checks that the snapshot's blocks are the first size bytes of
// the disk at p, block by block, zeros where no block was sent.
func sameAsDisk(t *testing.T, sn *awsfake.Snapshot, p string, size int64) {
	t.Helper()
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	buf, zero := make([]byte, BlockSize), make([]byte, BlockSize)
	for i := int32(0); int64(i)*BlockSize < size; i++ {
		clear(buf)
		n := min(BlockSize, size-int64(i)*BlockSize)
		if _, err := f.ReadAt(buf[:n], int64(i)*BlockSize); err != nil {
			t.Fatal(err)
		}
		got, ok := sn.Blocks[i]
		if !ok {
			got = zero
		}
		if !bytes.Equal(got, buf) {
			t.Fatalf("snapshot block %d differs from the disk", i)
		}
	}
	for i := range sn.Blocks {
		if int64(i)*BlockSize >= size {
			t.Fatalf("snapshot block %d lies beyond the disk's %d bytes", i, size)
		}
	}
}

// nonZeroBlocks counts the 512 KiB blocks of p that hold a non-zero byte,
// by reading every byte: an oracle independent of SEEK_DATA.
func nonZeroBlocks(t *testing.T, p string) map[int32]bool {
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	out := map[int32]bool{}
	for off := 0; off < len(b); off += BlockSize {
		if !isZero(b[off:min(off+BlockSize, len(b))]) {
			out[int32(off/BlockSize)] = true
		}
	}
	return out
}

func isZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

func ops(calls []awsfake.Call, op string) []awsfake.Call {
	var out []awsfake.Call
	for _, c := range calls {
		if c.Op == op {
			out = append(out, c)
		}
	}
	return out
}

func TestPublishEBSDirect(t *testing.T) {
	s := fake(t)
	var log bytes.Buffer
	cfg := testConfig(s, &log)
	cfg.Name = "{{.Name}}-{{.Args.version}}-{{.Digest}}"
	cfg.Args = map[string]string{"version": "1.4"}
	cfg.Description = "web servers"
	cfg.Tags = map[string]string{"team": "platform"}
	cfg.CopyTo = []string{"us-east-1", "us-west-2"}
	cfg.ShareAccounts = []string{"123456789012"}
	cfg.ShareOrganizations = []string{"arn:aws:organizations::123456789012:organization/o-abcdefghij"}
	cfg.TPMSupport = "v2.0"
	cfg.SBOM = "sha256:" + strings.Repeat("5b", 32)
	raw := sparseDisk(t)

	res, err := Publish(context.Background(), raw, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Images) != 3 || res.Images[0].Region != "eu-west-1" || res.Images[0].Existing {
		t.Fatalf("images: %+v", res.Images)
	}
	calls := s.Calls()

	// Only non-zero blocks, each once, and exactly those.
	want := nonZeroBlocks(t, raw)
	puts := ops(calls, "PutSnapshotBlock")
	if len(puts) != len(want) || res.BlocksSent != int64(len(want)) {
		t.Fatalf("sent %d blocks (result says %d); the disk has %d non-zero blocks", len(puts), res.BlocksSent, len(want))
	}
	snaps := map[string]*awsfake.Snapshot{}
	for _, sn := range s.Snapshots() {
		snaps[sn.ID] = sn
	}
	sn := snaps[res.Images[0].SnapshotID]
	if sn == nil {
		t.Fatalf("snapshot %s does not exist", res.Images[0].SnapshotID)
	}
	for i := range sn.Blocks {
		if !want[i] {
			t.Errorf("block %d was sent but is all zeros on disk", i)
		}
	}
	// The blocks reassemble into exactly the disk.
	sameAsDisk(t, sn, raw, 1<<30+3*512)
	if sn.VolumeSize != 2 || sn.Tags[RecipeTag] != "web" {
		t.Errorf("snapshot: %d GiB, tags %v", sn.VolumeSize, sn.Tags)
	}

	// The AMI as registered.
	imgs := map[string]*awsfake.Image{}
	for _, im := range s.Images() {
		imgs[im.ID] = im
	}
	im := imgs[res.Images[0].ImageID]
	name := "web-1.4-" + strings.Repeat("ab", 6)
	if im == nil || im.Name != name || im.BootMode != "uefi" || !im.ENASupport || im.IMDSSupport != "v2.0" || im.TPMSupport != "v2.0" ||
		im.Architecture != "x86_64" || im.RootDeviceName != "/dev/xvda" || im.VolumeType != "gp3" || im.VolumeSize != 2 ||
		im.VirtualizationType != "hvm" || !im.DeleteOnTermination || im.Description != "web servers" {
		t.Fatalf("image: %+v", im)
	}
	for k, v := range map[string]string{DigestTag: cfg.Digest, RecipeTag: "web", "team": "platform", "Name": name, SBOMTag: cfg.SBOM} {
		if im.Tags[k] != v {
			t.Errorf("image tag %s = %q, want %q", k, im.Tags[k], v)
		}
	}
	// Copies: one per region, tagged like the source, shared like it.
	for _, r := range res.Images {
		im := imgs[r.ImageID]
		if im == nil || im.Region != r.Region || im.State != "available" || im.Tags[DigestTag] != cfg.Digest {
			t.Errorf("%s: %+v", r.Region, im)
			continue
		}
		if !slices.Equal(im.LaunchUsers, cfg.ShareAccounts) || !slices.Equal(im.LaunchOrganizations, cfg.ShareOrganizations) {
			t.Errorf("%s: launch permissions %v %v", r.Region, im.LaunchUsers, im.LaunchOrganizations)
		}
		if r.Region != "eu-west-1" && (im.SourceImage != res.Images[0].ImageID || r.SnapshotID == "" || snaps[r.SnapshotID] == nil) {
			t.Errorf("%s: copy of %s with snapshot %q", r.Region, im.SourceImage, r.SnapshotID)
		}
	}
	// The order of the primary region's calls.
	var seq []string
	for _, c := range calls {
		if c.Region == "eu-west-1" && (len(seq) == 0 || seq[len(seq)-1] != c.Op) {
			seq = append(seq, c.Op)
		}
	}
	wantSeq := []string{"DescribeImages", "StartSnapshot", "PutSnapshotBlock", "CompleteSnapshot", "DescribeSnapshots", "RegisterImage", "CreateTags", "ModifyImageAttribute"}
	if !slices.Equal(seq, wantSeq) {
		t.Errorf("calls in eu-west-1:\n got %v\nwant %v", seq, wantSeq)
	}
	if strings.Contains(log.String(), "not-a-secret") {
		t.Error("the secret key reached the log")
	}
}

func TestPublishIsIdempotent(t *testing.T) {
	s := fake(t)
	cfg := testConfig(s, io.Discard)
	raw := sparseDisk(t)
	first, err := Publish(context.Background(), raw, cfg)
	if err != nil {
		t.Fatal(err)
	}
	n := len(s.Calls())
	cfg.CopyTo = []string{"ap-south-1"}
	again, err := Publish(context.Background(), raw, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if !again.Images[0].Existing || again.Images[0].ImageID != first.Images[0].ImageID || again.BlocksSent != 0 {
		t.Fatalf("second publish: %+v", again)
	}
	if starts := ops(s.Calls()[n:], "StartSnapshot"); len(starts) != 0 {
		t.Fatalf("the second publish uploaded again: %v", starts)
	}
	if len(again.Images) != 2 || again.Images[1].Region != "ap-south-1" {
		t.Fatalf("the missing copy was not made: %+v", again.Images)
	}

	// --force uploads again (under another name: AMI names are unique).
	cfg.Force, cfg.CopyTo, cfg.Name = true, nil, "web-forced"
	forced, err := Publish(context.Background(), raw, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if forced.Images[0].ImageID == first.Images[0].ImageID || forced.BlocksSent == 0 {
		t.Fatalf("--force did not upload: %+v", forced)
	}
}

func TestPublishRetriesThrottlingAnd5xx(t *testing.T) {
	s := fake(t)
	s.Inject = func(op string, n int) *awsfake.Fault {
		switch {
		case op == "PutSnapshotBlock" && n%3 == 0:
			return &awsfake.Fault{Status: 400, Code: "ThrottlingException"}
		case op == "PutSnapshotBlock" && n%5 == 0:
			return &awsfake.Fault{Status: 503, Code: "ServiceUnavailableException"}
		case op == "StartSnapshot" && n == 1, op == "RegisterImage" && n == 1, op == "CompleteSnapshot" && n == 1:
			return &awsfake.Fault{Status: 500, Code: "InternalError"}
		case op == "DescribeSnapshots" && n == 1:
			return &awsfake.Fault{Status: 503, Code: "RequestLimitExceeded"}
		}
		return nil
	}
	raw := sparseDisk(t)
	res, err := Publish(context.Background(), raw, testConfig(s, io.Discard))
	if err != nil {
		t.Fatal(err)
	}
	failed := 0
	for _, c := range s.Calls() {
		if c.Status >= 400 {
			failed++
		}
	}
	if failed < 5 {
		t.Fatalf("only %d calls failed: the faults were not injected", failed)
	}
	if len(s.Snapshots()) != 1 || len(s.Images()) != 1 {
		t.Fatalf("a retried StartSnapshot or RegisterImage left extra resources: %d snapshots, %d images", len(s.Snapshots()), len(s.Images()))
	}
	sameAsDisk(t, s.Snapshots()[0], raw, 1<<30+3*512)
	if res.BlocksSent != int64(len(nonZeroBlocks(t, raw))) {
		t.Fatalf("%d blocks sent", res.BlocksSent)
	}
}

// TestPublishCleansUp fails each stage for good and checks that nothing is
// left behind and that the error names the call and the resource.
func TestPublishCleansUp(t *testing.T) {
	raw := sparseDisk(t)
	for _, tc := range []struct {
		op, code string
		n        int
		want     []string
	}{
		{"StartSnapshot", "AccessDeniedException", 1, []string{"StartSnapshot", "AccessDeniedException"}},
		{"PutSnapshotBlock", "ValidationException", 3, []string{"PutSnapshotBlock", "snapshot snap-", "RequestID: fake-"}},
		{"CompleteSnapshot", "ValidationException", 1, []string{"CompleteSnapshot snap-"}},
		{"RegisterImage", "InvalidParameterValue", 1, []string{"RegisterImage", "snapshot snap-"}},
		{"CreateTags", "UnauthorizedOperation", 1, []string{"CreateTags on image ami-"}},
		{"CopyImage", "InvalidRegion", 1, []string{"us-east-1", "CopyImage"}},
	} {
		t.Run(tc.op, func(t *testing.T) {
			s := fake(t)
			status := 400
			if tc.code == "AccessDeniedException" {
				status = 403
			}
			s.Inject = func(op string, n int) *awsfake.Fault {
				if op == tc.op && n >= tc.n {
					return &awsfake.Fault{Status: status, Code: tc.code}
				}
				return nil
			}
			cfg := testConfig(s, io.Discard)
			cfg.CopyTo = []string{"us-east-1"}
			_, err := Publish(context.Background(), raw, cfg)
			exporttest.FailedNaming(t, err, append(tc.want, tc.code)...)
			if tc.op == "CopyImage" {
				// The primary image is complete and stays; the next publish
				// finds it by digest and retries only the copy.
				if len(s.Images()) != 1 || s.Images()[0].Region != "eu-west-1" {
					t.Fatalf("images left: %+v", s.Images())
				}
				return
			}
			if len(s.Snapshots()) != 0 || len(s.Images()) != 0 {
				t.Fatalf("left behind: %d snapshots, %d images", len(s.Snapshots()), len(s.Images()))
			}
		})
	}
}

func TestPublishInterrupted(t *testing.T) {
	s := fake(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	s.Inject = func(op string, n int) *awsfake.Fault {
		if op == "PutSnapshotBlock" && n == 2 {
			cancel() // Ctrl-C mid-upload
		}
		return nil
	}
	_, err := Publish(ctx, sparseDisk(t), testConfig(s, io.Discard))
	if err == nil || !strings.Contains(err.Error(), "canceled") {
		t.Fatalf("err = %v", err)
	}
	if len(s.Snapshots()) != 0 {
		t.Fatalf("an interrupted upload left %d snapshots", len(s.Snapshots()))
	}
	if d := ops(s.Calls(), "DeleteSnapshot"); len(d) != 1 || d[0].Status != 200 {
		t.Fatalf("DeleteSnapshot calls: %v", d)
	}
}

func TestPublishRefuses(t *testing.T) {
	s := fake(t)
	dir := t.TempDir()
	qcow := filepath.Join(dir, "d.qcow2")
	os.WriteFile(qcow, []byte("QFI\xfb\x00\x00\x00\x03"), 0o644)
	odd := filepath.Join(dir, "odd.raw")
	os.WriteFile(odd, make([]byte, 1000), 0o644)
	raw := sparseDisk(t)
	for _, tc := range []struct {
		path string
		mod  func(*Config)
		want string
	}{
		{qcow, nil, "is qcow2"},
		{odd, nil, "512-byte sectors"},
		{"/nonexistent.raw", nil, "nonexistent.raw"},
		{raw, func(c *Config) { c.Region = "" }, "no region"},
		{raw, func(c *Config) { c.Name = "x" }, `image name "x"`},
		{raw, func(c *Config) { c.Name = "{{.Nope}}" }, "name template"},
		{raw, func(c *Config) { c.BootMode = "legacy-bios"; c.TPMSupport = "v2.0" }, "tpm_support needs boot_mode uefi"},
		{raw, func(c *Config) { c.VolumeType = "sc1" }, "cannot be a boot volume"},
		{raw, func(c *Config) { c.ShareAccounts = []string{"12345"} }, "12-digit"},
		{raw, func(c *Config) { c.Method = ImportSnapshot }, "needs s3_bucket"},
		{raw, func(c *Config) { c.Method = ImportSnapshot; c.S3Bucket = "b" }, "streamOptimized VMDK"},
		{raw, func(c *Config) { c.Tags = map[string]string{"aws:x": "y"} }, "reserved"},
		{raw, func(c *Config) { c.VolumeSize = 1 }, "volume_size 1 GiB is smaller than the 2 GiB disk"},
	} {
		cfg := testConfig(s, io.Discard)
		if tc.mod != nil {
			tc.mod(&cfg)
		}
		_, err := Publish(context.Background(), tc.path, cfg)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: err = %v, want %q", tc.want, err, tc.want)
		}
	}
	if n := len(s.Calls()); n != 0 {
		t.Fatalf("refused input still made %d AWS calls", n)
	}
}

func TestPublishFixedVHD(t *testing.T) {
	s := fake(t)
	raw := sparseDisk(t)
	// A fixed VHD is the raw disk rounded to MiB plus a footer.
	vhdPath := filepath.Join(t.TempDir(), "disk.vhd")
	padded := int64(1<<30 + 1<<20)
	writeSparseDisk(t, vhdPath, 1<<30+3*512)
	f, _ := os.OpenFile(vhdPath, os.O_RDWR, 0)
	f.Truncate(padded)
	f.WriteAt(vhdFooter(padded), padded)
	f.Close()
	res, err := Publish(context.Background(), vhdPath, testConfig(s, io.Discard))
	if err != nil {
		t.Fatal(err)
	}
	sameAsDisk(t, s.Snapshots()[0], raw, 1<<30+3*512)
	if res.BlocksSent != int64(len(nonZeroBlocks(t, raw))) {
		t.Fatalf("%d blocks sent: the VHD's footer reached the snapshot", res.BlocksSent)
	}
}

func vhdFooter(size int64) []byte {
	f := make([]byte, 512)
	copy(f, "conectix")
	be := func(off int, v uint64, n int) {
		for i := n - 1; i >= 0; i-- {
			f[off+i] = byte(v)
			v >>= 8
		}
	}
	be(8, 2, 4)
	be(12, 0x00010000, 4)
	be(16, ^uint64(0), 8)
	be(40, uint64(size), 8)
	be(48, uint64(size), 8)
	be(60, 2, 4)
	var sum uint32
	for i, b := range f {
		if i < 64 || i >= 68 {
			sum += uint32(b)
		}
	}
	be(64, uint64(^sum), 4)
	return f
}

// TestNameTemplate covers the name template's fields.
func TestNameTemplate(t *testing.T) {
	c := Config{Recipe: "web", Digest: "sha256:0123456789abcdef", Now: time.Date(2026, 11, 27, 8, 5, 0, 0, time.UTC),
		Args: map[string]string{"v": "2"}}
	for tmpl, want := range map[string]string{
		"{{.Name}}-{{.Date}}":               "web-2026-11-27",
		"{{.Name}} {{.Time}} ({{.Args.v}})": "web 20261127-080500 (2)",
		"{{.Name}}-{{.Digest}}":             "web-0123456789ab",
	} {
		c.Name = tmpl
		if got, err := c.ImageName(); err != nil || got != want {
			t.Errorf("%s: %q, %v", tmpl, got, err)
		}
	}
}

// TestIncrementalUpload publishes a disk, changes it (one block rewritten,
// one block zeroed, one block new), and publishes again: the second
// snapshot starts from the first and only those three blocks are sent.
func TestIncrementalUpload(t *testing.T) {
	s := fake(t)
	state := t.TempDir()
	raw := sparseDisk(t)
	cfg := testConfig(s, io.Discard)
	cfg.StateDir = state
	first, err := Publish(context.Background(), raw, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if first.Parent != "" || first.BlocksSent != int64(len(nonZeroBlocks(t, raw))) {
		t.Fatalf("first publish %+v", first)
	}

	f, _ := os.OpenFile(raw, os.O_RDWR, 0)
	f.WriteAt([]byte("changed"), 100<<20+12345)            // a block rewritten
	f.WriteAt(make([]byte, 8192), 512<<20-4096)            // zeroes the end of one block and the start of the next...
	f.WriteAt(bytes.Repeat([]byte{7}, 4096), 512<<20+4096) // ...but the next keeps data
	f.WriteAt([]byte("new"), 700<<20)                      // a block new
	f.Close()
	cfg.Digest = "sha256:" + strings.Repeat("01", 32)
	second, err := Publish(context.Background(), raw, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if second.Parent != first.Images[0].SnapshotID || second.BlocksSent != 4 {
		t.Fatalf("second publish: parent %q, %d blocks sent", second.Parent, second.BlocksSent)
	}
	var sn *awsfake.Snapshot
	for _, x := range s.Snapshots() {
		if x.ID == second.Images[0].SnapshotID {
			sn = x
		}
	}
	sameAsDisk(t, sn, raw, 1<<30+3*512)

	// Against an account where the parent does not exist (deleted, or
	// another account), the next upload is whole again.
	s2 := fake(t)
	cfg = testConfig(s2, io.Discard)
	cfg.StateDir = state
	third, err := Publish(context.Background(), raw, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if third.Parent != "" || third.BlocksSent != int64(len(nonZeroBlocks(t, raw))) {
		t.Fatalf("third publish without the parent: %+v", third)
	}
}
