// Package exporttest holds what the publishers' tests share: sparse disks
// with data where a test wants it, and the checks of what a publish
// returned or how it failed.
package exporttest

import (
	"context"
	"encoding/json"
	"github.com/diskfs/go-diskfs"
	"github.com/diskfs/go-diskfs/partition/gpt"
	"os"
	"strings"
	"testing"

	"github.com/layerimg/layerimg/export"
)

// SparseDisk writes a sparse file of size bytes at path, holding data at
// each of its offsets and zeros elsewhere.
func SparseDisk(t testing.TB, path string, size int64, data map[int64][]byte) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := f.Truncate(size); err != nil {
		t.Fatal(err)
	}
	for off, b := range data {
		if _, err := f.WriteAt(b, off); err != nil {
			t.Fatal(err)
		}
	}
}

// FailedNaming fails the test unless err, from a publish that met a fault it
// cannot get past, names each of want: the call, the resource, the code.
func FailedNaming(t testing.TB, err error, want ...string) {
	t.Helper()
	if err == nil {
		t.Fatal("publish succeeded through a permanent fault")
	}
	for _, w := range want {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error %q does not name %q", err, w)
		}
	}
}

// NeedsGrub publishes d through p, a publisher configured for Secure Boot
// or Trusted Launch: as a systemd-boot disk it must be refused, naming grub,
// and as a grub disk it must be published. It returns that result.
func NeedsGrub(t testing.TB, p export.Publisher, d export.Disk) export.Result {
	t.Helper()
	d.Boot = "systemd-boot"
	if res, err := p.Publish(context.Background(), d); err == nil || res != nil || !strings.Contains(err.Error(), "grub") {
		t.Fatalf("a systemd-boot disk: %v, %v", res, err)
	}
	d.Boot = "grub"
	res, err := p.Publish(context.Background(), d)
	if err != nil {
		t.Fatal(err)
	}
	return res
}

// Recorded checks that res is the target's and that the JSON the manifest
// records of it contains want.
func Recorded(t testing.TB, res export.Result, target, want string) {
	t.Helper()
	b, err := json.Marshal(res)
	if err != nil {
		t.Fatal(err)
	}
	if res.Target() != target || !strings.Contains(string(b), want) {
		t.Errorf("%s (want %s): %s", res.Target(), target, b)
	}
}

// GPTDisk makes a sparse raw disk of size bytes whose GPT, written by
// go-diskfs (not by the code under test), holds an ESP and a root partition
// of the Discoverable Partitions type for arch (amd64 or arm64).
func GPTDisk(t testing.TB, path string, size int64, arch string) {
	t.Helper()
	root := map[string]gpt.Type{"amd64": gpt.LinuxRootX86_64, "arm64": gpt.LinuxRootArm64}[arch]
	if root == "" {
		t.Fatalf("GPTDisk: no root type for %q", arch)
	}
	d, err := diskfs.Create(path, size, diskfs.SectorSizeDefault)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	last := uint64(size/512) - 34
	if err := d.Partition(&gpt.Table{ProtectiveMBR: true, LogicalSectorSize: 512, Partitions: []*gpt.Partition{
		{Index: 1, Start: 2048, End: 206847, Type: gpt.EFISystemPartition, Name: "esp"},
		{Index: 2, Start: 206848, End: last, Type: root, Name: "root"},
	}}); err != nil {
		t.Fatal(err)
	}
}
