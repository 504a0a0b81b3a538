package disk

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
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

// Loader files, as Debian packages install them.
var (
	systemdBootEFI = file{"usr/lib/systemd/boot/efi/systemd-bootx64.efi", "systemd-boot-efi"}
	shimEFI        = file{"usr/lib/shim/shimx64.efi.signed", "shim-signed"}
	grubEFI        = file{"usr/lib/grub/x86_64-efi-signed/grubx64.efi.signed", "grub-efi-amd64-signed"}
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
}

func (e *MissingError) Error() string {
	var parts, pkgs []string
	for _, f := range e.Files {
		parts = append(parts, "/"+f.path)
		pkgs = append(pkgs, f.pkg)
	}
	return fmt.Sprintf("boot: %s needs %s in the rootfs; install the Debian packages %s", e.Mode, strings.Join(parts, ", "), strings.Join(pkgs, " "))
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
func findKernel(img Image) (*Kernel, error) {
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
		return nil, &MissingError{"a bootable disk", []file{{"boot/vmlinuz-*", "linux-image-cloud-amd64 (or another linux-image)"}}}
	}
	sort.Slice(versions, func(i, j int) bool { return versionLess(versions[i], versions[j]) })
	v := versions[len(versions)-1]
	k := &Kernel{Version: v, Vmlinuz: "boot/vmlinuz-" + v, Initrd: "boot/initrd.img-" + v}
	for _, f := range []file{{k.Vmlinuz, "linux-image-cloud-amd64 (or another linux-image)"}, {k.Initrd, "initramfs-tools"}} {
		ok, err := f.in(img)
		if err != nil {
			return nil, err
		}
		if !ok {
			return nil, &MissingError{"a bootable disk", []file{f}}
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

// DetectBoot chooses the boot mode from what the rootfs holds, when the
// recipe does not say: grub when shim and signed GRUB are there (it works
// with Secure Boot), else systemd-boot, else none (a data disk). A loader
// that is a symlink leading outside the image is an error.
func DetectBoot(img Image) (string, error) {
	shim, err := shimEFI.in(img)
	if err != nil {
		return "", err
	}
	grub, err := grubEFI.in(img)
	if err != nil {
		return "", err
	}
	sdboot, err := systemdBootEFI.in(img)
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

func checkLoader(img Image, mode string) error {
	var need []file
	switch mode {
	case BootSystemd:
		need = []file{systemdBootEFI}
	case BootGrub:
		need = []file{shimEFI, grubEFI}
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
		return &MissingError{mode, missing}
	}
	return nil
}

// LayoutOf reads the boot layout of a finished disk (raw or fixed VHD)
// from its ESP, the first partition, as Prepare lays it out: "grub" when
// shim's grubx64.efi is there, "systemd-boot" when loader/loader.conf is,
// else "none". It reads the FAT with mtools, as Assemble writes it.
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
	for _, c := range []struct{ file, layout string }{
		{"::/EFI/BOOT/grubx64.efi", BootGrub},
		{"::/loader/loader.conf", BootSystemd},
	} {
		if proc.Command(context.Background(), "mdir", "-i", img, c.file).Run() == nil {
			return c.layout, nil
		}
	}
	return BootNone, nil
}
