package qemu

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// A disk with nothing to boot: OVMF ends in its shell (or a boot failure),
// and Boot must report that as a failure with the console's tail, quickly,
// instead of waiting for the timeout.
func TestBootFailsOnEmptyDisk(t *testing.T) {
	if _, err := os.Stat("/usr/share/OVMF/OVMF_CODE_4M.fd"); err != nil {
		t.Fatal("OVMF not installed: apt-get install ovmf qemu-system-x86 (.ci/run does)")
	}
	disk := filepath.Join(t.TempDir(), "empty.raw")
	f, _ := os.Create(disk)
	f.Truncate(64 << 20)
	f.Close()
	start := time.Now()
	err := Boot(context.Background(), Options{Disk: disk, Expect: regexp.MustCompile("never printed"), Timeout: 240 * time.Second})
	var be *Error
	if !errors.As(err, &be) {
		t.Fatalf("err = %v", err)
	}
	if strings.Contains(be.Reason, "within") {
		t.Errorf("waited for the timeout instead of seeing the failure: %v", err)
	}
	if be.Tail == "" || time.Since(start) > 200*time.Second {
		t.Errorf("tail %q after %v", be.Tail, time.Since(start))
	}
}

func TestTimeoutAndMissingDisk(t *testing.T) {
	if err := Boot(context.Background(), Options{Disk: "/nonexistent.raw"}); err == nil {
		t.Error("a missing disk booted")
	}
	disk := filepath.Join(t.TempDir(), "empty.raw")
	os.WriteFile(disk, make([]byte, 1<<20), 0o644)
	err := Boot(context.Background(), Options{Disk: disk, Expect: regexp.MustCompile("x"), Timeout: 2 * time.Second})
	var be *Error
	if !errors.As(err, &be) || !strings.Contains(be.Reason, `no "x" within 2s`) {
		t.Errorf("err = %v", err)
	}
}

// The same on arm64: qemu-system-aarch64's virt machine with AAVMF reaches
// its failure (the UEFI shell, or no bootable device) on an empty disk, and
// Boot says so before the timeout. It proves the arm64 machine, firmware and
// console wiring (a PL011 on -serial stdio) without a Debian build.
func TestBootFailsOnEmptyDiskArm64(t *testing.T) {
	if _, err := os.Stat("/usr/share/AAVMF/AAVMF_CODE.fd"); err != nil {
		t.Fatal("AAVMF not installed: apt-get install qemu-efi-aarch64 qemu-system-arm (.ci/run does)")
	}
	if testing.Short() {
		t.Skip("-short: an emulated arm64 firmware boot takes a minute or more")
	}
	disk := filepath.Join(t.TempDir(), "empty.raw")
	if err := os.WriteFile(disk, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(disk, 64<<20); err != nil {
		t.Fatal(err)
	}
	var console strings.Builder
	start := time.Now()
	err := Boot(context.Background(), Options{Disk: disk, Arch: "arm64", Expect: regexp.MustCompile("never printed"), Timeout: 280 * time.Second, Console: &console})
	var be *Error
	if !errors.As(err, &be) {
		t.Fatalf("err = %v", err)
	}
	if strings.Contains(be.Reason, "within") {
		t.Errorf("waited for the timeout instead of seeing the failure: %v", err)
	}
	t.Logf("AAVMF gave up on an empty disk after %v: %s", time.Since(start).Round(time.Second), be.Reason)
}

func TestUnknownArch(t *testing.T) {
	disk := filepath.Join(t.TempDir(), "empty.raw")
	os.WriteFile(disk, make([]byte, 1<<20), 0o644)
	err := Boot(context.Background(), Options{Disk: disk, Arch: "riscv64"})
	if err == nil || !strings.Contains(err.Error(), "riscv64") {
		t.Errorf("err = %v", err)
	}
}
