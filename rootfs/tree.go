package rootfs

import (
	"archive/tar"
	"context"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"path"
	"strings"
	"syscall"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// Layer is what a Tree reads of a layer: its uncompressed tar, as many times
// as it needs. A v1.Layer is one.
type Layer interface {
	Uncompressed() (io.ReadCloser, error)
}

// Tree is the final tree of a stack of layers, built from their tar headers
// alone: nothing is unpacked on the host, so no privilege is needed, and
// content stays in the layers until Walk or Open reads it. Layers are
// applied with exactly Apply's semantics and checks (whiteouts, opaque
// directories, hardlinks, names resolved through the tree's own symlinks).
// Each entry keeps its header as the layer has it: no time is clamped.
//
// A Tree is not safe for concurrent use; after an error from Append it is
// not to be used.
type Tree struct {
	layers []treeLayer
	root   *node
	// What the tree holds in memory, bounded: headers are all it keeps,
	// and a small compressed layer can name millions of them.
	entries, maxEntries   int
	paxBytes, maxPAXBytes int64
}

// The bounds on a tree: far beyond any root filesystem (debian-cloud has
// 25,000 entries), far below what would exhaust a build machine's memory.
const (
	defaultMaxEntries  = 1 << 22
	defaultMaxPAXBytes = 256 << 20
)

type treeLayer struct {
	name string
	l    Layer
	// cached holds the layer's headers when they came from a HeaderCache
	// rather than from reading the layer: Walk then checks every one of
	// them against the layer.
	cached []*tar.Header
}

// node is one path of the tree.
type node struct {
	name     string
	children map[string]*node // directories only (the root too)
	// ino is the entry's metadata, shared by the paths of a hard link
	// group; nil for a directory that no layer named (the root, a parent
	// a layer left out).
	ino *inode
	// created is 1 + the index of the last layer whose entry wrote this
	// path: an opaque marker keeps what its own layer wrote.
	created int
}

// inode is what the paths of a hard link group share.
type inode struct {
	hdr *tar.Header
	// layer and entry (the ordinal of the header in the layer's tar) hold a
	// regular file's content.
	layer, entry int
}

func (n *node) isDir() bool { return n.children != nil }

func (n *node) isSymlink() bool { return n.ino != nil && n.ino.hdr.Typeflag == tar.TypeSymlink }

func (n *node) isReg() bool {
	return n.ino != nil && (n.ino.hdr.Typeflag == tar.TypeReg || n.ino.hdr.Typeflag == tar.TypeRegA)
}

// NewTree is an empty tree: the root directory alone.
func NewTree() *Tree {
	return &Tree{root: &node{children: map[string]*node{}}, maxEntries: defaultMaxEntries, maxPAXBytes: defaultMaxPAXBytes}
}

// HeaderCache keeps the headers of layers indexed before, by diff_id, so
// that indexing a layer decompresses it once per machine rather than once
// per disk (the disk stage then decompresses each layer once, in Walk).
// What it returns is not trusted: Walk reads every layer indexed from it to
// its end, where the layer's digest is checked, and compares every header
// with the cached one, field by field.
type HeaderCache interface {
	Headers(diffID v1.Hash) ([]*tar.Header, bool)
	PutHeaders(diffID v1.Hash, hdrs []*tar.Header) error
}

// Index reads the headers of every layer of img, bottom up, into a Tree,
// from hc where it has them (hc may be nil). Errors name each layer by its
// digest.
func Index(ctx context.Context, img v1.Image, hc HeaderCache) (*Tree, error) {
	ls, err := img.Layers()
	if err != nil {
		return nil, err
	}
	t := NewTree()
	for _, l := range ls {
		d, err := l.Digest()
		if err != nil {
			return nil, err
		}
		if err := t.appendCached(ctx, d.String(), l, hc); err != nil {
			return nil, err
		}
	}
	return t, nil
}

// appendCached is Append, with the headers from hc where it has them and
// put there where it has not.
func (t *Tree) appendCached(ctx context.Context, name string, l v1.Layer, hc HeaderCache) error {
	if hc == nil {
		return t.Append(ctx, name, l)
	}
	id, err := l.DiffID()
	if err != nil {
		return &LayerError{Layer: name, Err: err}
	}
	if hdrs, ok := hc.Headers(id); ok {
		li := len(t.layers)
		t.layers = append(t.layers, treeLayer{name: name, l: l, cached: hdrs})
		for n, hdr := range hdrs {
			if err := ctx.Err(); err != nil {
				return err
			}
			if err := t.entry(li, n, hdr); err != nil {
				return &LayerError{name, hdr.Name, err}
			}
		}
		return nil
	}
	var hdrs []*tar.Header
	if err := t.append(ctx, name, l, func(h *tar.Header) { hdrs = append(hdrs, h) }); err != nil {
		return err
	}
	return hc.PutHeaders(id, hdrs)
}

// Append reads the headers of l, named name in errors, and applies them on
// top of the tree. The layer is read to its end, so that a reader that
// checks a digest can tell whether the layer is the one promised.
func (t *Tree) Append(ctx context.Context, name string, l Layer) error {
	return t.append(ctx, name, l, nil)
}

// append is Append, handing each header read to seen (if not nil).
func (t *Tree) append(ctx context.Context, name string, l Layer, seen func(*tar.Header)) error {
	rc, err := l.Uncompressed()
	if err != nil {
		return &LayerError{Layer: name, Err: err}
	}
	defer rc.Close()
	li := len(t.layers)
	t.layers = append(t.layers, treeLayer{name: name, l: l})
	return eachEntry(ctx, rc, name, func(n int, hdr *tar.Header, _ *tar.Reader) error {
		if err := t.entry(li, n, hdr); err != nil {
			return &LayerError{name, hdr.Name, err}
		}
		if seen != nil {
			seen(hdr)
		}
		return nil
	})
}

// entry applies one header, in the order and with the checks of
// applier.entry: a refused entry changes nothing.
func (t *Tree) entry(li, n int, hdr *tar.Header) error {
	if hdr.Typeflag == tar.TypeXGlobalHeader {
		return nil // PAX defaults for later entries: ignored, as containerd does
	}
	t.entries++
	for k, v := range hdr.PAXRecords {
		t.paxBytes += int64(len(k) + len(v))
	}
	if t.entries > t.maxEntries {
		return fmt.Errorf("the image has more than %d entries: refused", t.maxEntries)
	}
	if t.paxBytes > t.maxPAXBytes {
		return fmt.Errorf("the image's extended headers (xattrs and PAX records) pass %d bytes: refused", t.maxPAXBytes)
	}
	name, err := cleanName(hdr.Name)
	if err != nil {
		return err
	}
	if name == "" {
		return t.rootEntry(hdr)
	}
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
	parts, err := t.resolve(dir, true)
	if err != nil {
		return err
	}
	parent, err := t.mkdirParents(parts)
	if err != nil {
		return err
	}
	switch {
	case base == opaqueMarker:
		for k, c := range parent.children {
			if c.created != li+1 {
				delete(parent.children, k)
			}
		}
		return nil
	case whiteout:
		delete(parent.children, victim)
		return nil
	}
	if err := checkNameLen(opFor(hdr), append(parts, base)); err != nil {
		return err
	}
	if err := checkStorable(hdr); err != nil {
		return err
	}
	old := parent.children[base]
	if hdr.Typeflag == tar.TypeDir {
		if old != nil && old.isDir() {
			// A directory over a directory keeps its children and takes
			// the new metadata; xattrs only add up, as setxattr(2) does.
			old.ino = &inode{hdr: withOldXattrs(hdr, old.ino)}
			old.created = li + 1
			return nil
		}
		parent.children[base] = &node{name: base, children: map[string]*node{}, ino: &inode{hdr: hdr}, created: li + 1}
		return nil
	}
	delete(parent.children, base) // what was there goes, links to it broken as by copy-up
	nn := &node{name: base, created: li + 1}
	switch hdr.Typeflag {
	case tar.TypeLink:
		target, err := t.linkTarget(hdr.Linkname)
		if err != nil {
			return err
		}
		nn.ino = target.ino // a hardlink shares its target's metadata
	case tar.TypeReg, tar.TypeRegA:
		nn.ino = &inode{hdr: hdr, layer: li, entry: n}
	default: // symlinks, devices, FIFOs
		nn.ino = &inode{hdr: hdr}
	}
	parent.children[base] = nn
	return nil
}

// rootEntry keeps the metadata of an entry for the root itself, which Apply
// leaves to the directory it extracts into. Only a directory can be the
// root; anything else is ignored, as Apply ignores it.
func (t *Tree) rootEntry(hdr *tar.Header) error {
	if hdr.Typeflag != tar.TypeDir {
		return nil
	}
	if err := checkHeader(hdr); err != nil {
		return err
	}
	if err := checkStorable(hdr); err != nil {
		return err
	}
	t.root.ino = &inode{hdr: withOldXattrs(hdr, t.root.ino)}
	return nil
}

// withOldXattrs is hdr with the xattrs of old that hdr does not set, as a
// directory entry applied over a directory has them on the host.
func withOldXattrs(hdr *tar.Header, old *inode) *tar.Header {
	if old == nil {
		return hdr
	}
	var add map[string]string
	for k, v := range old.hdr.PAXRecords {
		if _, ok := hdr.PAXRecords[k]; !ok && strings.HasPrefix(k, xattrPrefix) {
			if add == nil {
				add = map[string]string{}
			}
			add[k] = v
		}
	}
	if add == nil {
		return hdr
	}
	h := *hdr
	h.PAXRecords = maps.Clone(hdr.PAXRecords)
	if h.PAXRecords == nil {
		h.PAXRecords = map[string]string{}
	}
	maps.Copy(h.PAXRecords, add)
	h.Xattrs = nil // deprecated, and would override PAXRecords
	return &h
}

// Limits Apply meets in the host's kernel, refused here with the errors the
// kernel gives, so that a tree takes what a host extraction takes.
const (
	nameMax      = 255   // bytes in one name (NAME_MAX)
	pathMax      = 4096  // bytes in a path, NUL included (PATH_MAX)
	xattrNameMax = 255   // XATTR_NAME_MAX
	xattrSizeMax = 65536 // XATTR_SIZE_MAX
)

// checkStorable refuses what the host's kernel refuses Apply: symlink
// targets and xattrs too long for it, and user xattrs on what is neither a
// file nor a directory. A hardlink's own header is not stored.
func checkStorable(hdr *tar.Header) error {
	if hdr.Typeflag == tar.TypeLink {
		return nil
	}
	if hdr.Typeflag == tar.TypeSymlink && len(hdr.Linkname) >= pathMax {
		return fmt.Errorf("symlink target: %w", syscall.ENAMETOOLONG)
	}
	fileOrDir := hdr.Typeflag == tar.TypeReg || hdr.Typeflag == tar.TypeRegA || hdr.Typeflag == tar.TypeDir
	for _, x := range xattrs(hdr) {
		switch {
		case strings.HasPrefix(x, "user.") && !fileOrDir:
			return fmt.Errorf("setting xattr %s: %w", x, syscall.EPERM)
		case len(x) > xattrNameMax:
			return fmt.Errorf("setting xattr %s: %w", x, syscall.ERANGE)
		case len(hdr.PAXRecords[xattrPrefix+x]) > xattrSizeMax:
			return fmt.Errorf("setting xattr %s: %w", x, syscall.E2BIG)
		}
	}
	return nil
}

// checkNameLen refuses a path the host could not create: a name longer than
// NAME_MAX, or a path (from the root, with its leading slash) that does not
// fit PATH_MAX. op is the call that Apply would have seen fail.
func checkNameLen(op string, parts []string) error {
	p := "/" + strings.Join(parts, "/")
	if len(p) >= pathMax || len(parts[len(parts)-1]) > nameMax {
		return &fs.PathError{Op: op, Path: p, Err: syscall.ENAMETOOLONG}
	}
	return nil
}

func opFor(hdr *tar.Header) string {
	switch hdr.Typeflag {
	case tar.TypeReg, tar.TypeRegA:
		return "open"
	case tar.TypeDir:
		return "mkdir"
	case tar.TypeLink:
		return "link"
	case tar.TypeSymlink:
		return "symlink"
	}
	return "mknod"
}

// resolve is resolveIn over the tree: the symlink-free parts of rel.
func (t *Tree) resolve(rel string, followLast bool) ([]string, error) {
	return resolveParts(rel, followLast, func(parts []string) (string, bool, error) {
		n := t.lookup(parts)
		if n == nil || !n.isSymlink() {
			return "", false, nil
		}
		return n.ino.hdr.Linkname, true, nil
	})
}

// lookup is the node at parts (no symlink followed), or nil.
func (t *Tree) lookup(parts []string) *node {
	n := t.root
	for _, p := range parts {
		if !n.isDir() {
			return nil
		}
		if n = n.children[p]; n == nil {
			return nil
		}
	}
	return n
}

// lookupErr is lookup with the error the host gives for a missing path or
// one that goes through a non-directory.
func (t *Tree) lookupErr(parts []string) (*node, error) {
	n := t.root
	for _, p := range parts {
		if !n.isDir() {
			return nil, syscall.ENOTDIR
		}
		if n = n.children[p]; n == nil {
			return nil, syscall.ENOENT
		}
	}
	return n, nil
}

// mkdirParents returns the directory at parts, making the missing ones as
// Apply does (root-owned 0755 on the host; here directories no layer
// named).
func (t *Tree) mkdirParents(parts []string) (*node, error) {
	n := t.root
	for i, p := range parts {
		c := n.children[p]
		if c == nil {
			if err := checkNameLen("mkdir", parts[:i+1]); err != nil {
				return nil, err
			}
			c = &node{name: p, children: map[string]*node{}}
			n.children[p] = c
		} else if !c.isDir() {
			return nil, fmt.Errorf("parent /%s is not a directory", strings.Join(parts[:i+1], "/"))
		}
		n = c
	}
	return n, nil
}

// linkTarget finds a hardlink's target as link(2) does in Apply: the
// target's directories resolved inside the tree, a symlink named last
// linked itself.
func (t *Tree) linkTarget(linkname string) (*node, error) {
	ln, err := cleanName(linkname)
	if err != nil || ln == "" {
		return nil, &ErrEscape{linkname, "hardlink target outside the layer root refused"}
	}
	ldir, lbase := path.Split(ln)
	parts, err := t.resolve(ldir, true)
	if err != nil {
		return nil, fmt.Errorf("hardlink target: %w", err)
	}
	n, err := t.lookupErr(append(parts, lbase))
	if err == nil && n.isDir() {
		err = syscall.EPERM
	}
	if err != nil {
		return nil, fmt.Errorf("hardlink to %q: %w", linkname, err)
	}
	return n, nil
}
