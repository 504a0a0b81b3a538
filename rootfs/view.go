package rootfs

import (
	"archive/tar"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"
)

// The methods in this file read the tree as the image will see itself:
// paths are inside the image (with or without a leading slash), symlinks
// are resolved inside it, an absolute target against the tree's root, and
// a link that climbs above the root is an *ErrEscape naming it. Nothing on
// the host is ever looked at.

// Lstat describes the entry at name; a symlink named last is described
// itself.
func (t *Tree) Lstat(name string) (fs.FileInfo, error) {
	n, err := t.find("lstat", name, false)
	if err != nil {
		return nil, err
	}
	return n.info(), nil
}

// Stat describes the entry at name, following symlinks inside the tree.
func (t *Tree) Stat(name string) (fs.FileInfo, error) {
	n, err := t.find("stat", name, true)
	if err != nil {
		return nil, err
	}
	return n.info(), nil
}

// Readlink is the target of the symlink at name.
func (t *Tree) Readlink(name string) (string, error) {
	n, err := t.find("readlink", name, false)
	if err != nil {
		return "", err
	}
	if !n.isSymlink() {
		return "", &fs.PathError{Op: "readlink", Path: displayName(name), Err: syscall.EINVAL}
	}
	return n.ino.hdr.Linkname, nil
}

// ReadDir lists the directory at name (symlinks followed), sorted by name.
func (t *Tree) ReadDir(name string) ([]fs.DirEntry, error) {
	n, err := t.find("readdir", name, true)
	if err != nil {
		return nil, err
	}
	if !n.isDir() {
		return nil, &fs.PathError{Op: "readdir", Path: displayName(name), Err: syscall.ENOTDIR}
	}
	names := slices.Sorted(func(yield func(string) bool) {
		for k := range n.children {
			if !yield(k) {
				return
			}
		}
	})
	ents := make([]fs.DirEntry, len(names))
	for i, k := range names {
		ents[i] = fs.FileInfoToDirEntry(n.children[k].info())
	}
	return ents, nil
}

// Open reads the regular file at name (symlinks followed) from the layer
// that holds it. Anything else is refused: the tree has no content for it.
func (t *Tree) Open(name string) (io.ReadCloser, error) {
	n, err := t.find("open", name, true)
	if err != nil {
		return nil, err
	}
	if !n.isReg() {
		return nil, fmt.Errorf("%s is a %s, not a regular file", displayName(name), kindOf(n))
	}
	return t.content(n.ino)
}

// ContentName is the name under which Walk hands out the content of the
// regular file at name (symlinks followed inside the tree): the first path,
// by name, of its hard link group. A caller that needs a file's bytes
// during a Walk takes them as they pass, rather than reading a layer again.
func (t *Tree) ContentName(name string) (string, error) {
	n, err := t.find("open", name, true)
	if err != nil {
		return "", err
	}
	if !n.isReg() {
		return "", fmt.Errorf("%s is a %s, not a regular file", displayName(name), kindOf(n))
	}
	c := collector{groups: map[*inode][]string{}}
	c.visit(t.root, ".")
	return slices.Min(c.groups[n.ino]), nil
}

// content opens the layer holding ino's content and reads up to its entry.
func (t *Tree) content(ino *inode) (io.ReadCloser, error) {
	l := t.layers[ino.layer]
	rc, err := l.l.Uncompressed()
	if err != nil {
		return nil, &LayerError{Layer: l.name, Err: err}
	}
	tr := tar.NewReader(rc)
	for n := 0; ; n++ {
		hdr, err := tr.Next()
		if err != nil {
			rc.Close()
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return nil, &LayerError{Layer: l.name, Entry: ino.hdr.Name, Err: fmt.Errorf("reading the tar again: %w", err)}
		}
		if n == ino.entry {
			if err := sameEntry(hdr, ino.hdr); err != nil {
				rc.Close()
				return nil, &LayerError{Layer: l.name, Entry: ino.hdr.Name, Err: err}
			}
			return &layerFile{Reader: tr, rc: rc, name: l.name}, nil
		}
	}
}

// sameEntry checks that a layer read again gives the header it gave the
// index: a layer that changes between reads would put the wrong bytes in
// the wrong file.
func sameEntry(got, want *tar.Header) error {
	if got.Name != want.Name || got.Size != want.Size || got.Typeflag != want.Typeflag {
		return errors.New("the layer changed since it was indexed")
	}
	return nil
}

// find is the node at name, the last symlink followed or not.
func (t *Tree) find(op, name string, followLast bool) (*node, error) {
	parts, err := t.resolve(strings.TrimPrefix(name, "/"), followLast)
	if err != nil {
		var esc *ErrEscape
		if errors.As(err, &esc) {
			return nil, &ErrEscape{displayName(name), esc.Why}
		}
		return nil, err
	}
	n, err := t.lookupErr(parts)
	if err != nil {
		return nil, &fs.PathError{Op: op, Path: displayName(name), Err: err}
	}
	return n, nil
}

// implicitDir is the header of a directory no layer named: what Apply
// makes for it, and what the ext4 writer makes for it.
var implicitDir = &tar.Header{Typeflag: tar.TypeDir, Mode: 0o755}

func (n *node) header() *tar.Header {
	if n.ino == nil {
		return implicitDir
	}
	return n.ino.hdr
}

func (n *node) info() fs.FileInfo { return treeInfo{n.name, n.header()} }

// treeInfo describes a node under its own name (a hard link's header
// carries its group's first name).
type treeInfo struct {
	name string
	hdr  *tar.Header
}

func (i treeInfo) Name() string {
	if i.name == "" {
		return "/"
	}
	return i.name
}
func (i treeInfo) Size() int64        { return i.hdr.Size }
func (i treeInfo) Mode() fs.FileMode  { return i.hdr.FileInfo().Mode() }
func (i treeInfo) ModTime() time.Time { return i.hdr.ModTime }
func (i treeInfo) IsDir() bool        { return i.hdr.Typeflag == tar.TypeDir }
func (i treeInfo) Sys() any           { return i.hdr }

func kindOf(n *node) string {
	if n.isDir() {
		return "directory"
	}
	return kind(n.info().Mode())
}

// layerFile is one file's content in a layer. Close reads the layer to its
// end, where its digest is checked, and says if it was not the one
// promised: the content handed out came from it.
type layerFile struct {
	io.Reader
	rc   io.ReadCloser
	name string
}

func (f *layerFile) Close() error {
	_, err := io.Copy(io.Discard, f.rc)
	if cerr := f.rc.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return &LayerError{Layer: f.name, Err: fmt.Errorf("reading to the layer's end: %w", err)}
	}
	return nil
}

func displayName(rel string) string { return "/" + strings.TrimPrefix(filepath.ToSlash(rel), "/") }

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
