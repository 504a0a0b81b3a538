package rootfs

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestMain lets the test binary serve as the sandbox's re-executed child.
func TestMain(m *testing.M) {
	SandboxMain()
	code := m.Run()
	if probe.path != "" {
		os.RemoveAll(filepath.Dir(probe.path))
	}
	os.Exit(code)
}

var probe struct {
	once sync.Once
	path string
	err  error
}

// probeBinary builds probeSource once per test run into a static binary.
func probeBinary(t *testing.T) string {
	t.Helper()
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("the go command is needed to build the hostile probe")
	}
	probe.once.Do(func() {
		dir, err := os.MkdirTemp("", "sandbox-probe-")
		if err != nil {
			probe.err = err
			return
		}
		src := filepath.Join(dir, "probe.go")
		if probe.err = os.WriteFile(src, []byte(probeSource), 0o644); probe.err != nil {
			return
		}
		probe.path = filepath.Join(dir, "probe")
		// Built from this package's directory so that golang.org/x/sys
		// comes from this module's go.mod.
		cmd := exec.Command(goBin, "build", "-o", probe.path, src)
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			probe.err = fmt.Errorf("building the probe: %w\n%s", err, out)
		}
	})
	if probe.err != nil {
		t.Fatal(probe.err)
	}
	return probe.path
}

// probeImage is a minimal image: the probe as /probe, a marker file that
// tells the image's root from any other directory, and /tmp and /mnt.
func probeImage(t *testing.T) string {
	t.Helper()
	bin, err := os.ReadFile(probeBinary(t))
	if err != nil {
		t.Fatal(err)
	}
	lower := t.TempDir()
	for _, d := range []string{"tmp", "mnt"} {
		if err := os.Mkdir(filepath.Join(lower, d), 0o1777); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(lower, "probe"), bin, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(lower, "image-root-marker"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	return lower
}

// runProbe runs /probe args... in a sandbox over lower and returns the
// fields of its RESULT line, and the upper dir.
func runProbe(t *testing.T, lower string, tweak func(*RunSpec), args ...string) (map[string]string, string) {
	t.Helper()
	scratch := t.TempDir()
	spec := RunSpec{
		Lowers:  []string{lower},
		Argv:    append([]string{"/probe"}, args...),
		Env:     []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin"},
		Network: "none",
	}
	if err := spec.InScratch(scratch); err != nil {
		t.Fatal(err)
	}
	if tweak != nil {
		tweak(&spec)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var out bytes.Buffer
	if err := Run(ctx, spec, &out); err != nil {
		t.Fatalf("probe %v: %v\n%s", args, err, out.String())
	}
	for _, line := range strings.Split(out.String(), "\n") {
		rest, ok := strings.CutPrefix(line, "RESULT ")
		if !ok {
			continue
		}
		res := map[string]string{}
		for _, f := range strings.Fields(rest) {
			k, v, _ := strings.Cut(f, "=")
			res[k] = v
		}
		t.Logf("probe %v: %s", args, rest)
		return res, spec.Upper
	}
	t.Fatalf("probe %v printed no result:\n%s", args, out.String())
	return nil, ""
}

// expect checks res[key] against the allowed values.
func expect(t *testing.T, res map[string]string, key string, allowed ...string) {
	t.Helper()
	got, ok := res[key]
	if !ok {
		t.Errorf("%s: no result", key)
		return
	}
	for _, a := range allowed {
		if got == a {
			return
		}
	}
	t.Errorf("%s = %q, want one of %q", key, got, allowed)
}

func needSandbox(t *testing.T) {
	t.Helper()
	if err := CheckPrivileges(); err != nil {
		t.Skip(err)
	}
}

// snapshot records a directory's entries with their ctimes, and its own
// mtime and ctime, so that any change to it shows.
func snapshot(t *testing.T, dir string) map[string]string {
	t.Helper()
	snap := map[string]string{}
	stamp := func(name, p string) {
		var st unix.Stat_t
		if err := unix.Lstat(p, &st); err != nil {
			t.Fatal(err)
		}
		snap[name] = fmt.Sprintf("ctime=%d.%d mtime=%d.%d size=%d", st.Ctim.Sec, st.Ctim.Nsec, st.Mtim.Sec, st.Mtim.Nsec, st.Size)
	}
	stamp(".", dir)
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		stamp(e.Name(), filepath.Join(dir, e.Name()))
	}
	return snap
}

func TestSandboxChrootEscape(t *testing.T) {
	needSandbox(t)
	lower := probeImage(t)
	canary := t.TempDir()
	for _, name := range []string{"a", "b"} {
		if err := os.WriteFile(filepath.Join(canary, name), []byte(name), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	before := snapshot(t, canary)

	res, upper := runProbe(t, lower, nil, "escape", canary)
	// Every step of the escape works (CAP_SYS_CHROOT is in Docker's set),
	// and the climb ends at the image's root, not the host's.
	for _, k := range []string{"mkdir", "open", "chroot1", "fchdir", "chroot2", "image_root"} {
		expect(t, res, k, "ok")
	}
	expect(t, res, "canary_stat", "ENOENT")
	expect(t, res, "canary_write", "ENOENT")

	if _, err := os.Lstat(filepath.Join(canary, "escaped")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the escape created a file in the host's canary dir (stat: %v)", err)
	}
	after := snapshot(t, canary)
	if fmt.Sprint(before) != fmt.Sprint(after) {
		t.Errorf("the canary dir changed:\nbefore %v\nafter  %v", before, after)
	}
	if _, err := os.Stat(filepath.Join(upper, ".esc")); err != nil {
		t.Errorf("the probe's /.esc is not in the upper dir: %v", err)
	}
}

func TestSandboxMount(t *testing.T) {
	needSandbox(t)
	res, _ := runProbe(t, probeImage(t), nil, "mount")
	for _, k := range []string{"tmpfs", "block", "bind", "umount"} {
		expect(t, res, k, "EPERM")
	}
}

func TestSandboxSysrq(t *testing.T) {
	needSandbox(t)
	res, _ := runProbe(t, probeImage(t), nil, "sysrq")
	if _, err := os.Stat("/proc/sysrq-trigger"); errors.Is(err, os.ErrNotExist) {
		// A kernel built without magic SysRq has no trigger to protect.
		t.Log("this kernel has no /proc/sysrq-trigger")
		expect(t, res, "open", "ENOENT")
	} else {
		expect(t, res, "open", "EROFS", "EACCES")
	}
	if _, ok := res["write"]; ok {
		t.Errorf("/proc/sysrq-trigger opened for writing; write: %s", res["write"])
	}
}

func TestSandboxModules(t *testing.T) {
	needSandbox(t)
	res, _ := runProbe(t, probeImage(t), nil, "modules")
	want := []string{"EPERM"}
	if _, err := os.Stat("/proc/modules"); errors.Is(err, os.ErrNotExist) {
		// A kernel built without module support answers ENOSYS to anyone.
		want = append(want, "ENOSYS")
	}
	expect(t, res, "init", want...)
	expect(t, res, "finit", want...)
}

func TestSandboxPtraceHost(t *testing.T) {
	needSandbox(t)
	pid := strconv.Itoa(os.Getpid())
	res, _ := runProbe(t, probeImage(t), nil, "ptrace", pid)
	expect(t, res, "attach", "ESRCH", "EPERM")
	expect(t, res, "kill", "ESRCH", "EPERM")
	expect(t, res, "proc", "ENOENT")
}

// readableDisk is a block device, as "major:minor", that this process can
// read outside the sandbox: the first disk of the machine that it may open,
// else a read-only loop device over a file of known bytes. "" if neither.
func readableDisk(t *testing.T) string {
	t.Helper()
	ents, _ := os.ReadDir("/sys/block")
	for _, e := range ents {
		name := e.Name()
		if strings.HasPrefix(name, "loop") || strings.HasPrefix(name, "ram") || strings.HasPrefix(name, "zram") {
			continue
		}
		if dev, ok := readableBlock(filepath.Join("/dev", name)); ok {
			return dev
		}
	}
	// The machine's disks may be closed to this process (a device cgroup);
	// a loop device stands in for one.
	losetup, err := exec.LookPath("losetup")
	if err != nil {
		return ""
	}
	img := filepath.Join(t.TempDir(), "disk.img")
	if err := os.WriteFile(img, bytes.Repeat([]byte("HOSTDISK"), 512), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(losetup, "--find", "--show", "--read-only", img).Output()
	if err != nil {
		t.Logf("losetup: %v", err)
		return ""
	}
	loop := strings.TrimSpace(string(out))
	t.Cleanup(func() { exec.Command(losetup, "--detach", loop).Run() })
	dev, _ := readableBlock(loop)
	return dev
}

// readableBlock reports the device number of the block device at p if its
// first sector can be read.
func readableBlock(p string) (string, bool) {
	f, err := os.Open(p)
	if err != nil {
		return "", false
	}
	defer f.Close()
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil || st.Mode&unix.S_IFMT != unix.S_IFBLK {
		return "", false
	}
	if n, _ := io.ReadFull(f, make([]byte, 512)); n != 512 {
		return "", false
	}
	return fmt.Sprintf("%d:%d", unix.Major(st.Rdev), unix.Minor(st.Rdev)), true
}

func TestSandboxMknodBlockDevice(t *testing.T) {
	needSandbox(t)
	devs := []string{"8:0"} // sda
	if d := readableDisk(t); d == "" {
		t.Log("no block device readable outside the sandbox; trying 8:0 only")
	} else if d != "8:0" {
		devs = append(devs, d)
	}
	res, _ := runProbe(t, probeImage(t), nil, append([]string{"mknod"}, devs...)...)
	for _, d := range devs {
		for _, dir := range []string{"/tmp", "/dev"} {
			name := filepath.Join(dir, "b"+strings.ReplaceAll(d, ":", "_"))
			// CAP_MKNOD is in Docker's set: making the node is allowed,
			// opening it is not (nodev).
			expect(t, res, name+".mknod", "ok")
			expect(t, res, name+".open", "EACCES")
			expect(t, res, name+".read", "0")
		}
	}
}

func TestSandboxCapabilities(t *testing.T) {
	needSandbox(t)
	res, _ := runProbe(t, probeImage(t), nil, "caps")
	want := fmt.Sprintf("%016x", capMask(dockerCaps))
	for _, k := range []string{"CapEff", "CapPrm", "CapBnd"} {
		expect(t, res, k, want)
	}
	for _, k := range []string{"CapInh", "CapAmb"} {
		expect(t, res, k, "0000000000000000")
	}
}

func TestSandboxMaskedPaths(t *testing.T) {
	needSandbox(t)
	var paths []string
	for _, rel := range maskedPaths {
		paths = append(paths, "/"+rel)
	}
	res, _ := runProbe(t, probeImage(t), nil, append([]string{"masked"}, paths...)...)
	for _, p := range paths {
		fi, err := os.Stat(p)
		switch {
		case err != nil:
			expect(t, res, p, "ENOENT")
		case fi.IsDir():
			expect(t, res, p, "dir:0:ok")
		default:
			expect(t, res, p, "chr:0:ok")
		}
	}
	expect(t, res, "write_proc_sys", "EROFS")
	expect(t, res, "write_sys", "EROFS")
	if _, err := os.Stat("/proc/acpi"); err == nil {
		expect(t, res, "mkdir_acpi", "EROFS")
	}
}

// TestSandboxStillWorks checks what ordinary steps rely on after the pivot:
// binds, hostname, workdir, loopback, the usual /dev nodes, and that the
// mount points the sandbox made are taken out of the upper dir.
func TestSandboxStillWorks(t *testing.T) {
	needSandbox(t)
	secret := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(secret, []byte("s3cret"), 0o600); err != nil {
		t.Fatal(err)
	}
	res, upper := runProbe(t, probeImage(t), func(s *RunSpec) {
		s.Binds = []Bind{{Src: secret, Target: "/run/secrets/token"}}
		s.Hostname = "sbx"
		s.Workdir = "/work/dir"
	}, "env")
	expect(t, res, "hostname", "sbx")
	expect(t, res, "cwd", "/work/dir")
	expect(t, res, "secret", "s3cret")
	expect(t, res, "secret_err", "ok")
	expect(t, res, "secret_write", "EROFS")
	if _, err := os.Stat("/sbin/ip"); err == nil {
		expect(t, res, "lo_flags", "0x9") // IFF_UP|IFF_LOOPBACK
	}
	expect(t, res, "dev_null", "ok")
	expect(t, res, "urandom", "16")
	expect(t, res, "zero", "ok")
	expect(t, res, "shm", "ok")
	expect(t, res, "ptmx", "ok")
	expect(t, res, "dev", "fd,full,null,ptmx,pts,random,shm,stderr,stdin,stdout,tty,urandom,zero")

	if err := RemoveCreated(upper, filepath.Join(filepath.Dir(upper), "created")); err != nil {
		t.Fatal(err)
	}
	ents, err := os.ReadDir(upper)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	// /work/dir is the step's (the workdir is made inside the sandbox);
	// proc, sys, dev and run/secrets are the sandbox's and must be gone.
	if got := strings.Join(names, ","); got != "work" {
		t.Errorf("upper dir after RemoveCreated holds %q, want only \"work\"", got)
	}
}

// A path overlayfs would misread is refused up front, with the reason.
func TestSandboxRefusesOverlayUnsafePaths(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "a,b")
	spec := RunSpec{Lowers: []string{filepath.Join(dir, "lower")}, Upper: filepath.Join(dir, "upper"), Work: filepath.Join(dir, "work"), Merged: filepath.Join(dir, "merged"), Argv: []string{"/bin/true"}}
	err := Run(context.Background(), spec, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "holds ',' or ':'") {
		t.Fatalf("err = %v", err)
	}
}
