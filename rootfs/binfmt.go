package rootfs

import (
	"bytes"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// elfMachines are the ELF e_machine values of the architectures a step can
// be emulated for, with qemu's name for each (its binfmt entry is
// qemu-NAME).
var elfMachines = map[string]struct {
	qemu    string
	machine uint16
}{
	"amd64":   {"x86_64", 62},
	"386":     {"i386", 3},
	"arm64":   {"aarch64", 183},
	"arm":     {"arm", 40},
	"ppc64le": {"ppc64le", 21},
	"s390x":   {"s390x", 22},
	"riscv64": {"riscv64", 243},
}

// binfmtDir is where binfmt_misc is mounted, under a /proc root.
const binfmtDir = "proc/sys/fs/binfmt_misc"

// CheckEmulation says whether binaries for platform (linux/arm64, ...) can
// run on a host of architecture hostArch (runtime.GOARCH): natively, or
// through a binfmt_misc handler that is registered, enabled and has the F
// (fix-binary) flag. F matters because the sandbox runs steps after
// pivot_root into the image's root, where the handler's interpreter path
// (/usr/libexec/qemu-binfmt/...) does not exist: the kernel must have opened
// it when it was registered. root is the filesystem root holding /proc
// ("/" but for tests). The error says what to install or run.
func CheckEmulation(root, hostArch, platform string) error {
	arch := strings.Split(strings.TrimPrefix(platform, "linux/"), "/")[0]
	if arch == hostArch || (hostArch == "amd64" && arch == "386") {
		return nil
	}
	m, ok := elfMachines[arch]
	if !ok {
		return fmt.Errorf("platform %s: no emulation known for %s on this %s host", platform, arch, hostArch)
	}
	install := fmt.Sprintf("apt-get install qemu-user-static binfmt-support && update-binfmts --enable qemu-%s", m.qemu)
	dir := filepath.Join(root, binfmtDir)
	status, err := os.ReadFile(filepath.Join(dir, "status"))
	if errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("platform %s needs emulation on this %s host, but binfmt_misc is not mounted: mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc, then %s", platform, hostArch, install)
	}
	if err != nil {
		return fmt.Errorf("platform %s needs emulation: reading binfmt_misc: %w", platform, err)
	}
	if strings.TrimSpace(string(status)) != "enabled" {
		return fmt.Errorf("platform %s needs emulation, but binfmt_misc is disabled: echo 1 > /proc/sys/fs/binfmt_misc/status", platform)
	}
	name, e, err := findHandler(dir, m.qemu, m.machine)
	if err != nil {
		return fmt.Errorf("platform %s needs emulation: reading binfmt_misc: %w", platform, err)
	}
	switch {
	case e == nil:
		return fmt.Errorf("platform %s needs emulation on this %s host, but no binfmt_misc handler for %s is registered: %s", platform, hostArch, m.qemu, install)
	case !e.enabled:
		return fmt.Errorf("platform %s needs emulation, but the binfmt_misc handler %s is disabled: update-binfmts --enable %s (or echo 1 > /proc/sys/fs/binfmt_misc/%s)", platform, name, name, name)
	case !strings.Contains(e.flags, "F"):
		return fmt.Errorf("platform %s needs emulation, but the binfmt_misc handler %s (%s) lacks the F flag, so it cannot run inside the build's sandbox: apt-get install qemu-user-static binfmt-support (its handler has it), then update-binfmts --disable %s && update-binfmts --enable %s", platform, name, e.interpreter, name, name)
	}
	return nil
}

type binfmtEntry struct {
	enabled     bool
	interpreter string
	flags       string
	offset      string
	magic       []byte
}

// findHandler finds the handler for ELF machine: qemu-NAME when there is
// one, else any entry whose magic is the ELF header of that machine.
func findHandler(dir, qemu string, machine uint16) (string, *binfmtEntry, error) {
	if e, err := readEntry(filepath.Join(dir, "qemu-"+qemu)); err == nil {
		return "qemu-" + qemu, e, nil
	} else if !errors.Is(err, fs.ErrNotExist) {
		return "", nil, err
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		return "", nil, err
	}
	want := []byte{byte(machine), byte(machine >> 8)} // e_machine, little-endian
	for _, de := range ents {
		if n := de.Name(); n == "status" || n == "register" || de.IsDir() {
			continue
		}
		e, err := readEntry(filepath.Join(dir, de.Name()))
		if err != nil {
			continue // an extension handler or one being removed
		}
		if e.offset == "0" && len(e.magic) >= 20 && bytes.HasPrefix(e.magic, []byte("\x7fELF")) && bytes.Equal(e.magic[18:20], want) {
			return de.Name(), e, nil
		}
	}
	return "", nil, nil
}

// readEntry parses an entry as the kernel shows it:
//
//	enabled
//	interpreter /usr/libexec/qemu-binfmt/aarch64-binfmt-P
//	flags: PF
//	offset 0
//	magic 7f454c46...
func readEntry(path string) (*binfmtEntry, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	e := &binfmtEntry{}
	for i, line := range strings.Split(string(data), "\n") {
		k, v, _ := strings.Cut(line, " ")
		switch {
		case i == 0:
			e.enabled = line == "enabled"
		case k == "interpreter":
			e.interpreter = v
		case k == "flags:":
			e.flags = v
		case k == "offset":
			e.offset = v
		case k == "magic":
			e.magic, _ = hex.DecodeString(v)
		}
	}
	return e, nil
}
