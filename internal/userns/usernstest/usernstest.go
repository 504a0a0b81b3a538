// Package usernstest gives tests a subordinate id range for a user.
package usernstest

import (
	"fmt"
	"os"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// lockFile serializes the tests of every package that edit /etc/subuid and
// /etc/subgid: go test runs packages in parallel.
const lockFile = "/run/layerimg-subid-test.lock"

// Range appends "USER:START:65536" to /etc/subuid and /etc/subgid for each
// user (unless the user has a line already) and restores both files when
// the test ends. It holds a lock meanwhile, so tests in other packages
// wait. It needs root.
func Range(t testing.TB, start int, users ...string) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root to edit /etc/subuid and /etc/subgid; CI runs as root")
	}
	Lock(t)
	for _, file := range []string{"/etc/subuid", "/etc/subgid"} {
		old, err := os.ReadFile(file)
		if err != nil && !os.IsNotExist(err) {
			t.Fatal(err)
		}
		existed := err == nil
		t.Cleanup(func() {
			if existed {
				os.WriteFile(file, old, 0o644)
			} else {
				os.Remove(file)
			}
		})
		add := string(old)
		if add != "" && !strings.HasSuffix(add, "\n") {
			add += "\n"
		}
		for i, u := range users {
			if !hasLine(string(old), u) {
				add += fmt.Sprintf("%s:%d:65536\n", u, start+i*65536)
			}
		}
		if err := os.WriteFile(file, []byte(add), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// Lock takes the lock that Range takes, until the test ends: a test that
// needs a user to have no range holds it.
func Lock(t testing.TB) {
	t.Helper()
	f, err := os.OpenFile(lockFile, os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
}

// NoRange takes the lock and removes the users' lines from /etc/subuid and
// /etc/subgid until the test ends, for a test that needs them to have none
// (a machine may have one already). It needs root.
func NoRange(t testing.TB, users ...string) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root to edit /etc/subuid and /etc/subgid; CI runs as root")
	}
	Lock(t)
	for _, file := range []string{"/etc/subuid", "/etc/subgid"} {
		old, err := os.ReadFile(file)
		if os.IsNotExist(err) {
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { os.WriteFile(file, old, 0o644) })
		var kept []string
		for _, l := range strings.SplitAfter(string(old), "\n") {
			drop := false
			for _, u := range users {
				drop = drop || strings.HasPrefix(l, u+":")
			}
			if !drop {
				kept = append(kept, l)
			}
		}
		if err := os.WriteFile(file, []byte(strings.Join(kept, "")), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func hasLine(data, user string) bool {
	for _, l := range strings.Split(data, "\n") {
		if strings.HasPrefix(l, user+":") {
			return true
		}
	}
	return false
}
