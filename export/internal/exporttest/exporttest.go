// Package exporttest holds what the publishers' tests share: sparse disks
// with data where a test wants it, and the checks of what a publish
// returned or how it failed.
package exporttest

import (
	"context"
	"encoding/json"
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
