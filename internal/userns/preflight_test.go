package userns

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// fakeSystem is a machine in a temp dir: subuid and subgid files, a
// /proc/sys, and a PATH with or without newuidmap and newgidmap.
func fakeSystem(t *testing.T, subuid, subgid string, tools bool) System {
	t.Helper()
	dir := t.TempDir()
	s := System{SubUID: filepath.Join(dir, "subuid"), SubGID: filepath.Join(dir, "subgid"), ProcSys: filepath.Join(dir, "sys"),
		Path: filepath.Join(dir, "bin"), UID: 1000, GID: 1000, Name: "alice"}
	os.WriteFile(s.SubUID, []byte(subuid), 0o644)
	os.WriteFile(s.SubGID, []byte(subgid), 0o644)
	os.MkdirAll(filepath.Join(s.ProcSys, "user"), 0o755)
	os.MkdirAll(filepath.Join(s.ProcSys, "kernel"), 0o755)
	os.WriteFile(filepath.Join(s.ProcSys, "user/max_user_namespaces"), []byte("15000\n"), 0o644)
	os.MkdirAll(s.Path, 0o755)
	if tools {
		for _, n := range []string{"newuidmap", "newgidmap"} {
			os.WriteFile(filepath.Join(s.Path, n), []byte("#!/bin/sh\n"), 0o755)
		}
	}
	return s
}

func TestPreflightMapping(t *testing.T) {
	s := fakeSystem(t, "bob:100000:65536\nalice:165536:65536\n", "1000:300000:70000\n", true)
	m, err := Preflight(s)
	if err != nil {
		t.Fatal(err)
	}
	if m.uidArgs() != "0 1000 1 1 165536 65535" || m.gidArgs() != "0 1000 1 1 300000 65535" {
		t.Errorf("maps %q %q", m.uidArgs(), m.gidArgs())
	}
}

func TestPreflightNoRange(t *testing.T) {
	s := fakeSystem(t, "bob:100000:65536\n", "alice:100000:65536\n", true)
	_, err := Preflight(s)
	var nr *NoRangeError
	if !errors.As(err, &nr) || nr.File != s.SubUID {
		t.Fatalf("got %v", err)
	}
	// The line suggested overlaps no range already given.
	want := `add the line "alice:196608:65536" to ` + s.SubUID
	if !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), "has no subordinate range for user alice") {
		t.Errorf("error %q does not say %q", err, want)
	}

	s = fakeSystem(t, "alice:100000:65536\n", "", true)
	if _, err := Preflight(s); err == nil || !strings.Contains(err.Error(), `add the line "alice:100000:65536" to `+s.SubGID) {
		t.Errorf("no subgid line: %v", err)
	}

	s = fakeSystem(t, "alice:100000:1000\n", "alice:100000:65536\n", true)
	if _, err := Preflight(s); err == nil || !strings.Contains(err.Error(), "gives user alice fewer than 65535 ids") {
		t.Errorf("short range: %v", err)
	}
}

func TestPreflightMissingTools(t *testing.T) {
	s := fakeSystem(t, "alice:100000:65536\n", "alice:100000:65536\n", false)
	_, err := Preflight(s)
	if err == nil || !strings.Contains(err.Error(), "newuidmap") || !strings.Contains(err.Error(), "Debian package uidmap") {
		t.Errorf("got %v", err)
	}
}

// TestPreflightUserNSDisabled reads the sysctls from a fake /proc/sys:
// turning them off on the machine would break everyone else's namespaces.
// Enter also returns DisabledError when the kernel refuses the clone.
func TestPreflightUserNSDisabled(t *testing.T) {
	s := fakeSystem(t, "alice:100000:65536\n", "alice:100000:65536\n", true)
	os.WriteFile(filepath.Join(s.ProcSys, "user/max_user_namespaces"), []byte("0\n"), 0o644)
	if _, err := Preflight(s); err == nil || !strings.Contains(err.Error(), "user.max_user_namespaces is 0") || !strings.Contains(err.Error(), "sysctl -w user.max_user_namespaces=15000") {
		t.Errorf("max_user_namespaces=0: %v", err)
	}
	os.WriteFile(filepath.Join(s.ProcSys, "user/max_user_namespaces"), []byte("15000\n"), 0o644)
	os.WriteFile(filepath.Join(s.ProcSys, "kernel/unprivileged_userns_clone"), []byte("0\n"), 0o644)
	if _, err := Preflight(s); err == nil || !strings.Contains(err.Error(), "kernel.unprivileged_userns_clone") {
		t.Errorf("unprivileged_userns_clone=0: %v", err)
	}
	s.UID = 0 // root is not held back by Debian's switch
	s.Name = "root"
	os.WriteFile(s.SubUID, []byte("root:100000:65536\n"), 0o644)
	os.WriteFile(s.SubGID, []byte("root:100000:65536\n"), 0o644)
	if _, err := Preflight(s); err != nil {
		t.Errorf("root: %v", err)
	}
}
