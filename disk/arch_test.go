package disk

import (
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/layerimg/layerimg/rootfs"
)

func testArch(name string) arch {
	a, err := lookupArch(name)
	if err != nil {
		panic(err)
	}
	return a
}

var x64, aa64 = testArch(AMD64), testArch(ARM64)

// arm64Layer is a small arm64 rootfs: a kernel that is a PE/COFF Image (as
// Debian's arm64 vmlinuz is), its initrd, and loaders, as given.
func arm64Layer(t *testing.T, kernel string, loaders ...file) []byte {
	es := []ent{dir("etc/"), reg("etc/hostname", "arm\n", 0o644), dir("boot/"),
		reg("boot/vmlinuz-6.1.0-10-cloud-arm64", kernel, 0o644), reg("boot/initrd.img-6.1.0-10-cloud-arm64", "initrd", 0o644),
		symlink("vmlinuz", "boot/vmlinuz-6.1.0-10-cloud-arm64"), symlink("initrd.img", "boot/initrd.img-6.1.0-10-cloud-arm64")}
	for _, f := range loaders {
		es = append(es, reg(f.path, "MZ fake "+f.pkg+" "+filepath.Base(f.path), 0o644))
	}
	return layer(t, es...)
}

// An arm64 disk: BOOTAA64.EFI from the image's arm64 loader, the arm64 root
// type, the PL011 console, and the disk says it is arm64 in every format.
func TestArm64Layout(t *testing.T) {
	const image = "MZ\x00\x00 arm64 Image with an EFI stub"
	for _, tc := range []struct {
		boot    string
		loaders []file
		esp     map[string]string // ESP path -> the image file it copies
	}{
		{BootSystemd, []file{aa64.systemdBoot}, map[string]string{"EFI/BOOT/BOOTAA64.EFI": aa64.systemdBoot.path, "vmlinuz-6.1.0-10-cloud-arm64": "boot/vmlinuz-6.1.0-10-cloud-arm64"}},
		{BootGrub, []file{aa64.shim, aa64.grub}, map[string]string{"EFI/BOOT/BOOTAA64.EFI": aa64.shim.path, "EFI/BOOT/grubaa64.efi": aa64.grub.path}},
	} {
		t.Run(tc.boot, func(t *testing.T) {
			spec := Spec{Arch: ARM64, Boot: tc.boot, IDs: DeriveIDs("sha256:arm64", false), Epoch: 1700000000}
			stage := t.TempDir()
			raw := filepath.Join(t.TempDir(), "disk.raw")
			_, l, p, err := diskStage(t, spec, stage, raw, [][]byte{arm64Layer(t, image, tc.loaders...)}, nil)
			must(t, err)
			if p.Arch != ARM64 {
				t.Errorf("Prepared.Arch = %q", p.Arch)
			}
			if v := oracle(t, "sgdisk", "-v", raw); !strings.Contains(v, "No problems found") {
				t.Errorf("sgdisk -v: %s", v)
			}
			if info := oracle(t, "sgdisk", "-i", "2", raw); !strings.Contains(info, "B921B045-1DF0-41C3-AF44-4C6F280D3FAE") {
				t.Errorf("p2 is not the arm64 root type:\n%s", info)
			}
			oracle(t, "e2fsck", "-fn", fmt.Sprintf("%s?offset=%d", raw, l.RootStart))
			esp := extract(t, raw, l.ESPStart, l.ESPSize)
			oracle(t, "fsck.vfat", "-n", esp)
			for dst, src := range tc.esp {
				want := "MZ fake "
				if strings.HasPrefix(src, "boot/") {
					want = image
				}
				if got := oracle(t, "mtype", "-i", esp, "::/"+dst); !strings.HasPrefix(got, want) || (want != image && !strings.HasSuffix(got, filepath.Base(src))) {
					t.Errorf("%s on the ESP holds %q, not /%s", dst, got, src)
				}
			}
			if dir := oracle(t, "mdir", "-b", "-i", esp, "::/EFI/BOOT"); strings.Contains(strings.ToUpper(dir), "X64") {
				t.Errorf("an x64 loader on an arm64 ESP:\n%s", dir)
			}
			cfg := "loader/entries/layerimg.conf"
			if tc.boot == BootGrub {
				cfg = "EFI/BOOT/grub.cfg"
			}
			if got := oracle(t, "mtype", "-i", esp, "::/"+cfg); !strings.Contains(got, "console=tty0 console=ttyAMA0,115200n8") || strings.Contains(got, "ttyS0") {
				t.Errorf("%s: the console is not the PL011:\n%s", cfg, got)
			}
			if got, err := LayoutOf(raw); got != tc.boot || err != nil {
				t.Errorf("LayoutOf = %q, %v", got, err)
			}
			if got, err := ArchOf(context.Background(), raw); got != ARM64 || err != nil {
				t.Errorf("ArchOf(raw) = %q, %v", got, err)
			}
			qcow := filepath.Join(t.TempDir(), "disk.qcow2")
			must(t, Convert(context.Background(), raw, qcow, QCOW2, spec.IDs, time.Unix(0, 0)))
			if got, err := ArchOf(context.Background(), qcow); got != ARM64 || err != nil {
				t.Errorf("ArchOf(qcow2) = %q, %v", got, err)
			}
		})
	}
}

// The amd64 disk keeps its x86-64 root type, and ArchOf reads it.
func TestArchOfAMD64(t *testing.T) {
	spec := Spec{Boot: BootSystemd, IDs: DeriveIDs("sha256:x64", false)}
	raw := filepath.Join(t.TempDir(), "disk.raw")
	_, _, p, err := diskStage(t, spec, t.TempDir(), raw, [][]byte{baseLayer(t)}, nil)
	must(t, err)
	if p.Arch != AMD64 {
		t.Errorf("an image with only x64 loaders was taken for %q", p.Arch)
	}
	if got, err := ArchOf(context.Background(), raw); got != AMD64 || err != nil {
		t.Errorf("ArchOf = %q, %v", got, err)
	}
	// A disk with no GPT, and one whose partitions have no DPS root type.
	empty := filepath.Join(t.TempDir(), "empty.raw")
	must(t, os.WriteFile(empty, make([]byte, 2<<20), 0o644))
	if _, err := ArchOf(context.Background(), empty); err == nil || !strings.Contains(err.Error(), "no GPT") {
		t.Errorf("no GPT: %v", err)
	}
	other := filepath.Join(t.TempDir(), "other.raw")
	must(t, os.WriteFile(other, make([]byte, 4<<20), 0o644))
	oracle(t, "sgdisk", "-n", "1:2048:4095", "-t", "1:8300", other)
	if _, err := ArchOf(context.Background(), other); err == nil || !strings.Contains(err.Error(), "no partition has a root type") {
		t.Errorf("a plain Linux partition: %v", err)
	}
}

// A rootfs with no platform (a tar) is taken for the architecture of the
// loaders it holds.
func TestArchDetectedFromLoaders(t *testing.T) {
	for _, tc := range []struct {
		loaders []file
		want    string
	}{
		{[]file{aa64.systemdBoot}, ARM64},
		{[]file{aa64.shim, aa64.grub}, ARM64},
		{[]file{x64.systemdBoot}, AMD64},
		{nil, AMD64},
		{[]file{x64.systemdBoot, aa64.systemdBoot}, AMD64}, // both: the default
	} {
		tree, err := treeOf(t, arm64Layer(t, "MZ", tc.loaders...))
		must(t, err)
		p, err := Prepare(context.Background(), tree, t.TempDir(), Spec{Boot: BootNone})
		if err != nil || p.Arch != tc.want {
			t.Errorf("loaders %v: arch %q, %v; want %s", tc.loaders, p.Arch, err, tc.want)
		}
	}
}

// The mismatches a user can make get errors that name what was looked for.
func TestArm64Errors(t *testing.T) {
	ctx := context.Background()
	x64Only, err := treeOf(t, arm64Layer(t, "MZ", x64.systemdBoot, x64.shim, x64.grub))
	must(t, err)
	for _, tc := range []struct {
		boot string
		want []string
	}{
		{BootSystemd, []string{"systemd-boot on arm64 needs /usr/lib/systemd/boot/efi/systemd-bootaa64.efi", "systemd-boot-efi"}},
		{BootGrub, []string{"grub on arm64 needs /usr/lib/shim/shimaa64.efi.signed, /usr/lib/grub/arm64-efi-signed/grubaa64.efi.signed", "shim-signed grub-efi-arm64-signed"}},
	} {
		_, err := Prepare(ctx, x64Only, t.TempDir(), Spec{Arch: ARM64, Boot: tc.boot})
		var me *MissingError
		if !errors.As(err, &me) {
			t.Errorf("%s with only x64 loaders: %v", tc.boot, err)
			continue
		}
		for _, w := range tc.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%s: %q does not say %q", tc.boot, err, w)
			}
		}
	}
	// Detection looks for this architecture's loaders only: none here.
	if b, err := DetectBoot(x64Only, ARM64); b != BootNone || err != nil {
		t.Errorf("DetectBoot(arm64) with x64 loaders: %q, %v", b, err)
	}
	noKernel, err := treeOf(t, layer(t, reg(aa64.systemdBoot.path, "MZ", 0o644)))
	must(t, err)
	if _, err := Prepare(ctx, noKernel, t.TempDir(), Spec{Arch: ARM64}); err == nil || !strings.Contains(err.Error(), "linux-image-cloud-arm64") {
		t.Errorf("no kernel: %v", err)
	}
	if _, err := Prepare(ctx, rootfs.NewTree(), t.TempDir(), Spec{Arch: "riscv64"}); err == nil || !strings.Contains(err.Error(), `"riscv64"`) || !strings.Contains(err.Error(), "amd64 and arm64") {
		t.Errorf("riscv64: %v", err)
	}
	// A gzip-compressed Image has no EFI stub: systemd-boot cannot start it.
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write([]byte("ARM64 Image"))
	zw.Close()
	for _, tc := range []struct{ kernel, want string }{
		{gz.String(), "gzip-compressed"},
		{"\x00\x00 raw", "not an EFI application"},
	} {
		raw := filepath.Join(t.TempDir(), "disk.raw")
		_, _, _, err := diskStage(t, Spec{Arch: ARM64, Boot: BootSystemd, IDs: DeriveIDs("sha256:gz", false)}, t.TempDir(), raw, [][]byte{arm64Layer(t, tc.kernel, aa64.systemdBoot)}, nil)
		if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "/boot/vmlinuz-6.1.0-10-cloud-arm64") {
			t.Errorf("kernel %q: %v", tc.kernel, err)
		}
		if _, serr := os.Stat(raw); serr == nil {
			t.Errorf("kernel %q: a disk was left at %s", tc.kernel, raw)
		}
	}
	// The check is for systemd-boot only: a GRUB may unpack the kernel.
	raw := filepath.Join(t.TempDir(), "disk.raw")
	if _, _, _, err := diskStage(t, Spec{Arch: ARM64, Boot: BootGrub, IDs: DeriveIDs("sha256:gz", false)}, t.TempDir(), raw, [][]byte{arm64Layer(t, gz.String(), aa64.shim, aa64.grub)}, nil); err != nil {
		t.Errorf("grub with a compressed kernel: %v", err)
	}
}

func TestArchOfPlatform(t *testing.T) {
	for in, want := range map[string]string{"linux/arm64": ARM64, "linux/arm64/v8": ARM64, "linux/amd64": AMD64, "": ""} {
		if got := ArchOfPlatform(in); got != want {
			t.Errorf("ArchOfPlatform(%q) = %q, want %q", in, got, want)
		}
	}
}
