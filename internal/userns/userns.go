package userns

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

const (
	// stageEnv tells a copy of layerimg where it is in entering: "map" (its
	// ids are not mapped yet: wait, then exec again) or "in" (mapped, root
	// of the namespace, with its capabilities).
	stageEnv = "LAYERIMG_USERNS"
	// parentEnv carries the pid of the layerimg that waits outside, so the
	// copy can tell if it died before the copy could ask to die with it.
	parentEnv = "LAYERIMG_USERNS_PARENT"
	// Size is how many ids the namespace maps: 0 (the user) and 1..65535
	// (the subordinate range), enough for every id a Debian image uses.
	Size = 65536
)

// Inside reports whether this process is layerimg inside the user namespace
// that Enter made. The stage variable alone is not trusted: the process must
// also see a uid map that is not the host's identity map.
func Inside() bool {
	if os.Getenv(stageEnv) != "in" {
		return false
	}
	data, err := os.ReadFile("/proc/self/uid_map")
	if err != nil {
		return false
	}
	f := strings.Fields(string(data))
	return !(len(f) == 3 && f[0] == "0" && f[1] == "0" && f[2] == "4294967295")
}

// Main is the namespace side of Enter. It returns at once in any other
// process; in the copy that Enter started it waits until the ids are mapped
// and then executes layerimg again, now as root of the namespace: a
// process whose uid was not mapped when it executed has no capabilities
// there, and the exec is what grants them. It must run first in main,
// before anything reads the uid.
func Main() {
	switch os.Getenv(stageEnv) {
	case "map":
		if err := remap(); err != nil {
			fmt.Fprintf(os.Stderr, "layerimg: entering the user namespace: %v\n", err)
			os.Exit(125)
		}
	case "in":
		// The exec's new capabilities cleared the death signal that the
		// parent asked for: ask again, then check the parent is still there.
		unix.Prctl(unix.PR_SET_PDEATHSIG, uintptr(syscall.SIGKILL), 0, 0, 0)
		if strconv.Itoa(os.Getppid()) != os.Getenv(parentEnv) {
			os.Exit(125)
		}
	}
}

// remap waits for Enter to map the ids (it closes fd 3 when done), then
// executes this program again.
func remap() error {
	mapped := os.NewFile(3, "userns-mapped")
	var b [1]byte
	n, _ := mapped.Read(b[:])
	mapped.Close()
	if n != 0 {
		return errors.New("the parent could not map the ids")
	}
	if os.Getuid() != 0 || os.Getgid() != 0 {
		return fmt.Errorf("uid %d gid %d after mapping, want 0", os.Getuid(), os.Getgid())
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}
	env := append(withoutEnv(os.Environ(), stageEnv), stageEnv+"=in")
	return syscall.Exec(self, os.Args, env)
}

func withoutEnv(env []string, name string) []string {
	out := env[:0:0]
	for _, kv := range env {
		if !strings.HasPrefix(kv, name+"=") {
			out = append(out, kv)
		}
	}
	return out
}

// Enter runs this program again with args, in a new user namespace mapped
// from the user's subordinate ranges, and waits for it. Its standard
// streams are this process's; SIGINT, SIGTERM and SIGHUP are passed on; it
// is killed if this process dies. It returns the copy's exit status (128+N
// for a signal N). Every check of Preflight runs first: nothing starts when
// one fails.
func Enter(ctx context.Context, sys System, args []string) (int, error) {
	m, err := Preflight(sys)
	if err != nil {
		return 0, err
	}
	self, err := os.Executable()
	if err != nil {
		return 0, err
	}
	syncR, syncW, err := os.Pipe()
	if err != nil {
		return 0, err
	}
	defer syncR.Close()
	defer syncW.Close()
	cmd := exec.Command(self, args...)
	cmd.Env = append(withoutEnv(withoutEnv(os.Environ(), stageEnv), parentEnv), stageEnv+"=map", parentEnv+"="+strconv.Itoa(os.Getpid()))
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	cmd.ExtraFiles = []*os.File{syncR}
	// No process group of its own: the copy stays in the terminal's
	// foreground group, so Ctrl-C and the live display reach it as they
	// would reach layerimg itself.
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWUSER, Pdeathsig: syscall.SIGKILL}
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
	defer signal.Stop(sigs)
	if err := cmd.Start(); err != nil {
		if errors.Is(err, syscall.EPERM) || errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EINVAL) || errors.Is(err, syscall.EUSERS) {
			return 0, DisabledError(err)
		}
		return 0, fmt.Errorf("starting layerimg in a user namespace: %w", err)
	}
	syncR.Close()
	pid := strconv.Itoa(cmd.Process.Pid)
	for _, c := range []struct{ tool, file string }{{"newuidmap", m.uidArgs()}, {"newgidmap", m.gidArgs()}} {
		out, err := exec.CommandContext(ctx, sys.tool(c.tool), append([]string{pid}, strings.Fields(c.file)...)...).CombinedOutput()
		if err != nil {
			cmd.Process.Kill()
			cmd.Wait()
			return 0, fmt.Errorf("%s %s %s: %w: %s", c.tool, pid, c.file, err, strings.TrimSpace(string(out)))
		}
	}
	syncW.Close() // the copy may go on
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	for {
		select {
		case s := <-sigs:
			cmd.Process.Signal(s)
		case err := <-done:
			var ee *exec.ExitError
			if errors.As(err, &ee) {
				if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
					return 128 + int(ws.Signal()), nil
				}
				return ee.ExitCode(), nil
			}
			if err != nil {
				return 0, err
			}
			return 0, nil
		}
	}
}
