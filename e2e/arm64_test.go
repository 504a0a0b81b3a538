package e2e_test

import (
	"bytes"
	"context"
	"debug/elf"
	"debug/pe"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/layerimg/layerimg"
	"github.com/layerimg/layerimg/disk"
	"github.com/layerimg/layerimg/disk/qemu"
	"github.com/layerimg/layerimg/recipes"
)

// arm64BootTimeout replaces the recipe's boot test timeout (300 s, sized for
// amd64) in the arm64 build: every guest instruction is emulated under TCG,
// on a machine that may be running other builds.
const arm64BootTimeout = "20m"

// lockedBuffer is a bytes.Buffer the build's logger may write to from
// several goroutines.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// debianCloudArm64 is recipes/examples/debian-cloud.yaml built with
// --platform linux/arm64 alone: the bootstrap and run steps under qemu-user
// emulation, the disk with BOOTAA64.EFI, and the recipe's boot test (virtio
// and NVMe) in qemu-system-aarch64 with AAVMF. Raw only: the formats'
// writers do not depend on the architecture, and TestDebianCloud covers
// them. Its log (with the boots' times) goes to logs.
func debianCloudArm64(t *testing.T, logs *lockedBuffer) *sharedBuild {
	t.Helper()
	needRoot(t)
	if testing.Short() {
		t.Skip("-short: skipping the emulated arm64 Debian build")
	}
	return shared.build(t, "debian-cloud-arm64", func() (*recipes.Recipe, error) {
		r, err := layerimg.LoadRecipe("../recipes/examples/debian-cloud.yaml", nil, "linux/arm64")
		if err != nil {
			return nil, err
		}
		for i := range r.Tests {
			if r.Tests[i].Boot != nil {
				r.Tests[i].Boot.Timeout = arm64BootTimeout
			}
		}
		return r, nil
	}, func(dir string) layerimg.Options {
		cache := filepath.Join(dir, "cache")
		if c := os.Getenv("LAYERIMG_E2E_ARM64_CACHE"); c != "" {
			// For reruns on a workstation: a layer cache that already holds
			// this recipe's emulated bootstrap (half an hour on a busy
			// 2-core machine). CI leaves it unset and builds cold.
			cache = c
		}
		return layerimg.Options{CacheDir: cache, DiskDir: filepath.Join(dir, "out"),
			OCILayout: filepath.Join(dir, "out", "image"), Formats: []string{"raw"}, Log: newTestLogger(logs)}
	})
}

// TestArm64DebianCloud builds the arm64 debian-cloud image from the same
// recipe as amd64's, checks the disk with outside tools (sgdisk, e2fsck,
// fsck.vfat, the PE and ELF headers of what it holds), and checks that the
// recipe's boot test reached login: on virtio and NVMe under TCG.
func TestArm64DebianCloud(t *testing.T) {
	logs := &lockedBuffer{}
	fx := debianCloudArm64(t, logs)
	res := fx.Res
	boots := bootTimes(logs.String())
	var booting time.Duration
	for ctrl, d := range boots {
		t.Logf("arm64 boot to login: on %s under TCG: %s", ctrl, d)
		booting += d
	}
	t.Logf("arm64 build (emulated bootstrap, steps, tests and disk): %s; with the boots: %s; load average now: %s",
		(fx.Took - booting).Round(time.Second), fx.Took.Round(time.Second), loadavg())
	if res.Platform != "linux/arm64" || res.Disk == nil || res.Disk.Boot != "systemd-boot" {
		t.Fatalf("platform %s, disk %+v", res.Platform, res.Disk)
	}
	if n := strings.Count(fx.Console, "login: "); n < 2 || len(boots) != 2 {
		t.Errorf("the boot test reached %d login prompts and logged boots %v, want virtio and nvme", n, boots)
	}
	raw := res.Disk.Files["raw"].Path
	if a, err := disk.ArchOf(context.Background(), raw); a != "arm64" || err != nil {
		t.Errorf("ArchOf = %q, %v", a, err)
	}

	if v := run(t, "sgdisk", "-v", raw); !strings.Contains(v, "No problems found") {
		t.Errorf("sgdisk -v:\n%s", v)
	}
	if info := run(t, "sgdisk", "-i", "1", raw); !strings.Contains(info, "C12A7328-F81F-11D2-BA4B-00A0C93EC93B") {
		t.Errorf("p1 is not an ESP:\n%s", info)
	}
	if info := run(t, "sgdisk", "-i", "2", raw); !strings.Contains(info, "B921B045-1DF0-41C3-AF44-4C6F280D3FAE") {
		t.Errorf("p2 does not have the arm64 root type:\n%s", info)
	}
	p1, p2 := partitions(t, raw)
	rootfs := fmt.Sprintf("%s?offset=%d", raw, p2[0])
	run(t, "e2fsck", "-fn", rootfs)
	esp := filepath.Join(t.TempDir(), "esp.img")
	run(t, "dd", "if="+raw, "of="+esp, "bs=1M", fmt.Sprintf("skip=%d", p1[0]>>20), fmt.Sprintf("count=%d", p1[1]>>20), "status=none")
	run(t, "fsck.vfat", "-n", esp)

	// The ESP: BOOTAA64.EFI and the kernel are arm64 PE/COFF images (the
	// kernel's EFI stub is what systemd-boot starts), and nothing x64.
	espDir := t.TempDir()
	args := append([]string{"-s", "-n", "-i", esp, "::/EFI", "::/loader"}, kernelOnESP(t, esp)...)
	mcopy := exec.Command("mcopy", append(args, espDir)...)
	mcopy.Env = append(os.Environ(), "MTOOLS_SKIP_CHECK=1")
	if out, err := mcopy.CombinedOutput(); err != nil {
		t.Fatalf("mcopy: %v\n%s", err, out)
	}
	boot, _ := filepath.Glob(filepath.Join(espDir, "EFI", "BOOT", "*"))
	if len(boot) != 1 || filepath.Base(boot[0]) != "BOOTAA64.EFI" {
		t.Errorf("EFI/BOOT holds %v, want BOOTAA64.EFI alone", boot)
	}
	kernels, _ := filepath.Glob(filepath.Join(espDir, "vmlinuz-*"))
	for _, f := range append(boot, kernels...) {
		peMachine(t, f, pe.IMAGE_FILE_MACHINE_ARM64)
	}
	if len(kernels) != 1 {
		t.Fatalf("kernels on the ESP: %v", kernels)
	}
	if head := readHead(t, kernels[0], 0x40); string(head[0x38:0x3c]) == "ARM\x64" {
		t.Logf("the kernel on the ESP is an arm64 Image with an EFI stub (PE/COFF, \"ARM\\x64\" magic), uncompressed: %d bytes", fileSize(t, kernels[0]))
	} else {
		t.Logf("the kernel on the ESP is a PE/COFF image without the Image magic (EFI zboot?): %q", head[:8])
	}
	entry, err := os.ReadFile(filepath.Join(espDir, "loader", "entries", "layerimg.conf"))
	if err != nil || !strings.Contains(string(entry), "console=tty0 console=ttyAMA0,115200n8") {
		t.Errorf("loader entry (%v):\n%s", err, entry)
	}

	// The root filesystem's programs are aarch64 ELF.
	sh := filepath.Join(t.TempDir(), "sh")
	run(t, "debugfs", "-R", "dump -p /usr/bin/dash "+sh, rootfs)
	f, err := elf.Open(sh)
	if err != nil {
		t.Fatalf("/usr/bin/dash from the disk: %v", err)
	}
	if f.Machine != elf.EM_AARCH64 {
		t.Errorf("/usr/bin/dash is %v, want EM_AARCH64", f.Machine)
	}
	f.Close()

	// The grub layout of the same image (shimaa64 as BOOTAA64.EFI, Debian's
	// signed grubaa64) boots with Secure Boot on under AAVMF.
	t.Run("grub with secure boot", func(t *testing.T) {
		ctx := context.Background()
		d, err := layerimg.DiskFromSource(ctx, "oci-layout:"+fx.Opts.OCILayout, recipes.Disk{Boot: "grub"}, []string{"raw"}, t.TempDir(), false, layerimg.Options{CacheDir: fx.Opts.CacheDir})
		if err != nil {
			t.Fatal(err)
		}
		if a, err := disk.ArchOf(ctx, d.Files["raw"].Path); a != "arm64" || err != nil {
			t.Errorf("the grub disk: ArchOf = %q, %v", a, err)
		}
		var con bytes.Buffer
		start := time.Now()
		if err := qemu.Boot(ctx, qemu.Options{Disk: d.Files["raw"].Path, Arch: "arm64", SecureBoot: true, Console: &con, Timeout: 20 * time.Minute}); err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(con.String(), "Secure boot enabled") {
			t.Errorf("booted, but Secure Boot was not on:\n%s", tail(con.String()))
		}
		t.Logf("shim + signed GRUB with Secure Boot: login: after %s", time.Since(start).Round(time.Second))
	})

	// AAVMF's Secure Boot (Microsoft's keys in AAVMF_VARS.ms.fd) refuses the
	// unsigned systemd-boot, as OVMF does: the firmware enforces it.
	t.Run("secure boot refuses unsigned", func(t *testing.T) {
		start := time.Now()
		err := qemu.Boot(context.Background(), qemu.Options{Disk: raw, Arch: "arm64", SecureBoot: true, Timeout: 10 * time.Minute})
		if err == nil || !strings.Contains(err.Error(), "Access Denied") {
			t.Errorf("unsigned BOOTAA64.EFI under Secure Boot: %v", err)
		}
		t.Logf("refused after %s", time.Since(start).Round(time.Second))
	})
}

// bootTimes reads the boot test's "booted" log lines: controller -> time.
func bootTimes(log string) map[string]time.Duration {
	re := regexp.MustCompile(`msg=booted .*controller=(\S+) elapsed=(\S+)`)
	got := map[string]time.Duration{}
	for _, m := range re.FindAllStringSubmatch(log, -1) {
		if d, err := time.ParseDuration(m[2]); err == nil {
			got[m[1]] = d
		}
	}
	return got
}

// kernelOnESP lists the ESP's vmlinuz-* files as mcopy names them.
func kernelOnESP(t *testing.T, esp string) []string {
	t.Helper()
	cmd := exec.Command("mdir", "-b", "-i", esp, "::/")
	cmd.Env = append(os.Environ(), "MTOOLS_SKIP_CHECK=1")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("mdir: %v\n%s", err, out)
	}
	var ks []string
	for _, l := range strings.Fields(string(out)) {
		if strings.HasPrefix(l, "::/vmlinuz-") {
			ks = append(ks, l)
		}
	}
	return ks
}

// peMachine checks that path is a PE/COFF image for machine.
func peMachine(t *testing.T, path string, machine uint16) {
	t.Helper()
	f, err := pe.Open(path)
	if err != nil {
		t.Errorf("%s is not PE/COFF: %v", filepath.Base(path), err)
		return
	}
	defer f.Close()
	if f.Machine != machine {
		t.Errorf("%s is for machine %#x, want %#x", filepath.Base(path), f.Machine, machine)
	}
}

func readHead(t *testing.T, path string, n int) []byte {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b := make([]byte, n)
	if _, err := f.ReadAt(b, 0); err != nil {
		t.Fatal(err)
	}
	return b
}

func fileSize(t *testing.T, path string) int64 {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Size()
}

func loadavg() string {
	b, _ := os.ReadFile("/proc/loadavg")
	return strings.TrimSpace(string(b))
}
