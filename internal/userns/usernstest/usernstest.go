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

func hasLine(data, user string) bool {
	for _, l := range strings.Split(data, "\n") {
		if strings.HasPrefix(l, user+":") {
			return true
		}
	}
	return false
}
