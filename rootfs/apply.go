package rootfs

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

const (
	whiteoutPrefix = ".wh."
	opaqueMarker   = ".wh..wh..opq"
	xattrPrefix    = "SCHILY.xattr."
	overlayOpaque  = "trusted.overlay.opaque"
)

// ApplyOptions says how a layer is applied.
type ApplyOptions struct {
	// Layer names the layer in errors (a step name or a digest).
	Layer string
	// Overlay writes whiteouts in overlayfs form (0/0 character devices and
	// the trusted.overlay.opaque xattr) instead of deleting, so the directory
	// can serve as an overlayfs lower dir.
	Overlay bool
}

// LayerError names the layer and entry at fault.
type LayerError struct {
	Layer, Entry string
	Err          error
}

func (e *LayerError) Error() string {
	return fmt.Sprintf("layer %s: entry %q: %v", e.Layer, e.Entry, e.Err)
}

func (e *LayerError) Unwrap() error { return e.Err }

// Apply extracts an uncompressed OCI layer tar onto root with OCI semantics.
// It refuses any entry that would write outside root.
func Apply(ctx context.Context, root string, r io.Reader, opts ApplyOptions) error {
	a := &applier{root: root, opts: opts, created: map[string]bool{}}
	tr := tar.NewReader(r)
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return &LayerError{opts.Layer, "", fmt.Errorf("reading tar: %w", err)}
		}
		if err := a.entry(hdr, tr); err != nil {
			return &LayerError{opts.Layer, hdr.Name, err}
		}
	}
	// Directory times last: writing their children changed them.
	sort.Slice(a.dirTimes, func(i, j int) bool { return a.dirTimes[i].path > a.dirTimes[j].path })
	for _, d := range a.dirTimes {
		if err := setTimes(d.path, d.mtime); err != nil {
			return &LayerError{opts.Layer, d.path, err}
		}
	}
	return nil
}

type applier struct {
	root     string
	opts     ApplyOptions
	created  map[string]bool // entries this layer wrote, for opaque dirs
	dirTimes []dirTime
}

type dirTime struct {
	path  string
	mtime time.Time
}

func (a *applier) entry(hdr *tar.Header, r io.Reader) error {
	name, err := cleanName(hdr.Name)
	if err != nil {
		return err
	}
	if name == "" { // the root itself: keep it
		return nil
	}
	dir, base := path.Split(name)
	parent, err := resolveIn(a.root, dir, true)
	if err != nil {
		return err
	}
	if err := a.mkdirParents(parent); err != nil {
		return err
	}
	target := filepath.Join(parent, base)

	switch {
	case base == opaqueMarker:
		if a.opts.Overlay {
			return unix.Lsetxattr(parent, overlayOpaque, []byte("y"), 0)
		}
		return a.clearLower(strings.TrimSuffix(dir, "/"), parent)
	case strings.HasPrefix(base, whiteoutPrefix):
		victim := filepath.Join(parent, strings.TrimPrefix(base, whiteoutPrefix))
		if err := os.RemoveAll(victim); err != nil {
			return err
		}
		if a.opts.Overlay {
			return unix.Mknod(victim, unix.S_IFCHR, 0)
		}
		return nil
	}
	a.created[name] = true

	if hdr.Typeflag == tar.TypeDir {
		if fi, err := os.Lstat(target); err == nil && !fi.IsDir() {
			if err := os.Remove(target); err != nil {
				return err
			}
		}
		if err := os.Mkdir(target, 0o700); err != nil && !errors.Is(err, os.ErrExist) {
			return err
		}
	} else if err := os.RemoveAll(target); err != nil {
		return err
	}

	switch hdr.Typeflag {
	case tar.TypeDir:
	case tar.TypeReg, tar.TypeRegA:
		f, err := os.OpenFile(target, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if err != nil {
			return err
		}
		_, err = io.Copy(f, r)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return err
		}
	case tar.TypeSymlink:
		if err := os.Symlink(hdr.Linkname, target); err != nil {
			return err
		}
	case tar.TypeLink:
		ln, err := cleanName(hdr.Linkname)
		if err != nil || ln == "" {
			return &ErrEscape{hdr.Linkname, "hardlink target outside the layer root refused"}
		}
		ldir, lbase := path.Split(ln)
		lparent, err := resolveIn(a.root, ldir, true)
		if err != nil {
			return fmt.Errorf("hardlink target: %w", err)
		}
		if err := os.Link(filepath.Join(lparent, lbase), target); err != nil {
			return err
		}
		return nil // a hardlink shares its target's metadata
	case tar.TypeChar, tar.TypeBlock, tar.TypeFifo:
		mode := uint32(unix.S_IFIFO)
		if hdr.Typeflag == tar.TypeChar {
			mode = unix.S_IFCHR
		} else if hdr.Typeflag == tar.TypeBlock {
			mode = unix.S_IFBLK
		}
		dev := unix.Mkdev(uint32(hdr.Devmajor), uint32(hdr.Devminor))
		if err := unix.Mknod(target, mode|uint32(hdr.Mode&0o7777), int(dev)); err != nil {
			return fmt.Errorf("creating device or fifo: %w", err)
		}
	default:
		return fmt.Errorf("unsupported tar entry type %q", hdr.Typeflag)
	}

	if err := os.Lchown(target, hdr.Uid, hdr.Gid); err != nil {
		return err
	}
	// In name order: the filesystem lists xattrs in the order they were
	// set, and mkfs.ext4 -d stores them in the order listed, so map order
	// here would make the disk's bytes differ from build to build.
	keys := make([]string, 0, len(hdr.PAXRecords))
	for k := range hdr.PAXRecords {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		v := hdr.PAXRecords[k]
		name, ok := strings.CutPrefix(k, xattrPrefix)
		if !ok {
			continue
		}
		if strings.HasPrefix(name, "trusted.overlay.") || strings.HasPrefix(name, "user.overlay.") {
			return fmt.Errorf("xattr %s is reserved for overlayfs", name)
		}
		if err := unix.Lsetxattr(target, name, []byte(v), 0); err != nil {
			return fmt.Errorf("setting xattr %s: %w", name, err)
		}
	}
	if hdr.Typeflag != tar.TypeSymlink {
		// After chown, which clears setuid bits.
		if err := os.Chmod(target, tarMode(hdr)); err != nil {
			return err
		}
	}
	if hdr.Typeflag == tar.TypeDir {
		a.dirTimes = append(a.dirTimes, dirTime{target, hdr.ModTime})
		return nil
	}
	return setTimes(target, hdr.ModTime)
}

// mkdirParents creates missing parent directories, root-owned 0755, as
// container runtimes do for layers that omit them.
func (a *applier) mkdirParents(dir string) error {
	if dir == a.root {
		return nil
	}
	fi, err := os.Lstat(dir)
	if err == nil {
		if !fi.IsDir() {
			return fmt.Errorf("parent %s is not a directory", strings.TrimPrefix(dir, a.root))
		}
		return nil
	}
	if err := a.mkdirParents(filepath.Dir(dir)); err != nil {
		return err
	}
	return os.Mkdir(dir, 0o755)
}

// clearLower empties dir of everything that this layer did not write itself.
func (a *applier) clearLower(rel, dir string) error {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	for _, e := range ents {
		if a.created[path.Join(rel, e.Name())] {
			continue
		}
		if err := os.RemoveAll(filepath.Join(dir, e.Name())); err != nil {
			return err
		}
	}
	return nil
}

func tarMode(hdr *tar.Header) os.FileMode {
	m := os.FileMode(hdr.Mode & 0o777)
	if hdr.Mode&0o4000 != 0 {
		m |= os.ModeSetuid
	}
	if hdr.Mode&0o2000 != 0 {
		m |= os.ModeSetgid
	}
	if hdr.Mode&0o1000 != 0 {
		m |= os.ModeSticky
	}
	return m
}

func setTimes(p string, mtime time.Time) error {
	ts := unix.NsecToTimespec(mtime.UnixNano())
	return unix.UtimesNanoAt(unix.AT_FDCWD, p, []unix.Timespec{ts, ts}, unix.AT_SYMLINK_NOFOLLOW)
}
