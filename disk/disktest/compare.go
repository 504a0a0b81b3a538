// Package disktest holds checks that tests of several packages share: the
// comparison of a tree with what a disk holds.
package disktest

import (
	"bytes"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

// CompareTrees checks that every entry of want is in got with the same type,
// content and symlink target, and, when full, the same mode, owner, device
// numbers, hardlinks and xattrs. Paths under a prefix in skip are left out.
func CompareTrees(t testing.TB, want, got string, full bool, skip ...string) {
	t.Helper()
	links := map[uint64]uint64{} // want inode -> got inode
	n := 0
	err := filepath.Walk(want, func(p string, wi fs.FileInfo, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(want, p)
		if rel == "." {
			return nil
		}
		for _, s := range skip {
			if strings.HasPrefix(rel, s) {
				return nil
			}
		}
		n++
		gp := filepath.Join(got, rel)
		gi, err := os.Lstat(gp)
		if err != nil {
			t.Errorf("%s is missing on the disk", rel)
			return nil
		}
		if wi.Mode().Type() != gi.Mode().Type() {
			t.Errorf("%s: type %v, want %v", rel, gi.Mode().Type(), wi.Mode().Type())
			return nil
		}
		ws, gs := wi.Sys().(*syscall.Stat_t), gi.Sys().(*syscall.Stat_t)
		if full {
			if ws.Mode != gs.Mode || ws.Uid != gs.Uid || ws.Gid != gs.Gid || ws.Rdev != gs.Rdev {
				t.Errorf("%s: mode %o %d:%d rdev %d, want %o %d:%d rdev %d", rel, gs.Mode, gs.Uid, gs.Gid, gs.Rdev, ws.Mode, ws.Uid, ws.Gid, ws.Rdev)
			}
			if wi.Mode().IsRegular() && ws.Nlink > 1 {
				if g, ok := links[ws.Ino]; ok && g != gs.Ino {
					t.Errorf("%s: hardlink broken", rel)
				}
				links[ws.Ino] = gs.Ino
			}
			if a, b := xattrs(p), xattrs(gp); a != b {
				t.Errorf("%s: xattrs %q, want %q", rel, b, a)
			}
		}
		switch {
		case wi.Mode()&fs.ModeSymlink != 0:
			a, _ := os.Readlink(p)
			b, _ := os.Readlink(gp)
			if a != b {
				t.Errorf("%s: link %q, want %q", rel, b, a)
			}
		case wi.Mode().IsRegular():
			a, _ := os.ReadFile(p)
			b, _ := os.ReadFile(gp)
			if !bytes.Equal(a, b) {
				t.Errorf("%s: content differs", rel)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if n == 0 {
		t.Errorf("compared nothing: %s is empty", want)
	}
}

// xattrs lists p's extended attributes and values, sorted, as one string.
func xattrs(p string) string {
	buf := make([]byte, 64<<10)
	n, err := unix.Llistxattr(p, buf)
	if err != nil || n == 0 {
		return ""
	}
	names := strings.Split(strings.TrimRight(string(buf[:n]), "\x00"), "\x00")
	sort.Strings(names)
	var out []string
	for _, name := range names {
		v := make([]byte, 64<<10)
		m, err := unix.Lgetxattr(p, name, v)
		if err != nil {
			continue
		}
		out = append(out, name+"="+string(v[:m]))
	}
	return strings.Join(out, ";")
}
