package disk

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/diskfs/go-diskfs/partition/gpt"

	"github.com/layerimg/layerimg/disk/format"
	"github.com/layerimg/layerimg/internal/proc"
)

// Architectures a bootable disk can be made for, as GOARCH and OCI name them.
const (
	AMD64 = "amd64"
	ARM64 = "arm64"
)

// arch is what differs between the architectures' UEFI disks.
type arch struct {
	name string
	// efiSuffix names the removable-media loader, EFI/BOOT/BOOT<X>.EFI, and
	// shim's second stage, grub<x>.efi (UEFI spec, 3.5.1.1).
	efiSuffix string
	// rootType is the root partition's type in the Discoverable Partitions
	// Specification, which systemd-gpt-auto-generator reads.
	rootType    gpt.Type
	systemdBoot file
	shim, grub  file
	kernelPkg   string // a Debian package with a kernel, for errors
	serial      string // the serial console's device, for console=
}

var arches = []arch{
	{
		name: AMD64, efiSuffix: "x64", rootType: gpt.LinuxRootX86_64,
		systemdBoot: file{"usr/lib/systemd/boot/efi/systemd-bootx64.efi", "systemd-boot-efi"},
		shim:        file{"usr/lib/shim/shimx64.efi.signed", "shim-signed"},
		grub:        file{"usr/lib/grub/x86_64-efi-signed/grubx64.efi.signed", "grub-efi-amd64-signed"},
		kernelPkg:   "linux-image-cloud-amd64", serial: "ttyS0",
	},
	{
		name: ARM64, efiSuffix: "aa64", rootType: gpt.LinuxRootArm64,
		systemdBoot: file{"usr/lib/systemd/boot/efi/systemd-bootaa64.efi", "systemd-boot-efi"},
		shim:        file{"usr/lib/shim/shimaa64.efi.signed", "shim-signed"},
		grub:        file{"usr/lib/grub/arm64-efi-signed/grubaa64.efi.signed", "grub-efi-arm64-signed"},
		// The PL011 of qemu's virt machine, Azure's Cobalt VMs and Ampere
		// hosts. AWS Graviton's is a 16550 (ttyS0): add console=ttyS0 with
		// kernel_cmdline there.
		kernelPkg: "linux-image-cloud-arm64", serial: "ttyAMA0",
	},
}

// Arches lists the architectures a bootable disk can be made for.
func Arches() []string {
	var names []string
	for _, a := range arches {
		names = append(names, a.name)
	}
	return names
}

func lookupArch(name string) (arch, error) {
	for _, a := range arches {
		if a.name == name {
			return a, nil
		}
	}
	return arch{}, fmt.Errorf("disk: no UEFI disk layout for the architecture %q: layerimg makes disks for %s", name, strings.Join(Arches(), " and "))
}

// ArchOfPlatform is the architecture of an OCI platform "os/arch[/variant]"
// ("" for "").
func ArchOfPlatform(platform string) string {
	_, rest, _ := strings.Cut(platform, "/")
	a, _, _ := strings.Cut(rest, "/")
	return a
}

func (a arch) bootName() string { return "BOOT" + strings.ToUpper(a.efiSuffix) + ".EFI" }
func (a arch) grubName() string { return "grub" + a.efiSuffix + ".efi" }

// detectArch tells the architecture of an image that does not say (a
// rootfs tar) from the boot loaders it holds: the one architecture whose
// loaders are there, else amd64.
func detectArch(img Image) (string, error) {
	var found []string
	for _, a := range arches {
		for _, f := range []file{a.systemdBoot, a.shim, a.grub} {
			ok, err := f.in(img)
			if err != nil {
				return "", err
			}
			if ok {
				found = append(found, a.name)
				break
			}
		}
	}
	if len(found) == 1 {
		return found[0], nil
	}
	return AMD64, nil
}

// ArchOf reads the architecture of a finished disk (any format layerimg
// writes) from its GPT: the type of its root partition, as Assemble sets
// it. A disk with neither root type is an error that says so.
func ArchOf(ctx context.Context, path string) (string, error) {
	f, err := format.Sniff(path)
	if err != nil {
		return "", err
	}
	head, err := readHead(ctx, path, f, 1*mib)
	if err != nil {
		return "", err
	}
	types, err := gptTypes(head)
	if err != nil {
		return "", fmt.Errorf("%s: %w", path, err)
	}
	for _, a := range arches {
		if slices.Contains(types, strings.ToUpper(string(a.rootType))) {
			return a.name, nil
		}
	}
	return "", fmt.Errorf("%s: %w for %s; say which architecture it is", path, ErrNoArch, strings.Join(Arches(), " or "))
}

// ErrNoArch is ArchOf's error for a disk whose partitions do not say
// their architecture (a disk not made by layerimg, or a data disk).
var ErrNoArch = errors.New("no partition has a root type of the Discoverable Partitions Specification")

// readHead reads the disk's first n bytes, through qemu-img for the formats
// that are not raw underneath.
func readHead(ctx context.Context, path string, f format.Format, n int64) ([]byte, error) {
	if f == format.Raw || f == format.VHD { // a fixed VHD is raw plus a footer
		fh, err := os.Open(path)
		if err != nil {
			return nil, err
		}
		defer fh.Close()
		b := make([]byte, n)
		m, err := io.ReadFull(fh, b)
		if err != nil && err != io.ErrUnexpectedEOF {
			return nil, fmt.Errorf("reading %s: %w", path, err)
		}
		return b[:m], nil
	}
	tmp, err := os.MkdirTemp("", "layerimg-head-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(tmp)
	out := filepath.Join(tmp, "head.raw")
	cmd := proc.Command(ctx, "qemu-img", "dd", "-f", f.Qemu(), "-O", "raw", "bs=512", fmt.Sprintf("count=%d", n/sector), "if="+path, "of="+out)
	if msg, err := cmd.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("reading the start of %s with qemu-img: %w: %s (Debian: qemu-utils)", path, err, strings.TrimSpace(string(msg)))
	}
	return os.ReadFile(out)
}

// gptTypes lists the partition type GUIDs (upper case, as go-diskfs names
// them) of the GPT in head, the disk's first bytes with 512-byte sectors.
func gptTypes(head []byte) ([]string, error) {
	if len(head) < 2*sector || string(head[sector:sector+8]) != "EFI PART" {
		return nil, fmt.Errorf("no GPT (no \"EFI PART\" header in sector 1), so %w", ErrNoArch)
	}
	h := head[sector:]
	start := binary.LittleEndian.Uint64(h[72:])
	count := binary.LittleEndian.Uint32(h[80:])
	size := binary.LittleEndian.Uint32(h[84:])
	if size < 128 || count > 1024 {
		return nil, fmt.Errorf("GPT header: %d entries of %d bytes", count, size)
	}
	var types []string
	for i := uint32(0); i < count; i++ {
		off := start*sector + uint64(i)*uint64(size)
		if off+16 > uint64(len(head)) {
			break
		}
		t := head[off : off+16]
		if allZero(t) {
			continue
		}
		types = append(types, guidString(t))
	}
	return types, nil
}

func allZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

// guidString formats a GUID as GPT stores it (the first three fields little
// endian).
func guidString(b []byte) string {
	return fmt.Sprintf("%08X-%04X-%04X-%X-%X", binary.LittleEndian.Uint32(b[0:4]), binary.LittleEndian.Uint16(b[4:6]), binary.LittleEndian.Uint16(b[6:8]), b[8:10], b[10:16])
}
