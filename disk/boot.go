package disk

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"

	diskfs "github.com/diskfs/go-diskfs"

	"github.com/layerimg/layerimg/internal/proc"
)

// Boot modes.
const (
	BootSystemd = "systemd-boot"
	BootGrub    = "grub"
	BootNone    = "none"
)

type file struct{ path, pkg string }

// in reports whether f is a regular file in the image, following symlinks
// inside the image only; one that leads outside it is an error.
func (f file) in(img Image) (bool, error) {
	fi, err := statImage(img, f.path)
	if err != nil || fi == nil {
		return false, err
	}
	return fi.Mode().IsRegular(), nil
}

// statImage stats p inside the image (nil, nil when it is not there), with
// symlinks resolved inside the image.
func statImage(img Image, p string) (fs.FileInfo, error) {
	fi, err := img.Stat(p)
	if errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENOTDIR) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("boot: %w", err)
	}
	return fi, nil
}

// MissingError names the files a boot mode needs and the packages that have
// them.
type MissingError struct {
	Mode  string
	Files []file
	Arch  string // the disk's architecture, when the files are its own
}

func (e *MissingError) Error() string {
	var parts, pkgs []string
	for _, f := range e.Files {
		parts = append(parts, "/"+f.path)
		pkgs = append(pkgs, f.pkg)
	}
	on := ""
	if e.Arch != "" {
		on = " on " + e.Arch
	}
	return fmt.Sprintf("boot: %s%s needs %s in the rootfs; install the Debian packages %s", e.Mode, on, strings.Join(parts, ", "), strings.Join(pkgs, " "))
}

// Kernel is the kernel and initrd the disk boots.
type Kernel struct {
	Version      string
	Vmlinuz      string // path in the rootfs, without a leading slash
	Initrd       string
	RootSymlinks bool // /vmlinuz and /initrd.img exist: GRUB follows kernel upgrades
}

// findKernel picks the newest /boot/vmlinuz-VERSION that has an initrd.
// Every path is resolved inside the image: a kernel or initrd that is a
// symlink leading outside it is an error, never a host file.
func findKernel(img Image, a arch) (*Kernel, error) {
	ents, err := img.ReadDir("boot")
	if err != nil && !errors.Is(err, fs.ErrNotExist) && !errors.Is(err, syscall.ENOTDIR) {
		return nil, fmt.Errorf("boot: %w", err)
	}
	var versions []string
	for _, e := range ents {
		if v, ok := strings.CutPrefix(e.Name(), "vmlinuz-"); ok {
			versions = append(versions, v)
		}
	}
	if len(versions) == 0 {
		return nil, &MissingError{Mode: "a bootable disk", Files: []file{{"boot/vmlinuz-*", a.kernelPkg + " (or another linux-image)"}}, Arch: a.name}
	}
	sort.Slice(versions, func(i, j int) bool { return versionLess(versions[i], versions[j]) })
	v := versions[len(versions)-1]
	k := &Kernel{Version: v, Vmlinuz: "boot/vmlinuz-" + v, Initrd: "boot/initrd.img-" + v}
	for _, f := range []file{{k.Vmlinuz, a.kernelPkg + " (or another linux-image)"}, {k.Initrd, "initramfs-tools"}} {
		ok, err := f.in(img)
		if err != nil {
			return nil, err
		}
		if !ok {
			return nil, &MissingError{Mode: "a bootable disk", Files: []file{f}, Arch: a.name}
		}
	}
	// GRUB's config names /vmlinuz and /initrd.img; the guest resolves them,
	// but one that leads outside the image is refused here all the same.
	k.RootSymlinks = true
	for _, p := range []string{"vmlinuz", "initrd.img"} {
		ok, err := file{path: p}.in(img)
		if err != nil {
			return nil, err
		}
		k.RootSymlinks = k.RootSymlinks && ok
	}
	return k, nil
}

// versionLess compares kernel versions number by number ("6.1.0-9" < "6.1.0-10").
func versionLess(a, b string) bool {
	split := func(s string) []string {
		return strings.FieldsFunc(s, func(r rune) bool { return r == '.' || r == '-' || r == '+' || r == '~' })
	}
	pa, pb := split(a), split(b)
	for i := 0; i < len(pa) && i < len(pb); i++ {
		na, ea := strconv.Atoi(pa[i])
		nb, eb := strconv.Atoi(pb[i])
		if ea == nil && eb == nil {
			if na != nb {
				return na < nb
			}
			continue
		}
		if pa[i] != pb[i] {
			return pa[i] < pb[i]
		}
	}
	return len(pa) < len(pb)
}

// DetectBoot chooses the boot mode from what the rootfs holds for the
// architecture archName (amd64, arm64), when the recipe does not say: grub
// when shim and signed GRUB are there (it works with Secure Boot), else
// systemd-boot, else none (a data disk). A loader that is a symlink leading
// outside the image is an error.
func DetectBoot(img Image, archName string) (string, error) {
	a, err := lookupArch(archName)
	if err != nil {
		return "", err
	}
	shim, err := a.shim.in(img)
	if err != nil {
		return "", err
	}
	grub, err := a.grub.in(img)
	if err != nil {
		return "", err
	}
	sdboot, err := a.systemdBoot.in(img)
	if err != nil {
		return "", err
	}
	switch {
	case shim && grub:
		return BootGrub, nil
	case sdboot:
		return BootSystemd, nil
	}
	return BootNone, nil
}

func checkLoader(img Image, mode string, a arch) error {
	var need []file
	switch mode {
	case BootSystemd:
		need = []file{a.systemdBoot}
	case BootGrub:
		need = []file{a.shim, a.grub}
	}
	var missing []file
	for _, f := range need {
		ok, err := f.in(img)
		if err != nil {
			return err
		}
		if !ok {
			missing = append(missing, f)
		}
	}
	if len(missing) > 0 {
		return &MissingError{Mode: mode, Files: missing, Arch: a.name}
	}
	return nil
}

// LayoutOf reads the boot layout of a finished disk (raw or fixed VHD)
// from its ESP, the first partition, as Prepare lays it out: "grub" when
// shim's grubx64.efi (grubaa64.efi on arm64) is there, "systemd-boot" when
// loader/loader.conf is, else "none". It reads the FAT with mtools, as
// Assemble writes it.
func LayoutOf(path string) (string, error) {
	d, err := diskfs.Open(path, diskfs.WithOpenMode(diskfs.ReadOnly))
	if err != nil {
		return "", fmt.Errorf("%s: %w", path, err)
	}
	defer d.Close()
	pt, err := d.GetPartitionTable()
	if err != nil {
		return "", fmt.Errorf("%s: no partition table: %w", path, err)
	}
	parts := pt.GetPartitions()
	if len(parts) == 0 {
		return BootNone, nil
	}
	img := fmt.Sprintf("%s@@%d", path, parts[0].GetStart())
	type check struct{ file, layout string }
	var checks []check
	for _, a := range arches {
		checks = append(checks, check{"::/EFI/BOOT/" + a.grubName(), BootGrub})
	}
	for _, c := range append(checks, check{"::/loader/loader.conf", BootSystemd}) {
		if proc.Command(context.Background(), "mdir", "-i", img, c.file).Run() == nil {
			return c.layout, nil
		}
	}
	return BootNone, nil
}

// checkKernel refuses, for systemd-boot on arm64, a staged kernel that is
// not an EFI application. systemd-boot starts the kernel through its EFI
// stub, and on arm64 it neither unpacks nor hands over to anything else:
// Debian's vmlinuz there is the Image itself, a PE/COFF binary ("MZ"), but
// a gzip-compressed Image (as some distributions ship) has no stub and
// would not boot.
func (p *Prepared) checkKernel() error {
	if p.Boot != BootSystemd || p.Arch != ARM64 || p.Kernel == nil {
		return nil
	}
	f, err := os.Open(filepath.Join(p.Stage, espMount, "vmlinuz-"+p.Kernel.Version))
	if err != nil {
		return fmt.Errorf("boot: the staged kernel: %w", err)
	}
	defer f.Close()
	head := make([]byte, 2)
	if _, err := io.ReadFull(f, head); err != nil && err != io.ErrUnexpectedEOF {
		return fmt.Errorf("boot: reading the staged kernel: %w", err)
	}
	if string(head) == "MZ" {
		return nil
	}
	what := "not an EFI application (no \"MZ\" PE/COFF header)"
	if head[0] == 0x1f && head[1] == 0x8b {
		what = "gzip-compressed, with no EFI stub"
	}
	return fmt.Errorf("boot: /%s is %s; systemd-boot on arm64 starts only a kernel with an EFI stub (an arm64 Image or an EFI zboot vmlinuz, as Debian's linux-image-*-arm64 are): install such a kernel, or use boot: grub with a GRUB that unpacks it", p.Kernel.Vmlinuz, what)
}
