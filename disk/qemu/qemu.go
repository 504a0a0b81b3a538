// Package qemu boots a disk image in qemu with UEFI firmware (OVMF on
// amd64, AAVMF on arm64) and watches the serial console for a marker: the
// end-to-end check of a built image.
package qemu

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"sync"
	"time"

	"github.com/layerimg/layerimg/disk/format"
	"github.com/layerimg/layerimg/internal/proc"
)

// Failure patterns: the boot is over and it did not work.
var failRE = regexp.MustCompile(`Kernel panic|ALERT!|Access Denied|Security Violation|Shell> `)

// Options describe one boot.
type Options struct {
	Disk       string
	Format     format.Format // "" tells it from the file's bytes
	NVMe       bool          // attach as NVMe instead of virtio-blk
	SecureBoot bool          // OVMF with Microsoft's keys enrolled, Secure Boot on
	Expect     *regexp.Regexp
	Timeout    time.Duration
	Console    io.Writer // receives the serial console as it comes
	// Arch is the guest's architecture: amd64 (the default) boots in
	// qemu-system-x86_64 with OVMF, arm64 in qemu-system-aarch64's virt
	// machine with AAVMF.
	Arch    string
	OVMFDir string // the firmware's dir; default /usr/share/OVMF, /usr/share/AAVMF on arm64
}

// machine is how one architecture boots in qemu.
type machine struct {
	binary, pkg   string // qemu, and the Debian package that has it
	firmwarePkg   string
	firmwareDir   string
	code, vars    string // firmware and variable store
	msCode, msVar string // with Microsoft's keys enrolled and Secure Boot on
	args          func(secure, kvm bool) []string
}

var machines = map[string]machine{
	"amd64": {
		binary: "qemu-system-x86_64", pkg: "qemu-system-x86", firmwarePkg: "ovmf", firmwareDir: "/usr/share/OVMF",
		code: "OVMF_CODE_4M.fd", vars: "OVMF_VARS_4M.fd", msCode: "OVMF_CODE_4M.ms.fd", msVar: "OVMF_VARS_4M.ms.fd",
		args: func(secure, _ bool) []string {
			if secure {
				// OVMF keeps its variables safe from the OS only in SMM.
				return []string{"-machine", "q35,smm=on", "-global", "driver=cfi.pflash01,property=secure,value=on"}
			}
			return []string{"-machine", "q35"}
		},
	},
	"arm64": {
		binary: "qemu-system-aarch64", pkg: "qemu-system-arm", firmwarePkg: "qemu-efi-aarch64", firmwareDir: "/usr/share/AAVMF",
		// AAVMF_CODE.ms.fd is AAVMF_CODE.fd: Secure Boot is the variable
		// store's (keys enrolled, SecureBootEnable set). There is no SMM on
		// arm: the store is not protected from the OS as on x86.
		code: "AAVMF_CODE.fd", vars: "AAVMF_VARS.fd", msCode: "AAVMF_CODE.ms.fd", msVar: "AAVMF_VARS.ms.fd",
		args: func(_, kvm bool) []string {
			if kvm {
				return []string{"-machine", "virt", "-cpu", "host"}
			}
			// cortex-a72 lacks pointer authentication, which TCG emulates
			// slowly under -cpu max; Debian's arm64 kernels need no more.
			return []string{"-machine", "virt", "-cpu", "cortex-a72"}
		},
	},
}

// Error is a failed boot, with the end of the console.
type Error struct {
	Reason string
	Tail   string
}

func (e *Error) Error() string {
	return fmt.Sprintf("boot failed: %s; console ends with:\n%s", e.Reason, e.Tail)
}

// Boot starts qemu (KVM when it works, TCG otherwise) on a snapshot of the
// disk, so the image is never written to, and returns nil when Expect shows
// up on the serial console.
func Boot(ctx context.Context, o Options) error {
	if o.Expect == nil {
		o.Expect = regexp.MustCompile(`login: `)
	}
	if o.Timeout == 0 {
		o.Timeout = 300 * time.Second
	}
	if o.Arch == "" {
		o.Arch = "amd64"
	}
	m, ok := machines[o.Arch]
	if !ok {
		return fmt.Errorf("booting a %s disk: layerimg boots amd64 and arm64 disks", o.Arch)
	}
	if o.OVMFDir == "" {
		o.OVMFDir = m.firmwareDir
	}
	if _, err := os.Stat(o.Disk); err != nil {
		return err
	}
	if o.Format == "" {
		f, err := format.Sniff(o.Disk)
		if err != nil {
			return err
		}
		o.Format = f
	}
	code, vars := m.code, m.vars
	if o.SecureBoot {
		code, vars = m.msCode, m.msVar
	}
	if _, err := os.Stat(filepath.Join(o.OVMFDir, code)); err != nil {
		return fmt.Errorf("UEFI firmware for %s: %w (apt-get install %s)", o.Arch, err, m.firmwarePkg)
	}
	tmp, err := os.MkdirTemp("", "layerimg-boot-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	// Each boot gets a fresh copy of the variable store: no NVRAM state
	// carries over, as on a cloud's first boot.
	varsCopy := filepath.Join(tmp, "vars.fd")
	data, err := os.ReadFile(filepath.Join(o.OVMFDir, vars))
	if err != nil {
		return fmt.Errorf("UEFI variable store for %s: %w (apt-get install %s)", o.Arch, err, m.firmwarePkg)
	}
	if err := os.WriteFile(varsCopy, data, 0o600); err != nil {
		return err
	}
	kvm := o.Arch == runtime.GOARCH && kvmUsable()
	accel := "tcg"
	if kvm {
		accel = "kvm"
	}
	args := append(m.args(o.SecureBoot, kvm), "-accel", accel, "-m", "1024", "-smp", "2",
		"-nodefaults", "-display", "none", "-serial", "stdio", "-no-reboot", "-nic", "none",
		"-drive", "if=pflash,format=raw,unit=0,readonly=on,file="+filepath.Join(o.OVMFDir, code),
		"-drive", "if=pflash,format=raw,unit=1,file="+varsCopy,
	)
	drive := fmt.Sprintf("file=%s,format=%s,snapshot=on", o.Disk, o.Format.Qemu())
	if o.NVMe {
		args = append(args, "-drive", "if=none,id=disk0,"+drive, "-device", "nvme,drive=disk0,serial=layerimg")
	} else {
		args = append(args, "-drive", "if=virtio,"+drive)
	}
	ctx, cancel := context.WithTimeout(ctx, o.Timeout)
	defer cancel()
	cmd := proc.Command(ctx, m.binary, args...)
	out, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("starting %s: %w (apt-get install %s)", m.binary, err, m.pkg)
	}
	result := make(chan error, 1)
	var tail tailBuf
	var mu sync.Mutex
	go func() {
		r := bufio.NewReader(out)
		var line []byte
		for {
			b, err := r.ReadByte()
			if err != nil {
				result <- nil // EOF: qemu exited; Wait says how
				return
			}
			if o.Console != nil {
				o.Console.Write([]byte{b})
			}
			mu.Lock()
			tail.add(b)
			mu.Unlock()
			line = append(line, b)
			// Markers may come without a newline (a login prompt), so
			// check the current line as it grows.
			if o.Expect.Match(line) {
				result <- errMarker
				return
			}
			if m := failRE.Find(line); m != nil {
				result <- &Error{Reason: fmt.Sprintf("console printed %q", m)}
				return
			}
			if b == '\n' {
				line = line[:0]
			}
		}
	}()
	var res error
	select {
	case res = <-result:
	case <-ctx.Done():
	}
	cmd.Process.Kill()
	waitErr := cmd.Wait()
	mu.Lock()
	t := tail.String()
	mu.Unlock()
	switch {
	case errors.Is(res, errMarker):
		return nil
	case res != nil:
		res.(*Error).Tail = t
		return res
	case ctx.Err() == context.DeadlineExceeded:
		return &Error{Reason: fmt.Sprintf("no %q within %s", o.Expect, o.Timeout), Tail: t}
	case ctx.Err() != nil:
		return ctx.Err()
	}
	return &Error{Reason: fmt.Sprintf("qemu exited (%v) before %q: %s", waitErr, o.Expect, strings.TrimSpace(stderr.String())), Tail: t}
}

var errMarker = errors.New("marker seen")

// kvmUsable reports whether KVM can run guests here. /dev/kvm alone is not
// enough: under nested virtualisation without VMX or SVM it opens, and then
// the guest dies with an emulation failure. So the CPU flags decide too.
func kvmUsable() bool {
	f, err := os.OpenFile("/dev/kvm", os.O_RDWR, 0)
	if err != nil {
		return false
	}
	f.Close()
	info, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return false
	}
	for _, line := range strings.Split(string(info), "\n") {
		if strings.HasPrefix(line, "flags") {
			return strings.Contains(line, " vmx") || strings.Contains(line, " svm")
		}
	}
	// arm64's /proc/cpuinfo has no flags line: /dev/kvm opening is the test.
	return runtime.GOARCH == "arm64"
}

// tailBuf keeps the last 4 KiB written to it.
type tailBuf struct{ b []byte }

func (t *tailBuf) add(c byte) {
	t.b = append(t.b, c)
	if len(t.b) > 8192 {
		t.b = append(t.b[:0], t.b[len(t.b)-4096:]...)
	}
}

func (t *tailBuf) String() string {
	b := t.b
	if len(b) > 4096 {
		b = b[len(b)-4096:]
	}
	return string(b)
}
