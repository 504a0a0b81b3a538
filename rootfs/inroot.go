package rootfs

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"golang.org/x/sys/unix"
)

// The functions in this file read an unpacked image without ever leaving it:
// symlinks, ".." and absolute link targets are resolved relative to the
// image's root, as a chroot would, and a link that climbs above the root is
// an *ErrEscape. resolveIn does the resolution (and names the link at fault);
// the kernel then enforces it: the symlink-free result is opened relative to
// a descriptor of the root with openat2(RESOLVE_IN_ROOT|RESOLVE_NO_SYMLINKS),
// so a symlink swapped in after resolving fails the open instead of
// redirecting it to the host.

// inRootResolve is how every open below resolves its (already symlink-free)
// path: no symlink may be followed and nothing may leave the root.
const inRootResolve = unix.RESOLVE_IN_ROOT | unix.RESOLVE_NO_SYMLINKS | unix.RESOLVE_NO_MAGICLINKS

// ResolveInRoot returns rel (a path inside the image at root, with or without
// a leading slash) with every symlink resolved inside the image: a clean
// slash-separated path relative to root, "" for the root itself. The path need
// not exist. It only names the path: to read it, use OpenInRoot and the
// like, which have the kernel hold the resolution to the root.
func ResolveInRoot(root, rel string) (string, error) {
	return resolveRel(root, rel, true)
}

// OpenInRoot opens the regular file or directory at rel inside the image at
// root for reading, following symlinks inside the image. Devices, FIFOs and
// sockets are refused before they are opened: opening one on the host would
// reach the host's device (or block), not the image's file.
func OpenInRoot(root, rel string) (*os.File, error) {
	p, err := resolveRel(root, rel, true)
	if err != nil {
		return nil, err
	}
	// An O_PATH descriptor does not open the object itself, so a device
	// node is checked before anything touches it.
	pf, err := openPath(root, p, true)
	if err != nil {
		return nil, err
	}
	defer pf.Close()
	fi, err := pf.Stat()
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() && !fi.IsDir() {
		return nil, fmt.Errorf("%s is a %s, not a file or directory", displayName(rel), kind(fi.Mode()))
	}
	// Reopening through /proc/self/fd opens the very inode pf holds, with
	// no path lookup that could be raced.
	fd, err := unix.Open(fmt.Sprintf("/proc/self/fd/%d", pf.Fd()), unix.O_RDONLY|unix.O_NOCTTY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: displayName(rel), Err: err}
	}
	return os.NewFile(uintptr(fd), filepath.Join(root, p)), nil
}

// StatInRoot is os.Stat for rel inside the image at root: symlinks, the last
// one included, are followed inside the image.
func StatInRoot(root, rel string) (fs.FileInfo, error) {
	p, err := resolveRel(root, rel, true)
	if err != nil {
		return nil, err
	}
	return statPath(root, p, true)
}

// LstatInRoot is os.Lstat for rel inside the image at root: symlinks in the
// directories leading to it are followed inside the image; a symlink at rel
// itself is reported as one.
func LstatInRoot(root, rel string) (fs.FileInfo, error) {
	p, err := resolveRel(root, rel, false)
	if err != nil {
		return nil, err
	}
	return statPath(root, p, false)
}

// ReadDirInRoot is os.ReadDir for the directory rel inside the image at root:
// its entries sorted by name, each with its own (lstat) information read
// relative to the directory's descriptor, never through a host path.
func ReadDirInRoot(root, rel string) ([]fs.DirEntry, error) {
	d, err := OpenInRoot(root, rel)
	if err != nil {
		return nil, err
	}
	defer d.Close()
	names, err := d.Readdirnames(-1)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", displayName(rel), err)
	}
	slices.Sort(names)
	ents := make([]fs.DirEntry, 0, len(names))
	for _, n := range names {
		fi, err := fstatAt(int(d.Fd()), n)
		if errors.Is(err, fs.ErrNotExist) {
			continue // removed since the listing
		}
		if err != nil {
			return nil, fmt.Errorf("%s: %w", displayName(joinRel(rel, n)), err)
		}
		ents = append(ents, fs.FileInfoToDirEntry(fi))
	}
	return ents, nil
}

// resolveRel resolves rel inside root with resolveIn and returns the result
// relative to root.
func resolveRel(root, rel string, followLast bool) (string, error) {
	host, err := resolveIn(root, strings.TrimPrefix(filepath.ToSlash(rel), "/"), followLast)
	if err != nil {
		var esc *ErrEscape
		if errors.As(err, &esc) {
			return "", &ErrEscape{displayName(rel), esc.Why}
		}
		return "", err
	}
	p, err := filepath.Rel(root, host)
	if err != nil || p == ".." || strings.HasPrefix(p, "../") {
		return "", &ErrEscape{displayName(rel), "resolves outside the root"}
	}
	if p == "." {
		p = ""
	}
	return filepath.ToSlash(p), nil
}

// openPath opens the symlink-free path p under root as an O_PATH descriptor;
// with follow unset a symlink at p is opened itself rather than refused.
func openPath(root, p string, follow bool) (*os.File, error) {
	rfd, err := unix.Open(root, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: root, Err: err}
	}
	defer unix.Close(rfd)
	name := p
	if name == "" {
		name = "."
	}
	how := unix.OpenHow{Flags: unix.O_PATH | unix.O_CLOEXEC, Resolve: inRootResolve}
	if !follow {
		how.Flags |= unix.O_NOFOLLOW
	}
	fd, err := unix.Openat2(rfd, name, &how)
	if err != nil {
		if errors.Is(err, unix.ELOOP) || errors.Is(err, unix.EXDEV) {
			// The path held no symlink when it was resolved: one was
			// swapped in since.
			return nil, &ErrEscape{"/" + p, "changed into a symlink while being read"}
		}
		return nil, &os.PathError{Op: "open", Path: "/" + p, Err: err}
	}
	return os.NewFile(uintptr(fd), filepath.Join(root, p)), nil
}

func statPath(root, p string, follow bool) (fs.FileInfo, error) {
	f, err := openPath(root, p, follow)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return f.Stat()
}

// fstatAt lstats name in the directory dirfd, through an O_PATH descriptor
// so that os builds the FileInfo.
func fstatAt(dirfd int, name string) (fs.FileInfo, error) {
	how := unix.OpenHow{Flags: unix.O_PATH | unix.O_NOFOLLOW | unix.O_CLOEXEC, Resolve: unix.RESOLVE_BENEATH | unix.RESOLVE_NO_SYMLINKS | unix.RESOLVE_NO_MAGICLINKS}
	fd, err := unix.Openat2(dirfd, name, &how)
	if err != nil {
		return nil, &os.PathError{Op: "lstat", Path: name, Err: err}
	}
	f := os.NewFile(uintptr(fd), name)
	defer f.Close()
	return f.Stat()
}

func displayName(rel string) string { return "/" + strings.TrimPrefix(filepath.ToSlash(rel), "/") }

func joinRel(dir, name string) string { return strings.TrimSuffix(dir, "/") + "/" + name }

func kind(m fs.FileMode) string {
	switch {
	case m&fs.ModeSymlink != 0:
		return "symlink"
	case m&fs.ModeCharDevice != 0:
		return "character device"
	case m&fs.ModeDevice != 0:
		return "block device"
	case m&fs.ModeNamedPipe != 0:
		return "FIFO"
	case m&fs.ModeSocket != 0:
		return "socket"
	}
	return "special file"
}
