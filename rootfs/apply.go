package rootfs

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path"
	"path/filepath"
	"slices"
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
	// userOpaque is what an overlayfs mounted with userxattr (in a user
	// namespace) reads instead.
	userOpaque = "user.overlay.opaque"
)

// ApplyOptions says how a layer is applied.
type ApplyOptions struct {
	// Layer names the layer in errors (a step name or a digest).
	Layer string
	// Overlay writes whiteouts in overlayfs form (0/0 character devices and
	// the trusted.overlay.opaque xattr) instead of deleting, so the directory
	// can serve as an overlayfs lower dir.
	Overlay bool
	// UserNS says Apply runs as root of a user namespace, for a rootless
	// build's lower dirs: opaque directories get user.overlay.opaque (for
	// an overlayfs mounted with userxattr), and what the namespace may not
	// create is left out of the tree, as rootless Podman leaves it: device
	// nodes (the sandbox's own /dev hides the image's anyway) and trusted.*
	// xattrs. The layer itself is untouched; only the tree differs.
	UserNS bool
}

// LayerError names the layer and entry at fault. Entry is empty when the
// fault is in the layer's stream rather than in one entry.
type LayerError struct {
	Layer, Entry string
	Err          error
}

func (e *LayerError) Error() string {
	if e.Entry == "" {
		return fmt.Sprintf("layer %s: %v", e.Layer, e.Err)
	}
	if esc, ok := e.Err.(*ErrEscape); ok && esc.Name == e.Entry {
		return fmt.Sprintf("layer %s: entry %q: %s", e.Layer, e.Entry, esc.Why) // the name once
	}
	return fmt.Sprintf("layer %s: entry %q: %v", e.Layer, e.Entry, e.Err)
}

func (e *LayerError) Unwrap() error { return e.Err }

// Apply extracts an uncompressed OCI layer tar onto root with OCI semantics.
// Every entry, whiteout and opaque marker acts strictly below root; an entry
// that would reach root itself or anything outside it is refused.
func Apply(ctx context.Context, root string, r io.Reader, opts ApplyOptions) error {
	a := &applier{root: root, opts: opts, created: map[string]bool{}, dirTimes: map[string]time.Time{}}
	err := eachEntry(ctx, r, opts.Layer, func(_ int, hdr *tar.Header, tr *tar.Reader) error {
		if err := a.entry(hdr, tr); err != nil {
			return &LayerError{opts.Layer, hdr.Name, a.relative(err)}
		}
		return nil
	})
	if err != nil {
		return err
	}
	return a.setDirTimes()
}

// setDirTimes sets directory times last: writing their children changed
// them. A directory replaced later in the layer, or now reached through a
// symlink, is skipped, so that no time is set through a link.
func (a *applier) setDirTimes() error {
	rels := make([]string, 0, len(a.dirTimes))
	for rel := range a.dirTimes {
		rels = append(rels, rel)
	}
	sort.Sort(sort.Reverse(sort.StringSlice(rels)))
	for _, rel := range rels {
		host := filepath.Join(a.root, rel)
		if p, err := resolveIn(a.root, rel, false); err != nil || p != host {
			continue
		}
		if fi, err := os.Lstat(host); err != nil || !fi.IsDir() {
			continue
		}
		if err := setTimes(host, a.dirTimes[rel]); err != nil {
			return &LayerError{a.opts.Layer, rel, err}
		}
	}
	return nil
}

type applier struct {
	root     string
	opts     ApplyOptions
	created  map[string]bool      // host paths this layer wrote, for opaque dirs
	dirTimes map[string]time.Time // directory mtimes by path under root, the last entry's
}

func (a *applier) entry(hdr *tar.Header, r io.Reader) error {
	if hdr.Typeflag == tar.TypeXGlobalHeader {
		return nil // PAX defaults for later entries: ignored, as containerd does
	}
	name, err := cleanName(hdr.Name)
	if err != nil {
		return err
	}
	if name == "" { // the root itself: keep it
		return nil
	}
	// Check everything before changing anything: a refused entry leaves the
	// tree as the previous entry left it.
	if err := checkHeader(hdr); err != nil {
		return err
	}
	dir, base := path.Split(name)
	victim, whiteout := strings.CutPrefix(base, whiteoutPrefix)
	if whiteout && base != opaqueMarker {
		if err := checkVictim(hdr.Name, victim); err != nil {
			return err
		}
	}
	parent, err := resolveIn(a.root, dir, true)
	if err != nil {
		return err
	}
	if err := a.mkdirParents(parent); err != nil {
		return err
	}

	switch {
	case base == opaqueMarker:
		if a.opts.Overlay {
			name := overlayOpaque
			if a.opts.UserNS {
				name = userOpaque
			}
			return unix.Lsetxattr(parent, name, []byte("y"), 0)
		}
		return a.clearLower(parent)
	case whiteout:
		target := filepath.Join(parent, victim)
		if err := os.RemoveAll(target); err != nil {
			return err
		}
		if a.opts.Overlay {
			return unix.Mknod(target, unix.S_IFCHR, 0)
		}
		return nil
	}
	target := filepath.Join(parent, base)
	a.created[target] = true

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
		// link(2) does not follow a symlink named last: linking to a
		// symlink links the symlink itself, which is inside the root.
		if err := os.Link(filepath.Join(lparent, lbase), target); err != nil {
			return fmt.Errorf("hardlink to %q: %w", hdr.Linkname, unwrapPath(err))
		}
		return nil // a hardlink shares its target's metadata
	case tar.TypeChar, tar.TypeBlock, tar.TypeFifo:
		if a.opts.UserNS && hdr.Typeflag != tar.TypeFifo {
			delete(a.created, target)
			return nil
		}
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
	}

	if err := os.Lchown(target, hdr.Uid, hdr.Gid); err != nil {
		if a.opts.UserNS && errors.Is(err, unix.EINVAL) {
			return fmt.Errorf("owner %d:%d is outside the ids a rootless build maps (0..%d); build this image as root", hdr.Uid, hdr.Gid, maxUserNSID)
		}
		return err
	}
	// In name order: the filesystem lists xattrs in the order they were
	// set, and a tree should not depend on Go's map order.
	for _, x := range xattrs(hdr) {
		if a.opts.UserNS && strings.HasPrefix(x, "trusted.") {
			continue
		}
		if err := unix.Lsetxattr(target, x, []byte(hdr.PAXRecords[xattrPrefix+x]), 0); err != nil {
			return fmt.Errorf("setting xattr %s: %w", x, err)
		}
	}
	if hdr.Typeflag != tar.TypeSymlink {
		// After chown, which clears setuid bits. target was created above
		// and is no symlink, so chmod cannot follow one.
		if err := os.Chmod(target, tarMode(hdr)); err != nil {
			return err
		}
	}
	if hdr.Typeflag == tar.TypeDir {
		// By the path found, not the name: a symlinked parent differs.
		rel, err := filepath.Rel(a.root, target)
		if err != nil {
			return err
		}
		a.dirTimes[rel] = hdr.ModTime
		return nil
	}
	return setTimes(target, hdr.ModTime)
}

// maxUserNSID is the largest id a rootless build's user namespace maps.
const maxUserNSID = 65535

// maxID is the largest uid or gid a file can have: (uid_t)-1 means "leave
// unchanged" to chown(2), and larger values do not fit.
const maxID = 1<<32 - 2

// CheckOwner refuses a uid or gid that no file can have. Without it,
// 4294967295 would leave the owner unchanged (root) and larger ids would be
// cut to 32 bits.
func CheckOwner(uid, gid int) error {
	if uid < 0 || uid > maxID {
		return fmt.Errorf("uid %d is outside 0..%d", uid, maxID)
	}
	if gid < 0 || gid > maxID {
		return fmt.Errorf("gid %d is outside 0..%d", gid, maxID)
	}
	return nil
}

// xattrNamespaces are those Linux knows; a name outside them is no xattr
// that a root filesystem can carry.
var xattrNamespaces = []string{"security.", "system.", "trusted.", "user."}

// checkHeader refuses what Apply cannot store faithfully, before it
// changes anything.
func checkHeader(hdr *tar.Header) error {
	switch hdr.Typeflag {
	case tar.TypeDir, tar.TypeReg, tar.TypeRegA, tar.TypeSymlink, tar.TypeLink, tar.TypeFifo:
	case tar.TypeChar, tar.TypeBlock:
		if hdr.Devmajor < 0 || hdr.Devmajor > math.MaxUint32 || hdr.Devminor < 0 || hdr.Devminor > math.MaxUint32 {
			return fmt.Errorf("device number %d,%d does not fit", hdr.Devmajor, hdr.Devminor)
		}
	default:
		return fmt.Errorf("unsupported tar entry type %q", hdr.Typeflag)
	}
	if err := CheckOwner(hdr.Uid, hdr.Gid); err != nil {
		return err
	}
	for _, x := range xattrs(hdr) {
		if strings.HasPrefix(x, "trusted.overlay.") || strings.HasPrefix(x, "user.overlay.") {
			return fmt.Errorf("xattr %s is reserved for overlayfs", x)
		}
		if !slices.ContainsFunc(xattrNamespaces, func(ns string) bool { return strings.HasPrefix(x, ns) && len(x) > len(ns) }) {
			return fmt.Errorf("xattr %q is in no namespace that Linux knows (%s)", x, strings.Join(xattrNamespaces, " "))
		}
	}
	return nil
}

// xattrs lists the header's xattr names, sorted.
func xattrs(hdr *tar.Header) []string {
	var names []string
	for k := range hdr.PAXRecords {
		if name, ok := strings.CutPrefix(k, xattrPrefix); ok {
			names = append(names, name)
		}
	}
	sort.Strings(names)
	return names
}

// relative rewrites the host path in a *PathError as a path in the layer:
// the user knows the layer, not the scratch or cache directory it is
// extracted into.
func (a *applier) relative(err error) error {
	if pe, ok := err.(*os.PathError); ok {
		if rel, rerr := filepath.Rel(a.root, pe.Path); rerr == nil && !strings.HasPrefix(rel, "..") {
			return &os.PathError{Op: pe.Op, Path: "/" + strings.TrimPrefix(rel, "."), Err: pe.Err}
		}
	}
	return err
}

// unwrapPath drops the host paths from a *PathError: the entry is already
// named, and a path in the cache means nothing to the user.
func unwrapPath(err error) error {
	var pe *os.PathError
	var le *os.LinkError
	switch {
	case errors.As(err, &le):
		return le.Err
	case errors.As(err, &pe):
		return pe.Err
	}
	return err
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
			return fmt.Errorf("parent /%s is not a directory", strings.TrimPrefix(strings.TrimPrefix(dir, a.root), "/"))
		}
		return nil
	}
	if err := a.mkdirParents(filepath.Dir(dir)); err != nil {
		return err
	}
	return os.Mkdir(dir, 0o755)
}

// clearLower empties dir of everything that this layer did not write itself.
func (a *applier) clearLower(dir string) error {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	for _, e := range ents {
		p := filepath.Join(dir, e.Name())
		if a.created[p] {
			continue
		}
		if err := os.RemoveAll(p); err != nil {
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

// setTimes sets atime and mtime without following a symlink. The timespec is
// built from seconds and nanoseconds: UnixNano overflows outside 1678..2262.
func setTimes(p string, mtime time.Time) error {
	ts := unix.Timespec{Sec: mtime.Unix(), Nsec: int64(mtime.Nanosecond())}
	return unix.UtimesNanoAt(unix.AT_FDCWD, p, []unix.Timespec{ts, ts}, unix.AT_SYMLINK_NOFOLLOW)
}

// eachEntry calls fn for each entry of the layer tar in r (n counts them
// from 0), then reads r to its end: a reader that checks a digest can only
// tell at EOF whether what was read is what the manifest promised. A
// broken tar is a *LayerError naming the layer and the last entry read.
func eachEntry(ctx context.Context, r io.Reader, layer string, fn func(n int, hdr *tar.Header, tr *tar.Reader) error) error {
	tr := tar.NewReader(r)
	prev := ""
	for n := 0; ; n++ {
		if err := ctx.Err(); err != nil {
			return err
		}
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			if prev == "" {
				return &LayerError{Layer: layer, Err: fmt.Errorf("reading the tar: %w", err)}
			}
			return &LayerError{Layer: layer, Err: fmt.Errorf("reading the tar after entry %q: %w", prev, err)}
		}
		if err := fn(n, hdr, tr); err != nil {
			return err
		}
		prev = hdr.Name
	}
	if _, err := io.Copy(io.Discard, r); err != nil {
		return &LayerError{Layer: layer, Err: fmt.Errorf("reading past the tar's end: %w", err)}
	}
	return nil
}
