package rootfs

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// dockerCaps is Docker's default capability set. It is enough for package
// managers (chown, setuid to _apt, mknod, binding low ports) and leaves out
// everything that reaches the host kernel: SYS_ADMIN (mount, pivot_root),
// SYS_MODULE, SYS_PTRACE, SYS_BOOT, SYS_RAWIO, SYS_TIME, NET_ADMIN, ...
var dockerCaps = []int{
	unix.CAP_CHOWN,
	unix.CAP_DAC_OVERRIDE,
	unix.CAP_FOWNER,
	unix.CAP_FSETID,
	unix.CAP_KILL,
	unix.CAP_SETGID,
	unix.CAP_SETUID,
	unix.CAP_SETPCAP,
	unix.CAP_NET_BIND_SERVICE,
	unix.CAP_NET_RAW,
	unix.CAP_SYS_CHROOT,
	unix.CAP_MKNOD,
	unix.CAP_AUDIT_WRITE,
	unix.CAP_SETFCAP,
}

// capMask is caps as a bit mask, the layout of /proc/PID/status.
func capMask(caps []int) uint64 {
	var m uint64
	for _, c := range caps {
		m |= 1 << uint(c)
	}
	return m
}

// lastCap is the highest capability number the running kernel knows.
func lastCap() (int, error) {
	data, err := os.ReadFile("/proc/sys/kernel/cap_last_cap")
	if err != nil {
		return 0, fmt.Errorf("reading the kernel's last capability: %w", err)
	}
	n, err := strconv.Atoi(strings.TrimSpace(string(data)))
	if err != nil || n < 0 || n > 63 {
		return 0, fmt.Errorf("reading the kernel's last capability: unexpected %q", data)
	}
	return n, nil
}

// dropCaps limits the calling thread to dockerCaps. Capabilities belong to a
// thread, so the caller must hold its OS thread locked and exec from it.
//
// For uid 0 execve recomputes the permitted set as (inheritable & file
// inheritable) | (bounding & file permitted), with both file sets full, so
// capset alone would be undone by the exec: the bounding set is what really
// limits the step, and the inheritable set must not add to it.
func dropCaps(last int) error {
	keep := capMask(dockerCaps)
	for c := 0; c <= last; c++ {
		if keep&(1<<uint(c)) != 0 {
			continue
		}
		if err := unix.Prctl(unix.PR_CAPBSET_DROP, uintptr(c), 0, 0, 0); err != nil {
			return fmt.Errorf("dropping capability %d from the bounding set: %w", c, err)
		}
	}
	// Kernels before 4.3 have no ambient set, and so nothing to clear.
	if err := unix.Prctl(unix.PR_CAP_AMBIENT, unix.PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0); err != nil && !errors.Is(err, unix.EINVAL) {
		return fmt.Errorf("clearing ambient capabilities: %w", err)
	}
	// The inheritable set stays empty, as Docker leaves it since
	// CVE-2022-24769: a non-empty one would let a non-root process gain
	// capabilities from a file's inheritable set.
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	data := [2]unix.CapUserData{
		{Effective: uint32(keep), Permitted: uint32(keep)},
		{Effective: uint32(keep >> 32), Permitted: uint32(keep >> 32)},
	}
	if err := unix.Capset(&hdr, &data[0]); err != nil {
		return fmt.Errorf("setting capabilities: %w", err)
	}
	return nil
}
