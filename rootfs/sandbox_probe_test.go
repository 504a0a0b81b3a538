package rootfs

// probeSource is a static program that plays a hostile run step. Each mode
// tries one way out of the sandbox and prints one line, "RESULT k=v ...",
// with an errno name (or "ok") for every attempt, for the test to parse.
const probeSource = `package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

var out []string

func put(k string, v any) { out = append(out, fmt.Sprintf("%s=%v", k, v)) }

// errName is "ok" for nil, else the errno's name.
func errName(err error) string {
	if err == nil {
		return "ok"
	}
	var e unix.Errno
	if errors.As(err, &e) {
		if n := unix.ErrnoName(e); n != "" {
			return n
		}
	}
	return strings.ReplaceAll(err.Error(), " ", "_")
}

func main() {
	switch os.Args[1] {
	case "escape":
		escape(os.Args[2])
	case "mount":
		put("tmpfs", errName(unix.Mount("none", "/mnt", "tmpfs", 0, "")))
		put("block", errName(unix.Mount("/dev/sda", "/mnt", "ext4", unix.MS_RDONLY, "")))
		put("bind", errName(unix.Mount("/", "/mnt", "", unix.MS_BIND, "")))
		put("umount", errName(unix.Unmount("/proc", unix.MNT_DETACH)))
	case "sysrq":
		f, err := os.OpenFile("/proc/sysrq-trigger", os.O_WRONLY, 0)
		put("open", errName(err))
		if err == nil {
			_, err = f.Write([]byte("h"))
			put("write", errName(err))
		}
	case "modules":
		put("init", errName(unix.InitModule(nil, "")))
		f, err := os.Open("/probe")
		if err != nil {
			put("finit", errName(err))
			break
		}
		put("finit", errName(unix.FinitModule(int(f.Fd()), "", 0)))
	case "ptrace":
		pid, _ := strconv.Atoi(os.Args[2])
		put("attach", errName(unix.PtraceAttach(pid)))
		put("kill", errName(unix.Kill(pid, unix.SIGCONT)))
		_, err := os.Stat(fmt.Sprintf("/proc/%d", pid))
		put("proc", errName(err))
	case "mknod":
		for _, spec := range os.Args[2:] {
			var major, minor uint32
			fmt.Sscanf(spec, "%d:%d", &major, &minor)
			for _, dir := range []string{"/tmp", "/dev"} {
				name := filepath.Join(dir, fmt.Sprintf("b%d_%d", major, minor))
				put(name+".mknod", errName(unix.Mknod(name, unix.S_IFBLK|0o600, int(unix.Mkdev(major, minor)))))
				f, err := os.Open(name)
				put(name+".open", errName(err))
				n := 0
				if err == nil {
					n, _ = f.Read(make([]byte, 512))
				}
				put(name+".read", n)
			}
		}
	case "caps":
		data, err := os.ReadFile("/proc/self/status")
		put("status", errName(err))
		for _, line := range strings.Split(string(data), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.HasPrefix(k, "Cap") {
				put(k, strings.TrimSpace(v))
			}
		}
	case "masked":
		for _, p := range os.Args[2:] {
			fi, err := os.Stat(p)
			switch {
			case err != nil:
				put(p, errName(err))
			case fi.IsDir():
				ents, err := os.ReadDir(p)
				put(p, fmt.Sprintf("dir:%d:%s", len(ents), errName(err)))
			default:
				kind := "file"
				if fi.Mode()&os.ModeCharDevice != 0 {
					kind = "chr" // /dev/null bound over it
				}
				f, err := os.Open(p)
				n := 0
				if err == nil {
					n, _ = f.Read(make([]byte, 4096))
				}
				put(p, fmt.Sprintf("%s:%d:%s", kind, n, errName(err)))
			}
		}
		// Opening for writing is enough to meet a read-only mount; nothing
		// is written, so a broken sandbox could not change the host here.
		put("write_proc_sys", errName(openWrite("/proc/sys/kernel/core_pattern")))
		put("write_sys", errName(openWrite("/sys/class/net/lo/mtu")))
		put("mkdir_acpi", errName(os.Mkdir("/proc/acpi/x", 0o755)))
	case "env":
		h, _ := os.Hostname()
		put("hostname", h)
		wd, _ := os.Getwd()
		put("cwd", wd)
		b, err := os.ReadFile("/run/secrets/token")
		put("secret", string(b))
		put("secret_err", errName(err))
		put("secret_write", errName(os.WriteFile("/run/secrets/token", []byte("x"), 0)))
		flags, _ := os.ReadFile("/sys/class/net/lo/flags")
		put("lo_flags", strings.TrimSpace(string(flags)))
		// What an ordinary package manager needs from /dev.
		put("dev_null", errName(os.WriteFile("/dev/null", []byte("x"), 0)))
		r, err := os.Open("/dev/urandom")
		n := 0
		if err == nil {
			n, _ = r.Read(make([]byte, 16))
		}
		put("urandom", n)
		z, err := os.Open("/dev/zero")
		put("zero", errName(err))
		if err == nil {
			z.Close()
		}
		put("shm", errName(os.WriteFile("/dev/shm/x", []byte("x"), 0o600)))
		_, err = os.Stat("/dev/pts/ptmx")
		put("ptmx", errName(err))
		ents, _ := os.ReadDir("/dev")
		var names []string
		for _, e := range ents {
			names = append(names, e.Name())
		}
		put("dev", strings.Join(names, ","))
	}
	fmt.Println("RESULT " + strings.Join(out, " "))
}

func openWrite(p string) error {
	f, err := os.OpenFile(p, os.O_WRONLY, 0)
	if err == nil {
		f.Close()
	}
	return err
}

// escape is the classic chroot escape: chroot into a subdirectory while
// holding a descriptor of "/", climb out of it, and chroot to wherever the
// climb ends. Then it tries to create a file in the host's canary directory.
func escape(canary string) {
	put("mkdir", errName(os.Mkdir("/.esc", 0o755)))
	fd, err := unix.Open("/", unix.O_RDONLY|unix.O_DIRECTORY, 0)
	put("open", errName(err))
	put("chroot1", errName(unix.Chroot("/.esc")))
	put("fchdir", errName(unix.Fchdir(fd)))
	for i := 0; i < 64; i++ {
		unix.Chdir("..")
	}
	put("chroot2", errName(unix.Chroot(".")))
	_, err = os.Stat("/image-root-marker")
	put("image_root", errName(err))
	_, err = os.Stat(canary)
	put("canary_stat", errName(err))
	err = os.WriteFile(filepath.Join(canary, "escaped"), []byte("escaped"), 0o644)
	put("canary_write", errName(err))
}
`
