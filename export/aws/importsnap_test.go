package aws

import (
	"context"
	"fmt"
	"io"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/johannesboyne/gofakes3"
	"github.com/johannesboyne/gofakes3/backend/s3mem"

	"github.com/layerimg/layerimg/disk/format"
	"github.com/layerimg/layerimg/internal/awsfake"
)

// s3 starts gofakes3 in-process with one bucket and wires the fake EC2's
// ImportSnapshot to read from it and to convert with qemu-img, a decoder
// nobody here wrote.
func fakeS3(t *testing.T, s *awsfake.Server, bucket string) (*s3mem.Backend, string) {
	t.Helper()
	if _, err := exec.LookPath("qemu-img"); err != nil {
		t.Fatal("qemu-img is needed (apt-get install qemu-utils)")
	}
	be := s3mem.New()
	if err := be.CreateBucket(bucket); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(gofakes3.New(be).Server())
	t.Cleanup(srv.Close)
	s.S3Get = func(b, k string) ([]byte, error) {
		o, err := be.GetObject(b, k, nil)
		if err != nil {
			return nil, err
		}
		defer o.Contents.Close()
		return io.ReadAll(o.Contents)
	}
	dir := t.TempDir()
	s.ImportConvert = func(format string, data []byte) ([]byte, error) {
		in, out := filepath.Join(dir, "in"), filepath.Join(dir, "out.raw")
		if err := os.WriteFile(in, data, 0o644); err != nil {
			return nil, err
		}
		if b, err := exec.Command("qemu-img", "convert", "-f", strings.ToLower(format), "-O", "raw", in, out).CombinedOutput(); err != nil {
			return nil, fmt.Errorf("qemu-img: %s", b)
		}
		return os.ReadFile(out)
	}
	return be, srv.URL
}

func TestPublishImportSnapshot(t *testing.T) {
	s := fake(t)
	be, url := fakeS3(t, s, "images")
	s.PendingPolls = 2
	raw := sparseDisk(t)
	vmdkPath := filepath.Join(t.TempDir(), "disk.vmdk")
	if err := format.Convert(context.Background(), raw, vmdkPath, format.VMDK, format.Stamp{}); err != nil {
		t.Fatal(err)
	}
	cfg := testConfig(s, io.Discard)
	cfg.Method, cfg.S3Bucket, cfg.S3Endpoint = ImportSnapshot, "images", url
	res, err := Publish(context.Background(), vmdkPath, cfg)
	if err != nil {
		t.Fatal(err)
	}
	snaps := s.Snapshots()
	if len(snaps) != 1 || res.Images[0].SnapshotID != snaps[0].ID {
		t.Fatalf("snapshots: %+v, result %+v", snaps, res)
	}
	// qemu-img's reading of the uploaded VMDK is the raw disk (rounded up
	// to a whole grain by the VMDK).
	sameAsDisk(t, snaps[0], raw, 1<<30+3*512)
	if im := s.Images()[0]; im.Tags[DigestTag] != cfg.Digest || im.BootMode != "uefi" {
		t.Fatalf("image: %+v", im)
	}
	// The S3 object was a vehicle only.
	if l, err := be.ListBucket("images", nil, gofakes3.ListBucketPage{}); err != nil || len(l.Contents) != 0 {
		t.Fatalf("objects left in the bucket: %v %v", l, err)
	}
}

func TestImportSnapshotFailureCleansUp(t *testing.T) {
	s := fake(t)
	be, url := fakeS3(t, s, "images")
	s.ImportConvert = func(string, []byte) ([]byte, error) { return nil, fmt.Errorf("Unsupported kernel version") }
	dir := t.TempDir()
	raw := sparseDisk(t)
	vmdkPath := filepath.Join(dir, "disk.vmdk")
	if err := format.Convert(context.Background(), raw, vmdkPath, format.VMDK, format.Stamp{}); err != nil {
		t.Fatal(err)
	}
	cfg := testConfig(s, io.Discard)
	cfg.Method, cfg.S3Bucket, cfg.S3Endpoint = ImportSnapshot, "images", url
	_, err := Publish(context.Background(), vmdkPath, cfg)
	if err == nil || !strings.Contains(err.Error(), "Unsupported kernel version") || !strings.Contains(err.Error(), "import task import-snap-") {
		t.Fatalf("err = %v", err)
	}
	if l, _ := be.ListBucket("images", nil, gofakes3.ListBucketPage{}); len(l.Contents) != 0 {
		t.Fatal("the VMDK was left in the bucket")
	}
	if len(s.Snapshots()) != 0 || len(s.Images()) != 0 {
		t.Fatal("a failed import left resources")
	}
}
