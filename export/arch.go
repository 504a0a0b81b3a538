package export

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/layerimg/layerimg/disk/format"
)

// Arch is the architecture of a platform (linux/arm64: arm64), "" for none.
func Arch(platform string) string {
	if platform == "" {
		return ""
	}
	parts := strings.Split(platform, "/")
	if len(parts) < 2 {
		return ""
	}
	return parts[1]
}

// gptRootTypes are the Discoverable Partitions Specification's root
// partition types, by architecture: a layerimg disk's root partition has
// its architecture's.
var gptRootTypes = map[string]string{
	"4f68bce3-e8cd-4db1-96e7-fbcaf984b709": "amd64",
	"b921b045-1df0-41c3-af44-4c6f280d3fae": "arm64",
	"44479540-f297-41b2-9af7-d131d5f0458a": "386",
	"69dad710-2ce4-4e3c-b16c-21a1d49abed3": "arm",
	"72ec70a6-cf74-40e6-bd49-4bda08e8f224": "riscv64",
}

// DiskArch is the architecture a raw disk or fixed VHD is for, read from
// its GPT: the type of its root partition. It is "" for other formats
// (VMDK, qcow2: no GPT header at byte 512) and for a disk with no typed
// root partition: they do not say.
func DiskArch(path string) (string, error) {
	file, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer file.Close()
	hdr := make([]byte, 92)
	if _, err := file.ReadAt(hdr, 512); err != nil {
		if err == io.EOF {
			return "", nil
		}
		return "", fmt.Errorf("reading %s's GPT: %w", path, err)
	}
	if !bytes.Equal(hdr[:8], []byte("EFI PART")) {
		return "", nil
	}
	lba := binary.LittleEndian.Uint64(hdr[72:])
	n := binary.LittleEndian.Uint32(hdr[80:])
	size := binary.LittleEndian.Uint32(hdr[84:])
	if size < 128 || n > 1024 {
		return "", fmt.Errorf("%s: GPT header lists %d entries of %d bytes", path, n, size)
	}
	table := make([]byte, int(n)*int(size))
	if _, err := file.ReadAt(table, int64(lba)*512); err != nil {
		return "", fmt.Errorf("reading %s's GPT entries: %w", path, err)
	}
	for i := 0; i < int(n); i++ {
		if arch, ok := gptRootTypes[guid(table[i*int(size):])]; ok {
			return arch, nil
		}
	}
	return "", nil
}

// guid formats a GPT GUID (its first three fields little-endian).
func guid(b []byte) string {
	return fmt.Sprintf("%08x-%04x-%04x-%x-%x", binary.LittleEndian.Uint32(b), binary.LittleEndian.Uint16(b[4:]),
		binary.LittleEndian.Uint16(b[6:]), b[8:10], b[10:16])
}

// CheckArch refuses a disk whose GPT says another architecture than the
// image's platform, and returns the architecture the disk is for (either
// one; "" when neither says). target names the publisher in the error.
func CheckArch(target string, d Disk) (string, error) {
	want := Arch(d.Platform)
	got := ""
	var err error
	if d.Format == format.Raw || d.Format == format.VHD {
		got, err = DiskArch(d.Path)
	}
	if err != nil {
		return "", fmt.Errorf("%s: %w", target, err)
	}
	if want != "" && got != "" && want != got {
		return "", fmt.Errorf("%s: %s is an %s disk (its root partition's GPT type), but the image's platform is %s", target, d.Path, got, d.Platform)
	}
	if want == "" {
		return got, nil
	}
	return want, nil
}

// CloudArch is the name a cloud gives arch (amd64, arm64) among names,
// checked against the one the user asked for ("" for none): asked when
// they agree, names[arch] when nothing was asked. cloud and why (where
// arch comes from) word the errors. An empty arch leaves asked as it is.
func CloudArch(cloud, asked, arch, why string, names map[string]string) (string, error) {
	if arch == "" {
		return asked, nil
	}
	a, ok := names[arch]
	if !ok {
		return "", fmt.Errorf("%s: there are no %s images (%s)", cloud, arch, why)
	}
	if asked != "" && asked != a {
		return "", fmt.Errorf("%s: architecture %s was asked for, but %s: an image of this disk must say %s", cloud, asked, why, a)
	}
	return a, nil
}
