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
