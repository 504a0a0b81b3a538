// Package qemu boots a disk image in qemu with OVMF (UEFI) and watches the
// serial console for a marker: the end-to-end check of a built image.
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
	OVMFDir    string    // default /usr/share/OVMF
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
	if o.OVMFDir == "" {
		o.OVMFDir = "/usr/share/OVMF"
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
	code, vars := "OVMF_CODE_4M.fd", "OVMF_VARS_4M.fd"
	machine := "q35"
	if o.SecureBoot {
		code, vars = "OVMF_CODE_4M.ms.fd", "OVMF_VARS_4M.ms.fd"
		machine = "q35,smm=on"
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
		return fmt.Errorf("OVMF variable store: %w (apt-get install ovmf)", err)
	}
	if err := os.WriteFile(varsCopy, data, 0o600); err != nil {
		return err
	}
	accel := "tcg"
	if kvmUsable() {
		accel = "kvm"
	}
	args := []string{
		"-machine", machine, "-accel", accel, "-m", "1024", "-smp", "2",
		"-nodefaults", "-display", "none", "-serial", "stdio", "-no-reboot", "-nic", "none",
		"-drive", "if=pflash,format=raw,unit=0,readonly=on,file=" + filepath.Join(o.OVMFDir, code),
		"-drive", "if=pflash,format=raw,unit=1,file=" + varsCopy,
	}
	if o.SecureBoot {
		args = append(args, "-global", "driver=cfi.pflash01,property=secure,value=on")
	}
	drive := fmt.Sprintf("file=%s,format=%s,snapshot=on", o.Disk, o.Format.Qemu())
	if o.NVMe {
		args = append(args, "-drive", "if=none,id=disk0,"+drive, "-device", "nvme,drive=disk0,serial=layerimg")
	} else {
		args = append(args, "-drive", "if=virtio,"+drive)
	}
	ctx, cancel := context.WithTimeout(ctx, o.Timeout)
	defer cancel()
	cmd := proc.Command(ctx, "qemu-system-x86_64", args...)
	out, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("starting qemu-system-x86_64: %w (apt-get install qemu-system-x86)", err)
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
	return false
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
