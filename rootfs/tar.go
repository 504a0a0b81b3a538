package rootfs

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// TarOptions says how a directory becomes a tar.
type TarOptions struct {
	// Epoch, when set, clamps every mtime to it (SOURCE_DATE_EPOCH).
	Epoch *time.Time
	// Overlay turns overlayfs whiteouts (0/0 character devices) and opaque
	// directories into OCI whiteouts: the directory is an overlay upper dir.
	Overlay bool
	// Skip leaves out these paths (relative, slash-separated).
	Skip map[string]bool
	// RootOwned writes every entry as owned by 0:0, whoever owns the
	// files, and without xattrs: a stage dir that any user may have made,
	// where a host's SELinux labels or default ACLs would otherwise leak in.
	RootOwned bool
}

// WriteTar writes dir as a deterministic tar: entries sorted by name, numeric
// owners only, no atime or ctime, whole-second mtimes, xattrs as PAX records.
func WriteTar(ctx context.Context, w io.Writer, dir string, opts TarOptions) error {
	tw := tar.NewWriter(w)
	links := map[[2]uint64]string{}
	err := walkSorted(dir, "", opts.Overlay, func(rel string, fi fs.FileInfo) error {
		if err := ctx.Err(); err != nil {
			return err
		}
		if opts.Skip[rel] {
			return fs.SkipDir
		}
		host := filepath.Join(dir, rel)
		st := fi.Sys().(*syscall.Stat_t)
		if opts.Overlay && isWhiteout(fi) {
			d, b := filepath.Split(rel)
			return tw.WriteHeader(whiteoutHeader(d+whiteoutPrefix+b, opts.Epoch))
		}
		hdr := &tar.Header{
			Name:    rel,
			Mode:    int64(st.Mode & 0o7777),
			Uid:     int(st.Uid),
			Gid:     int(st.Gid),
			ModTime: clamp(fi.ModTime(), opts.Epoch),
			Format:  tar.FormatPAX,
		}
		if opts.RootOwned {
			hdr.Uid, hdr.Gid = 0, 0
		}
		switch {
		case fi.Mode().IsRegular():
			hdr.Typeflag = tar.TypeReg
			hdr.Size = fi.Size()
			if st.Nlink > 1 {
				id := [2]uint64{st.Dev, st.Ino}
				if first, ok := links[id]; ok {
					hdr.Typeflag, hdr.Linkname, hdr.Size = tar.TypeLink, first, 0
				} else {
					links[id] = rel
				}
			}
		case fi.IsDir():
			hdr.Typeflag = tar.TypeDir
			hdr.Name += "/"
		case fi.Mode()&fs.ModeSymlink != 0:
			hdr.Typeflag = tar.TypeSymlink
			t, err := os.Readlink(host)
			if err != nil {
				return err
			}
			hdr.Linkname = t
		case fi.Mode()&fs.ModeNamedPipe != 0:
			hdr.Typeflag = tar.TypeFifo
		case fi.Mode()&fs.ModeDevice != 0:
			hdr.Typeflag = tar.TypeBlock
			if fi.Mode()&fs.ModeCharDevice != 0 {
				hdr.Typeflag = tar.TypeChar
			}
			hdr.Devmajor, hdr.Devminor = int64(unix.Major(st.Rdev)), int64(unix.Minor(st.Rdev))
		default: // sockets have no tar form; they are runtime state anyway
			return nil
		}
		opaque := false
		xattrs, err := listXattrs(host)
		if err != nil {
			return fmt.Errorf("%s: %w", rel, err)
		}
		if opts.RootOwned {
			xattrs = nil
		}
		for k, v := range xattrs {
			if strings.HasPrefix(k, "trusted.overlay.") || strings.HasPrefix(k, "user.overlay.") {
				opaque = opaque || (opts.Overlay && (k == overlayOpaque || k == userOpaque) && v == "y")
				continue
			}
			if hdr.PAXRecords == nil {
				hdr.PAXRecords = map[string]string{}
			}
			hdr.PAXRecords[xattrPrefix+k] = v
		}
		if err := tw.WriteHeader(hdr); err != nil {
			return err
		}
		if opaque {
			if err := tw.WriteHeader(whiteoutHeader(rel+"/"+opaqueMarker, opts.Epoch)); err != nil {
				return err
			}
		}
		if hdr.Typeflag == tar.TypeReg && hdr.Size > 0 {
			// O_NOFOLLOW: a file swapped for a symlink since the Lstat
			// above must not lead the tar to a host file.
			f, err := os.OpenFile(host, os.O_RDONLY|syscall.O_NOFOLLOW, 0)
			if err != nil {
				return err
			}
			n, err := io.Copy(tw, f)
			f.Close()
			if err != nil {
				return fmt.Errorf("%s: %w", rel, err)
			}
			if n != hdr.Size {
				return fmt.Errorf("%s changed size while being archived", rel)
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	return tw.Close()
}

func whiteoutHeader(name string, epoch *time.Time) *tar.Header {
	t := time.Unix(0, 0)
	if epoch != nil {
		t = *epoch
	}
	return &tar.Header{Name: name, Typeflag: tar.TypeReg, Mode: 0, ModTime: t, Format: tar.FormatPAX}
}

func clamp(t time.Time, epoch *time.Time) time.Time {
	if epoch != nil && t.After(*epoch) {
		t = *epoch
	}
	return time.Unix(t.Unix(), 0)
}

// walkSorted visits every entry below dir (not dir itself), parents before
// children, siblings sorted by the name they will have in the tar (overlay
// whiteouts become ".wh.NAME"). fn may return fs.SkipDir to leave one out.
func walkSorted(dir, rel string, overlay bool, fn func(rel string, fi fs.FileInfo) error) error {
	f, err := os.OpenFile(filepath.Join(dir, rel), os.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_DIRECTORY, 0)
	if err != nil {
		return err
	}
	names, err := f.Readdirnames(-1)
	f.Close()
	if err != nil {
		return err
	}
	type ent struct {
		rel, sortKey string
		fi           fs.FileInfo
	}
	ents := make([]ent, 0, len(names))
	for _, n := range names {
		r := n
		if rel != "" {
			r = rel + "/" + n
		}
		fi, err := os.Lstat(filepath.Join(dir, r))
		if err != nil {
			return err
		}
		key := n
		if overlay && isWhiteout(fi) {
			key = whiteoutPrefix + n
		}
		ents = append(ents, ent{r, key, fi})
	}
	sort.Slice(ents, func(i, j int) bool { return ents[i].sortKey < ents[j].sortKey })
	for _, e := range ents {
		if err := fn(e.rel, e.fi); err != nil {
			if errors.Is(err, fs.SkipDir) {
				continue
			}
			return err
		}
		if e.fi.IsDir() {
			if err := walkSorted(dir, e.rel, overlay, fn); err != nil {
				return err
			}
		}
	}
	return nil
}

// isWhiteout reports whether fi is an overlayfs whiteout: a 0/0 char device.
func isWhiteout(fi fs.FileInfo) bool {
	st, ok := fi.Sys().(*syscall.Stat_t)
	return ok && fi.Mode()&fs.ModeCharDevice != 0 && st.Rdev == 0
}

func listXattrs(p string) (map[string]string, error) {
	sz, err := unix.Llistxattr(p, nil)
	if err != nil || sz == 0 {
		if errors.Is(err, unix.ENOTSUP) {
			err = nil
		}
		return nil, err
	}
	buf := make([]byte, sz)
	sz, err = unix.Llistxattr(p, buf)
	if err != nil {
		return nil, err
	}
	out := map[string]string{}
	for _, name := range strings.Split(strings.TrimRight(string(buf[:sz]), "\x00"), "\x00") {
		if name == "" {
			continue
		}
		vsz, err := unix.Lgetxattr(p, name, nil)
		if err != nil {
			return nil, err
		}
		val := make([]byte, vsz)
		if vsz > 0 {
			if vsz, err = unix.Lgetxattr(p, name, val); err != nil {
				return nil, err
			}
		}
		out[name] = string(val[:vsz])
	}
	return out, nil
}
