package userns

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
)

// System is where Preflight looks: the files and tools of the machine.
// Tests point it elsewhere.
type System struct {
	SubUID, SubGID string // /etc/subuid, /etc/subgid
	ProcSys        string // /proc/sys
	// Path is searched for newuidmap and newgidmap; empty means $PATH.
	Path string
	// UID and GID are the user's; Name is its login name (looked up when
	// empty).
	UID, GID int
	Name     string
}

// Host is the running machine and user.
func Host() System {
	return System{SubUID: "/etc/subuid", SubGID: "/etc/subgid", ProcSys: "/proc/sys", UID: os.Getuid(), GID: os.Getgid()}
}

func (s System) tool(name string) string {
	if p, err := s.lookPath(name); err == nil {
		return p
	}
	return name
}

func (s System) lookPath(name string) (string, error) {
	if s.Path == "" {
		return exec.LookPath(name)
	}
	for _, dir := range filepath.SplitList(s.Path) {
		p := filepath.Join(dir, name)
		if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", exec.ErrNotFound
}

// Mapping is the namespace's id maps: 0 is the user's own id, 1..Size-1
// start at the subordinate range's first id.
type Mapping struct {
	UID, GID         int
	SubUIDs, SubGIDs int // first subordinate ids
	UserName         string
}

// uidArgs and gidArgs are newuidmap's and newgidmap's triples.
func (m Mapping) uidArgs() string { return fmt.Sprintf("0 %d 1 1 %d %d", m.UID, m.SubUIDs, Size-1) }
func (m Mapping) gidArgs() string { return fmt.Sprintf("0 %d 1 1 %d %d", m.GID, m.SubGIDs, Size-1) }

// Preflight checks, before anything runs, all that a rootless build needs:
// newuidmap and newgidmap, user namespaces enabled, and subordinate ranges
// of at least Size-1 ids for the user. Each error says what to install,
// which sysctl to set, or which line to add to which file.
func Preflight(s System) (Mapping, error) {
	for _, t := range []string{"newuidmap", "newgidmap"} {
		if _, err := s.lookPath(t); err != nil {
			return Mapping{}, MissingToolError(t)
		}
	}
	if err := checkSysctls(s); err != nil {
		return Mapping{}, err
	}
	name := s.Name
	if name == "" {
		u, err := user.LookupId(strconv.Itoa(s.UID))
		if err != nil {
			return Mapping{}, fmt.Errorf("uid %d has no name in /etc/passwd, and the subordinate ranges are found by name: %w", s.UID, err)
		}
		name = u.Username
	}
	m := Mapping{UID: s.UID, GID: s.GID, UserName: name}
	var err error
	if m.SubUIDs, err = subRange(s.SubUID, name, s.UID); err != nil {
		return Mapping{}, err
	}
	if m.SubGIDs, err = subRange(s.SubGID, name, s.UID); err != nil {
		return Mapping{}, err
	}
	return m, nil
}

// MissingToolError says which package gives newuidmap and newgidmap.
func MissingToolError(tool string) error {
	return fmt.Errorf("rootless builds need %s, which is not on PATH: install the Debian package uidmap (apt-get install uidmap)", tool)
}

// DisabledError says which sysctls allow unprivileged user namespaces; err
// is what the kernel said, or nil.
func DisabledError(err error) error {
	msg := "this kernel does not let ordinary users create user namespaces, which rootless builds need: " +
		"set the sysctl user.max_user_namespaces above 0 (sysctl -w user.max_user_namespaces=15000) " +
		"and, on kernels that have it, kernel.unprivileged_userns_clone=1"
	if err != nil {
		return fmt.Errorf("%s: %w", msg, err)
	}
	return errors.New(msg)
}

// checkSysctls reads the sysctls that turn user namespaces off.
func checkSysctls(s System) error {
	read := func(name string) (int, bool) {
		data, err := os.ReadFile(filepath.Join(s.ProcSys, name))
		if err != nil {
			return 0, false
		}
		n, err := strconv.Atoi(strings.TrimSpace(string(data)))
		return n, err == nil
	}
	if n, ok := read("user/max_user_namespaces"); ok && n == 0 {
		return DisabledError(errors.New("user.max_user_namespaces is 0"))
	}
	// Debian's own switch; root may create user namespaces whatever it says.
	if n, ok := read("kernel/unprivileged_userns_clone"); ok && n == 0 && s.UID != 0 {
		return DisabledError(errors.New("kernel.unprivileged_userns_clone is 0"))
	}
	return nil
}

// subRange finds the first id of the user's range in file (/etc/subuid or
// /etc/subgid) that holds at least Size-1 ids. Lines name the user or its
// uid, as shadow's newuidmap accepts.
func subRange(file, name string, uid int) (int, error) {
	f, err := os.Open(file)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return 0, fmt.Errorf("reading %s: %w", file, err)
	}
	var short string
	const first = 100000 // shadow's first subordinate id
	highest := 0
	if f != nil {
		defer f.Close()
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			fields := strings.Split(strings.TrimSpace(sc.Text()), ":")
			if len(fields) != 3 {
				continue
			}
			start, err1 := strconv.Atoi(fields[1])
			count, err2 := strconv.Atoi(fields[2])
			if err1 != nil || err2 != nil || start < 0 || count < 0 {
				continue
			}
			highest = max(highest, start+count)
			if fields[0] != name && fields[0] != strconv.Itoa(uid) {
				continue
			}
			if count >= Size-1 {
				return start, nil
			}
			short = sc.Text()
		}
		if err := sc.Err(); err != nil {
			return 0, fmt.Errorf("reading %s: %w", file, err)
		}
	}
	start := first
	if highest > first {
		start = roundUp(highest, Size)
	}
	return 0, &NoRangeError{File: file, User: name, Start: start, Short: short}
}

func roundUp(n, m int) int { return (n + m - 1) / m * m }

// NoRangeError is a user without a large enough subordinate range.
type NoRangeError struct {
	File, User string
	Start      int    // a first id that overlaps no range in File
	Short      string // the user's line, when it is too small
}

// Line is the line to add to File.
func (e *NoRangeError) Line() string { return fmt.Sprintf("%s:%d:%d", e.User, e.Start, Size) }

func (e *NoRangeError) Error() string {
	why := fmt.Sprintf("%s has no subordinate range for user %s", e.File, e.User)
	if e.Short != "" {
		why = fmt.Sprintf("%s gives user %s fewer than %d ids (%q)", e.File, e.User, Size-1, e.Short)
	}
	return fmt.Sprintf("%s, which rootless builds map into their user namespace: as root, add the line %q to %s "+
		"(usermod --add-subuids and --add-subgids do it for both files)", why, e.Line(), e.File)
}
