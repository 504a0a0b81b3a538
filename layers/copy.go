package layers

import (
	"archive/tar"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/layerimg/layerimg/internal/progress"
	"github.com/layerimg/layerimg/recipes"
)

// copySource is one file a copy step reads, with where it goes.
type copySource struct {
	host string
	dst  string // in the image, without the leading slash
	fd   FileDigest
	fi   fs.FileInfo
	mode uint32 // mode in the image
	uid  int
	gid  int
}

// scanCopy resolves a copy step's sources inside the build context and
// digests them. Anything that resolves outside the context is refused.
func scanCopy(contextDir string, copies []recipes.Copy) ([]copySource, error) {
	root, err := filepath.Abs(contextDir)
	if err == nil {
		root, err = filepath.EvalSymlinks(root)
	}
	if err != nil {
		return nil, fmt.Errorf("build context %s: %w", contextDir, err)
	}
	var out []copySource
	for _, cp := range copies {
		real, err := filepath.EvalSymlinks(filepath.Join(root, cp.Src))
		if err != nil {
			return nil, fmt.Errorf("copy src %q: %w", cp.Src, unwrapPathErr(err))
		}
		if !within(root, real) {
			return nil, fmt.Errorf("copy src %q resolves to %s, outside the build context %s", cp.Src, real, root)
		}
		uid, gid := 0, 0
		if cp.Owner != "" {
			uid, gid, _ = recipes.ParseOwner(cp.Owner)
		}
		var mode *uint32
		if cp.Mode != "" {
			m, _ := recipes.ParseMode(cp.Mode)
			mode = &m
		}
		fi, err := os.Lstat(real)
		if err != nil {
			return nil, err
		}
		dst := strings.TrimPrefix(path.Clean(cp.Dst), "/")
		if !fi.IsDir() && strings.HasSuffix(cp.Dst, "/") {
			dst = path.Join(dst, filepath.Base(real))
		}
		add := func(host, rel, d string, fi fs.FileInfo) error {
			s := copySource{host: host, dst: d, fi: fi, uid: uid, gid: gid}
			s.fd = FileDigest{Path: rel, Mode: uint32(fi.Mode().Perm())}
			if fi.Mode()&os.ModeSetuid != 0 {
				s.fd.Mode |= 0o4000
			}
			if fi.Mode()&os.ModeSetgid != 0 {
				s.fd.Mode |= 0o2000
			}
			s.mode = s.fd.Mode
			if mode != nil {
				s.mode = *mode
				if fi.IsDir() { // a directory stays searchable where readable
					s.mode |= (*mode & 0o444) >> 2
				}
			}
			switch {
			case fi.Mode().IsRegular():
				dg, err := fileDigest(host)
				if err != nil {
					return err
				}
				s.fd.Digest = dg
			case fi.Mode()&os.ModeSymlink != 0:
				t, err := os.Readlink(host)
				if err != nil {
					return err
				}
				s.fd.Link = t
			case fi.IsDir():
			default:
				return fmt.Errorf("copy src %q: %s is not a file, directory or symlink", cp.Src, rel)
			}
			out = append(out, s)
			return nil
		}
		relRoot, _ := filepath.Rel(root, real)
		if err := add(real, filepath.ToSlash(relRoot), dst, fi); err != nil {
			return nil, err
		}
		if !fi.IsDir() {
			continue
		}
		var walk func(dir, rel, d string) error
		walk = func(dir, rel, d string) error {
			ents, err := os.ReadDir(dir)
			if err != nil {
				return err
			}
			sort.Slice(ents, func(i, j int) bool { return ents[i].Name() < ents[j].Name() })
			for _, e := range ents {
				h := filepath.Join(dir, e.Name())
				fi, err := os.Lstat(h)
				if err != nil {
					return err
				}
				r, dd := path.Join(rel, e.Name()), path.Join(d, e.Name())
				if err := add(h, r, dd, fi); err != nil {
					return err
				}
				if fi.IsDir() {
					if err := walk(h, r, dd); err != nil {
						return err
					}
				}
			}
			return nil
		}
		if err := walk(real, filepath.ToSlash(relRoot), dst); err != nil {
			return nil, fmt.Errorf("copy src %q: %w", cp.Src, err)
		}
	}
	return out, nil
}

func unwrapPathErr(err error) error {
	if pe, ok := err.(*fs.PathError); ok {
		return fmt.Errorf("%s: %w", pe.Path, pe.Err)
	}
	return err
}

func within(root, p string) bool {
	return p == root || strings.HasPrefix(p, root+string(filepath.Separator))
}

func fileDigest(p string) (string, error) {
	f, err := os.Open(p)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return "sha256:" + hex.EncodeToString(h.Sum(nil)), nil
}

// copyFiles is the key input of a copy step's sources.
func copyFiles(srcs []copySource) []FileDigest {
	out := make([]FileDigest, len(srcs))
	for i, s := range srcs {
		out[i] = s.fd
	}
	return out
}

// writeCopyTar writes the layer of a copy step. Every mtime is the epoch, so
// a fresh checkout gives the same layer. A file whose content changed since
// it was digested for the cache key fails the step.
func writeCopyTar(w io.Writer, srcs []copySource, epoch time.Time, m *progress.Meter) error {
	tw := tar.NewWriter(w)
	for _, s := range srcs {
		hdr := &tar.Header{Name: s.dst, Mode: int64(s.mode), Uid: s.uid, Gid: s.gid, ModTime: epoch, Format: tar.FormatPAX}
		switch {
		case s.fi.IsDir():
			hdr.Typeflag, hdr.Name = tar.TypeDir, s.dst+"/"
		case s.fd.Link != "":
			hdr.Typeflag, hdr.Linkname, hdr.Mode = tar.TypeSymlink, s.fd.Link, 0o777
		default:
			hdr.Typeflag = tar.TypeReg
			hdr.Size = s.fi.Size()
		}
		if hdr.Name == "/" || hdr.Name == "" {
			continue // copying into / itself: its metadata stays the base's
		}
		if err := tw.WriteHeader(hdr); err != nil {
			return err
		}
		if hdr.Typeflag != tar.TypeReg {
			continue
		}
		f, err := os.Open(s.host)
		if err != nil {
			return err
		}
		h := sha256.New()
		_, err = io.CopyN(io.MultiWriter(tw, h), m.Reader(f), hdr.Size)
		f.Close()
		if err != nil || "sha256:"+hex.EncodeToString(h.Sum(nil)) != s.fd.Digest {
			return fmt.Errorf("copy: %s changed while the step was running; run the build again", s.fd.Path)
		}
	}
	return tw.Close()
}

// CopyKeyFiles digests the build-context files a copy step reads, for its
// cache key.
func CopyKeyFiles(contextDir string, copies []recipes.Copy) ([]FileDigest, error) {
	srcs, err := scanCopy(contextDir, copies)
	if err != nil {
		return nil, err
	}
	return copyFiles(srcs), nil
}

// CopyStep makes a copy step's layer straight from the build context: no
// sandbox and no root needed. It reports the bytes it reads to ctx's
// progress sink.
func CopyStep(ctx context.Context, c *Cache, contextDir string, copies []recipes.Copy, comp Compression, epoch time.Time) (Descriptor, error) {
	srcs, err := scanCopy(contextDir, copies)
	if err != nil {
		return Descriptor{}, err
	}
	var total int64
	for _, s := range srcs {
		if s.fi.Mode().IsRegular() {
			total += s.fi.Size()
		}
	}
	m := progress.Start(ctx, "copying and compressing", total)
	defer m.Finish()
	return c.WriteLayer(comp, func(w io.Writer) error { return writeCopyTar(w, srcs, epoch, m) })
}
