package rootfs

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/layerimg/layerimg/internal/proc"
)

// sandboxEnv marks the re-executed binary as a sandbox's first process.
const sandboxEnv = "LAYERIMG_SANDBOX_CHILD"

// Bind is a host file mounted read-only into the sandbox.
type Bind struct {
	Src    string `json:"src"`
	Target string `json:"target"` // absolute, inside the rootfs
}

// RunSpec describes one command run in a sandbox.
type RunSpec struct {
	Lowers   []string `json:"lowers"` // host dirs, bottom layer first
	Upper    string   `json:"upper"`  // empty dir; receives the changes
	Work     string   `json:"work"`   // empty dir on the same filesystem as Upper
	Merged   string   `json:"merged"` // empty dir, the mount point
	Argv     []string `json:"argv"`
	Env      []string `json:"env"`
	Workdir  string   `json:"workdir"`
	Network  string   `json:"network"` // "host" or "none"
	Hostname string   `json:"hostname"`
	Binds    []Bind   `json:"binds"`
	// ResolvConf mounts the host's /etc/resolv.conf for the run only.
	ResolvConf bool `json:"resolv_conf"`
	// UserNS says the sandbox starts as root of a user namespace (a
	// rootless build): overlayfs is mounted with userxattr.
	UserNS bool `json:"userns"`
	// StateFile receives the mount points the sandbox had to create, so that
	// they can be taken out of the upper dir afterwards.
	StateFile string `json:"state_file"`
	// Agent serves AgentListener's connections (agent.go) instead of
	// executing Argv: an Ansible step's tasks run through it.
	Agent         bool     `json:"agent,omitempty"`
	AgentListener *os.File `json:"-"`
}

// InScratch lays out s's Upper, Work and Merged directories and its
// StateFile in dir, making the directories.
func (s *RunSpec) InScratch(dir string) error {
	s.Upper = filepath.Join(dir, "upper")
	s.Work = filepath.Join(dir, "work")
	s.Merged = filepath.Join(dir, "merged")
	s.StateFile = filepath.Join(dir, "created")
	for _, d := range []string{s.Upper, s.Work, s.Merged} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return err
		}
	}
	return nil
}

// ExitError is a command that ran and failed.
type ExitError struct {
	Code int
	Tail []string // the last lines of its output
}

func (e *ExitError) Error() string {
	msg := fmt.Sprintf("exit status %d", e.Code)
	if len(e.Tail) > 0 {
		msg += "; last output:\n    " + strings.Join(e.Tail, "\n    ")
	}
	return msg
}

// IsSandboxChild reports whether this process was started as a sandbox. A
// program that uses Run must call SandboxMain first thing in main (and in
// TestMain for tests).
func IsSandboxChild() bool { return os.Getenv(sandboxEnv) == "1" }

// SandboxMain runs the sandbox side when this process is a sandbox child and
// never returns then; otherwise it returns at once.
func SandboxMain() {
	if !IsSandboxChild() {
		return
	}
	// Capabilities are per thread: the one that drops them must be the one
	// that execs the step.
	runtime.LockOSThread()
	err := child()
	fmt.Fprintf(os.Stderr, "layerimg sandbox: %v\n", err)
	os.Exit(125)
}

// CheckPrivileges says why sandboxed steps cannot run here, if they cannot.
func CheckPrivileges() error {
	if os.Geteuid() != 0 {
		return errors.New("run steps and tests need root or a user namespace (mount and PID namespaces, overlayfs); layerimg build enters one by itself for an ordinary user, mapped from /etc/subuid and /etc/subgid")
	}
	return nil
}

// Run executes spec.Argv in new mount, PID, UTS and IPC namespaces (and a
// network namespace for network: none), with an overlayfs of spec.Lowers and
// spec.Upper as its root (pivot_root, the host's root detached), Docker's
// default capabilities, masked /proc and /sys paths, and a /dev on which no
// device node but the usual ones can be opened. Output goes to out, line by
// line.
// Cancelling ctx kills every process of the sandbox: they die with its PID 1,
// and its mounts die with its mount namespace.
func Run(ctx context.Context, spec RunSpec, out io.Writer) error {
	if err := CheckPrivileges(); err != nil {
		return err
	}
	// overlayfs splits its options at ',' and its lower dirs at ':', and a
	// path holding one fails with a bare ENOENT from mount.
	for _, d := range append([]string{spec.Upper, spec.Work}, spec.Lowers...) {
		if strings.ContainsAny(d, ",:") {
			return fmt.Errorf("overlayfs cannot take the path %s (it holds ',' or ':'): use a cache directory (--cache-dir) without them", d)
		}
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}
	specR, specW, err := os.Pipe()
	if err != nil {
		return err
	}
	defer specR.Close()
	outR, outW, err := os.Pipe()
	if err != nil {
		specW.Close()
		return err
	}
	cmd := exec.CommandContext(ctx, self)
	cmd.Env = []string{sandboxEnv + "=1"}
	cmd.ExtraFiles = []*os.File{specR}
	if spec.AgentListener != nil {
		cmd.ExtraFiles = append(cmd.ExtraFiles, spec.AgentListener) // fd 4
	}
	cmd.Stdout, cmd.Stderr = outW, outW
	flags := unix.CLONE_NEWNS | unix.CLONE_NEWPID | unix.CLONE_NEWUTS | unix.CLONE_NEWIPC
	if spec.Network == "none" {
		flags |= unix.CLONE_NEWNET
	}
	// Its first process gets SIGKILL when layerimg dies; the kernel then
	// kills the rest of the namespace.
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: uintptr(flags)}
	proc.Own(cmd)
	err = cmd.Start()
	outW.Close()
	if err != nil {
		specW.Close()
		outR.Close()
		return fmt.Errorf("starting sandbox: %w", err)
	}
	enc := json.NewEncoder(specW)
	encErr := enc.Encode(spec)
	specW.Close()

	tail := &tailLines{max: 15}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		sc := bufio.NewScanner(outR)
		sc.Buffer(make([]byte, 64*1024), 1024*1024)
		for sc.Scan() {
			line := sc.Text()
			tail.add(line)
			fmt.Fprintln(out, line)
		}
		io.Copy(io.Discard, outR)
	}()
	waitErr := cmd.Wait()
	wg.Wait()
	outR.Close()
	if ctx.Err() != nil {
		return ctx.Err()
	}
	if encErr != nil {
		return fmt.Errorf("sending sandbox spec: %w", encErr)
	}
	var ee *exec.ExitError
	if errors.As(waitErr, &ee) {
		return &ExitError{Code: ee.ExitCode(), Tail: tail.lines}
	}
	return waitErr
}

type tailLines struct {
	max   int
	lines []string
}

func (t *tailLines) add(s string) {
	t.lines = append(t.lines, s)
	if len(t.lines) > t.max {
		t.lines = t.lines[1:]
	}
}

// child is PID 1 of the sandbox: it builds the mounts, pivots into them,
// drops capabilities and execs.
func child() error {
	var spec RunSpec
	specFile := os.NewFile(3, "spec")
	err := json.NewDecoder(specFile).Decode(&spec)
	specFile.Close()
	if err != nil {
		return fmt.Errorf("reading spec: %w", err)
	}
	last, err := lastCap()
	if err != nil {
		return err
	}
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
		return fmt.Errorf("making mounts private: %w", err)
	}
	if err := mountOverlay(spec); err != nil {
		return err
	}
	m := spec.Merged
	var created []string
	ensure := func(rel string, dir bool) error {
		p, err := resolveIn(m, strings.TrimPrefix(rel, "/"), false)
		if err != nil {
			return err
		}
		if fi, err := os.Lstat(p); err == nil {
			// mount(2) would follow the link from the host's root, not
			// the image's: the mount would land elsewhere.
			if fi.Mode()&os.ModeSymlink != 0 {
				return fmt.Errorf("%s is a symlink in the image; a mount point must not be", rel)
			}
			return nil
		}
		// Record each missing parent too, deepest last.
		var missing []string
		for q := filepath.Dir(p); q != m; q = filepath.Dir(q) {
			if _, err := os.Lstat(q); err == nil {
				break
			}
			missing = append([]string{q}, missing...)
		}
		for _, q := range missing {
			if err := os.Mkdir(q, 0o755); err != nil {
				return err
			}
			created = append(created, strings.TrimPrefix(q, m+"/"))
		}
		if dir {
			err = os.Mkdir(p, 0o755)
		} else {
			err = os.WriteFile(p, nil, 0o644)
		}
		if err == nil {
			created = append(created, strings.TrimPrefix(p, m+"/"))
		}
		return err
	}
	for _, d := range []string{"proc", "sys", "dev"} {
		if err := ensure(d, true); err != nil {
			return fmt.Errorf("creating /%s: %w", d, err)
		}
	}
	binds := spec.Binds
	if spec.ResolvConf {
		if fi, err := os.Lstat(filepath.Join(m, "etc/resolv.conf")); err == nil && fi.Mode()&os.ModeSymlink != 0 {
			// A link into /run (systemd-resolved) would be followed to a
			// file that does not exist in the sandbox: leave DNS alone.
		} else if _, err := os.Stat("/etc/resolv.conf"); err == nil {
			binds = append(binds, Bind{Src: "/etc/resolv.conf", Target: "/etc/resolv.conf"})
		}
	}
	for _, b := range binds {
		if err := ensure(b.Target, false); err != nil {
			return fmt.Errorf("creating mount point %s: %w", b.Target, err)
		}
	}
	if err := os.WriteFile(spec.StateFile, []byte(strings.Join(created, "\n")), 0o600); err != nil {
		return err
	}
	if err := unix.Mount("proc", filepath.Join(m, "proc"), "proc", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, ""); err != nil {
		return fmt.Errorf("mounting /proc: %w", err)
	}
	if err := unix.Mount("sysfs", filepath.Join(m, "sys"), "sysfs", unix.MS_RDONLY|unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, ""); err != nil {
		// sysfs cannot be mounted in a network namespace we do not own the
		// view of; a read-only bind of the host's is the same for a build.
		// Not recursive: the host's submounts (cgroups) would stay writable.
		if err := bindSys(filepath.Join(m, "sys"), spec.UserNS); err != nil {
			return fmt.Errorf("mounting /sys: %w", err)
		}
	}
	if err := mountDev(filepath.Join(m, "dev")); err != nil {
		return err
	}
	for _, b := range binds {
		p, err := resolveIn(m, strings.TrimPrefix(b.Target, "/"), false)
		if err != nil {
			return err
		}
		if err := bindRO(b.Src, p, unix.MS_NOSUID|unix.MS_NODEV); err != nil {
			return fmt.Errorf("mounting %s: %w", b.Target, err)
		}
	}
	if err := maskPaths(m); err != nil {
		return err
	}
	if spec.Hostname != "" {
		if err := unix.Sethostname([]byte(spec.Hostname)); err != nil {
			return err
		}
	}
	if spec.Network == "none" {
		// Bring loopback up so that builds that talk to localhost still work.
		_ = exec.Command("/sbin/ip", "link", "set", "lo", "up").Run()
	}
	if err := pivotRoot(m); err != nil {
		return err
	}
	wd := spec.Workdir
	if wd == "" {
		wd = "/"
	}
	if err := os.MkdirAll(wd, 0o755); err != nil {
		return fmt.Errorf("workdir %s: %w", wd, err)
	}
	if err := os.Chdir(wd); err != nil {
		return fmt.Errorf("workdir %s: %w", wd, err)
	}
	for _, kv := range spec.Env {
		if k, v, ok := strings.Cut(kv, "="); ok && k == "PATH" {
			os.Setenv("PATH", v)
		}
	}
	if spec.Agent {
		return serveAgent(last, spec.Env)
	}
	bin, err := exec.LookPath(spec.Argv[0])
	if err != nil {
		return fmt.Errorf("command %q not found in the image: %w", spec.Argv[0], err)
	}
	if err := dropCaps(last); err != nil {
		return err
	}
	return unix.Exec(bin, spec.Argv, spec.Env)
}

// pivotRoot makes root the sandbox's / and detaches the host's root, as runc
// does. A chroot would leave the host one directory climb away for a step
// that keeps CAP_SYS_CHROOT; after pivot_root no path leads back.
func pivotRoot(root string) error {
	if err := os.Chdir(root); err != nil {
		return fmt.Errorf("entering the image root: %w", err)
	}
	// pivot_root(".", ".") stacks the old root on top of the new one, so
	// that no directory for it is needed in the image; unmounting "." then
	// takes the old root away.
	if err := unix.PivotRoot(".", "."); err != nil {
		return fmt.Errorf("pivot_root into the image root (the host's / must be a real mount, not an initramfs): %w", err)
	}
	if err := unix.Unmount(".", unix.MNT_DETACH); err != nil {
		return fmt.Errorf("detaching the host's root: %w", err)
	}
	if err := os.Chdir("/"); err != nil {
		return fmt.Errorf("entering the image root: %w", err)
	}
	return nil
}

// Paths that Docker and runc hide from containers: kernel memory, keys,
// timers and firmware tables (maskedPaths), and kernel knobs that a build
// has no business turning (readonlyPaths).
var (
	maskedPaths = []string{
		"proc/acpi", "proc/asound", "proc/kcore", "proc/keys", "proc/latency_stats",
		"proc/timer_list", "proc/timer_stats", "proc/sched_debug", "proc/scsi",
		"sys/firmware", "sys/devices/virtual/powercap",
	}
	readonlyPaths = []string{"proc/bus", "proc/fs", "proc/irq", "proc/sys", "proc/sysrq-trigger"}
)

// maskPaths covers maskedPaths under root with /dev/null (files) or an empty
// read-only tmpfs (directories), and makes readonlyPaths read-only. A path
// this kernel does not have is skipped.
func maskPaths(root string) error {
	for _, rel := range maskedPaths {
		p := filepath.Join(root, rel)
		fi, err := os.Lstat(p)
		if errors.Is(err, os.ErrNotExist) {
			continue
		} else if err != nil {
			return fmt.Errorf("masking /%s: %w", rel, err)
		}
		if fi.IsDir() {
			err = unix.Mount("tmpfs", p, "tmpfs", unix.MS_RDONLY|unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, "size=0")
		} else {
			err = unix.Mount("/dev/null", p, "", unix.MS_BIND, "")
		}
		if err != nil {
			return fmt.Errorf("masking /%s: %w", rel, err)
		}
	}
	for _, rel := range readonlyPaths {
		p := filepath.Join(root, rel)
		if _, err := os.Lstat(p); errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err := bindRO(p, p, unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC); err != nil {
			return fmt.Errorf("making /%s read-only: %w", rel, err)
		}
	}
	return nil
}

func mountOverlay(spec RunSpec) error {
	// overlayfs lists lower dirs top first. Relative names keep the option
	// string short; the mount data is limited to one page.
	common := filepath.Dir(spec.Lowers[0])
	rel := make([]string, len(spec.Lowers))
	for i, l := range spec.Lowers {
		if filepath.Dir(l) != common {
			common = ""
		}
		rel[len(spec.Lowers)-1-i] = l
	}
	if common != "" {
		if err := os.Chdir(common); err != nil {
			return err
		}
		for i := range rel {
			rel[i] = filepath.Base(rel[i])
		}
	}
	// No redirects made (a renamed directory is copied up whole) or
	// followed: an upper dir must become a layer on its own.
	redirect := "off"
	if spec.UserNS {
		// userxattr takes "nofollow" for the same: with redirect_always_follow
		// set, the kernel reads "off" as "follow", which userxattr refuses.
		redirect = "nofollow"
	}
	opts := fmt.Sprintf("lowerdir=%s,upperdir=%s,workdir=%s,redirect_dir=%s,index=off,metacopy=off",
		strings.Join(rel, ":"), spec.Upper, spec.Work, redirect)
	if spec.UserNS {
		// Root of a user namespace may not write trusted.* xattrs:
		// opaque dirs' marks go in user.overlay.*.
		opts += ",userxattr"
	}
	// nodev: a device node that a step makes (it keeps CAP_MKNOD, as in
	// Docker, so that images may ship nodes) cannot be opened.
	if err := unix.Mount("overlay", spec.Merged, "overlay", unix.MS_NODEV, opts); err != nil {
		if spec.UserNS && (errors.Is(err, unix.EPERM) || errors.Is(err, unix.EINVAL)) {
			return OverlayUserNSError(err)
		}
		return fmt.Errorf("mounting overlayfs (%d lower dirs): %w", len(rel), err)
	}
	return os.Chdir("/")
}

// OverlayUserNSError is overlayfs refused in a user namespace: the kernel
// allows it from Linux 5.11 on (userxattr came with it).
func OverlayUserNSError(err error) error {
	var uts unix.Utsname
	release := "this kernel"
	if unix.Uname(&uts) == nil {
		release = "Linux " + unix.ByteSliceToString(uts.Release[:])
	}
	return fmt.Errorf("mounting overlayfs in a user namespace was refused by %s: rootless run steps need Linux 5.11 or later (or build as root): %w", release, err)
}

// bindSys binds the host's /sys read-only onto dst. In a user namespace
// the host's submounts of /sys are locked to it, and a bind without them
// is refused: there the bind is recursive, and mount_setattr makes every
// mount of it read-only.
func bindSys(dst string, userns bool) error {
	flags := uintptr(unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC)
	if !userns {
		return bindRO("/sys", dst, flags)
	}
	if err := unix.Mount("/sys", dst, "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
		return err
	}
	return unix.MountSetattr(-1, dst, unix.AT_RECURSIVE, &unix.MountAttr{
		Attr_set: unix.MOUNT_ATTR_RDONLY | unix.MOUNT_ATTR_NOSUID | unix.MOUNT_ATTR_NODEV | unix.MOUNT_ATTR_NOEXEC,
	})
}

// bindRO binds src read-only onto dst. A bind remount sets every per-mount
// flag, so flags (nosuid, nodev, noexec) must name all that should hold.
func bindRO(src, dst string, flags uintptr) error {
	if err := unix.Mount(src, dst, "", unix.MS_BIND, ""); err != nil {
		return err
	}
	return unix.Mount("", dst, "", unix.MS_BIND|unix.MS_REMOUNT|unix.MS_RDONLY|flags, "")
}

// devNodes are the devices a step gets in /dev.
var devNodes = []string{"null", "zero", "full", "random", "urandom", "tty"}

// mountDev gives the sandbox a minimal /dev: a nodev tmpfs holding the usual
// character devices, a private devpts and /dev/shm.
func mountDev(dev string) error {
	if err := unix.Mount("tmpfs", dev, "tmpfs", unix.MS_NOSUID|unix.MS_NOEXEC|unix.MS_NODEV, "mode=755,size=64m"); err != nil {
		return fmt.Errorf("mounting /dev: %w", err)
	}
	// The usual devices are the host's nodes bound onto empty files (runc's
	// rootless way): a bind keeps the host mount's permission to open
	// devices, while a node made on this nodev tmpfs cannot be opened.
	for _, name := range devNodes {
		host := filepath.Join("/dev", name)
		if fi, err := os.Stat(host); err != nil || fi.Mode()&os.ModeCharDevice == 0 {
			return fmt.Errorf("the host has no character device %s to give the sandbox", host)
		}
		p := filepath.Join(dev, name)
		if err := os.WriteFile(p, nil, 0o666); err != nil {
			return fmt.Errorf("creating /dev/%s: %w", name, err)
		}
		if err := unix.Mount(host, p, "", unix.MS_BIND, ""); err != nil {
			return fmt.Errorf("mounting the host's %s: %w", host, err)
		}
	}
	for _, d := range []string{"pts", "shm"} {
		if err := os.Mkdir(filepath.Join(dev, d), 0o755); err != nil {
			return err
		}
	}
	// devpts keeps dev so that its ptys open; it has no mknod of its own.
	if err := unix.Mount("devpts", filepath.Join(dev, "pts"), "devpts", unix.MS_NOSUID|unix.MS_NOEXEC, "newinstance,ptmxmode=0666,mode=0620"); err == nil {
		_ = os.Symlink("pts/ptmx", filepath.Join(dev, "ptmx"))
	}
	if err := unix.Mount("shm", filepath.Join(dev, "shm"), "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, "mode=1777,size=64m"); err != nil {
		return fmt.Errorf("mounting /dev/shm: %w", err)
	}
	for name, target := range map[string]string{"fd": "/proc/self/fd", "stdin": "/proc/self/fd/0", "stdout": "/proc/self/fd/1", "stderr": "/proc/self/fd/2"} {
		if err := os.Symlink(target, filepath.Join(dev, name)); err != nil {
			return err
		}
	}
	return nil
}

// RemoveCreated takes the mount points that the sandbox created out of the
// upper dir, deepest first, so that they never reach a layer. A directory
// the step itself wrote into is kept.
func RemoveCreated(upper, stateFile string) error {
	data, err := os.ReadFile(stateFile)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil
		}
		return err
	}
	root, err := os.Open(upper)
	if err != nil {
		return err
	}
	defer root.Close()
	lines := strings.Split(strings.TrimSpace(string(data)), "\n")
	for i := len(lines) - 1; i >= 0; i-- {
		if lines[i] == "" {
			continue
		}
		if err := removeBeneath(root, lines[i]); err != nil {
			return fmt.Errorf("removing the mount point /%s: %w", lines[i], err)
		}
	}
	return nil
}

// removeBeneath removes rel (a file or an empty dir) below the directory
// root without following a symlink on the way: the step may have replaced
// a mount point's parent with a link to a host directory.
func removeBeneath(root *os.File, rel string) error {
	dir, base := filepath.Split(rel)
	fd := int(root.Fd())
	if dir != "" {
		pfd, err := unix.Openat2(fd, dir, &unix.OpenHow{
			Flags:   unix.O_RDONLY | unix.O_DIRECTORY | unix.O_CLOEXEC,
			Resolve: unix.RESOLVE_BENEATH | unix.RESOLVE_NO_SYMLINKS | unix.RESOLVE_NO_MAGICLINKS,
		})
		if errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ELOOP) || errors.Is(err, unix.ENOTDIR) || errors.Is(err, unix.EXDEV) {
			return nil // gone, or no longer the dir the sandbox made: not ours to remove
		}
		if err != nil {
			return err
		}
		defer unix.Close(pfd)
		fd = pfd
	}
	err := unix.Unlinkat(fd, base, 0)
	if errors.Is(err, unix.EISDIR) {
		err = unix.Unlinkat(fd, base, unix.AT_REMOVEDIR)
	}
	if err == nil || errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ENOTEMPTY) || errors.Is(err, unix.EEXIST) {
		return nil
	}
	return err
}
