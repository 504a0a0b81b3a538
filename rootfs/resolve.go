// Package rootfs turns layers into trees and trees into layers: it applies OCI
// layer tars to a directory (whiteouts, opaque dirs, hardlinks, devices,
// xattrs) without ever writing outside it, builds the same final tree in
// memory from the layers' headers alone (Tree: read it, or stream it as
// tar entries, with no privilege), writes deterministic tars of a
// directory, and runs build steps in a namespaced overlayfs sandbox.
package rootfs

import (
	"fmt"
	"os"
	"path"
	"path/filepath"
	"strings"
)

// maxSymlinks bounds symlink expansion, as the kernel's ELOOP does.
const maxSymlinks = 40

// ErrEscape is returned for a path that would resolve outside the root.
type ErrEscape struct {
	Name, Why string
}

func (e *ErrEscape) Error() string { return fmt.Sprintf("%s: %s", e.Name, e.Why) }

// cleanName checks a tar entry name and returns it relative to the root,
// without a trailing slash. Absolute names and ".." components are refused
// outright: no honest layer needs them.
func cleanName(name string) (string, error) {
	if path.IsAbs(name) {
		return "", &ErrEscape{name, "absolute entry name refused"}
	}
	for _, p := range strings.Split(name, "/") {
		if p == ".." {
			return "", &ErrEscape{name, `entry name with ".." refused`}
		}
	}
	c := path.Clean(name)
	if c == "." {
		return "", nil
	}
	return c, nil
}

// checkVictim refuses a whiteout whose victim is not one name strictly below
// its directory: ".wh." and ".wh.." would delete the directory itself (at the
// top, the extraction root) and ".wh..." its parent.
func checkVictim(name, victim string) error {
	if victim == "" || victim == "." || victim == ".." || strings.Contains(victim, "/") {
		return &ErrEscape{name, "whiteout of no entry strictly below its directory refused"}
	}
	return nil
}

// resolveIn resolves rel inside root as a chroot would, following symlinks in
// every component but the last (and the last too when followLast is set).
// Absolute symlink targets are taken relative to root; a symlink that climbs
// above root is refused, so the returned host path is always under root.
func resolveIn(root, rel string, followLast bool) (string, error) {
	done, err := resolveParts(rel, followLast, func(parts []string) (string, bool, error) {
		host := filepath.Join(root, filepath.Join(parts...))
		fi, err := os.Lstat(host)
		if err != nil || fi.Mode()&os.ModeSymlink == 0 {
			return "", false, nil
		}
		target, err := os.Readlink(host)
		return target, true, err
	})
	if err != nil {
		return "", err
	}
	return filepath.Join(root, filepath.Join(done...)), nil
}

// resolveParts is the walk of resolveIn over any tree: readlink says whether
// the path parts (symlink-free but for the last) name a symlink, and its
// target. A path that does not exist is not a symlink. Sharing the walk is
// what makes a Tree resolve every name exactly as Apply does on the host.
func resolveParts(rel string, followLast bool, readlink func(parts []string) (string, bool, error)) ([]string, error) {
	var done []string
	todo := strings.Split(rel, "/")
	links := 0
	for len(todo) > 0 {
		p := todo[0]
		todo = todo[1:]
		switch p {
		case "", ".":
			continue
		case "..":
			if len(done) == 0 {
				return nil, &ErrEscape{rel, "path climbs above the root"}
			}
			done = done[:len(done)-1]
			continue
		}
		if len(todo) == 0 && !followLast {
			done = append(done, p)
			break
		}
		target, isLink, err := readlink(append(done[:len(done):len(done)], p))
		if err != nil {
			return nil, err
		}
		if !isLink {
			done = append(done, p)
			continue
		}
		links++
		if links > maxSymlinks {
			return nil, &ErrEscape{rel, "too many levels of symlinks"}
		}
		if path.IsAbs(target) {
			done = nil
		}
		// Expand the link in place; its own ".." may not climb above root.
		parts := strings.Split(target, "/")
		depth := len(done)
		for _, q := range parts {
			switch q {
			case "", ".":
			case "..":
				depth--
				if depth < 0 {
					return nil, &ErrEscape{rel, fmt.Sprintf("symlink %s -> %s points outside the root", filepath.Join(filepath.Join(done...), p), target)}
				}
			default:
				depth++
			}
		}
		todo = append(parts, todo...)
	}
	return done, nil
}
