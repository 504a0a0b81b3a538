package rootfs

import (
	"archive/tar"
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
)

// item is one entry of the stream: a path and its inode, or, for the second
// and later paths of a hard link group, the group's first path.
type item struct {
	path string
	ino  *inode
	link string
}

// Headers calls fn for every entry of the tree, in Walk's order, without
// reading any content.
func (t *Tree) Headers(fn func(hdr *tar.Header) error) error {
	special, files := t.order()
	for _, it := range special {
		if err := fn(it.header()); err != nil {
			return err
		}
	}
	for _, group := range files {
		for _, it := range group {
			if err := fn(it.header()); err != nil {
				return err
			}
		}
	}
	return nil
}

// Walk calls fn once for every entry of the tree: first every entry that is
// not a regular file, sorted by path (so a directory comes before what it
// holds), then the regular files in layer order and, in a layer, in tar
// order, r reading the content straight from the layer. A hard link group
// is its first path (by name) with the full header, then TypeLink headers
// naming it for the other paths, right after it. Names are clean and
// relative ("." for the root); the root and the directories no layer named
// (parents a layer left out) are not handed out, but the root is when a
// layer had an entry for it. fn may change the header it is given.
func (t *Tree) Walk(ctx context.Context, fn func(hdr *tar.Header, r io.Reader) error) error {
	special, files := t.order()
	for _, it := range special {
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := fn(it.header(), noContent{}); err != nil {
			return err
		}
	}
	for li, group := range files {
		if len(group) == 0 && t.layers[li].cached == nil {
			continue // no content of this layer survives: not read at all
		}
		if err := t.walkLayer(ctx, li, group, fn); err != nil {
			return err
		}
	}
	return nil
}

// walkLayer reads layer li as far as its last entry in group, handing out
// each file of group (and the links that follow it) as it passes.
func (t *Tree) walkLayer(ctx context.Context, li int, group []item, fn func(hdr *tar.Header, r io.Reader) error) error {
	l := t.layers[li]
	rc, err := l.l.Uncompressed()
	if err != nil {
		return &LayerError{Layer: l.name, Err: err}
	}
	defer rc.Close()
	tr := tar.NewReader(rc)
	n, i := 0, 0
	for ; i < len(group) || l.cached != nil; n++ {
		if err := ctx.Err(); err != nil {
			return err
		}
		hdr, err := tr.Next()
		if err == io.EOF && i == len(group) && n == len(l.cached) {
			break // every cached header checked
		}
		if err != nil {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return &LayerError{Layer: l.name, Err: fmt.Errorf("reading the tar again: %w", err)}
		}
		if l.cached != nil && (n >= len(l.cached) || !sameHeader(hdr, l.cached[n])) {
			return &LayerError{Layer: l.name, Entry: hdr.Name, Err: errors.New("the layer differs from the headers cached for it: delete the cache's headers/ folder")}
		}
		if i == len(group) || n != group[i].ino.entry {
			continue
		}
		if err := sameEntry(hdr, group[i].ino.hdr); err != nil {
			return &LayerError{Layer: l.name, Entry: hdr.Name, Err: err}
		}
		if err := fn(group[i].header(), tr); err != nil {
			return err
		}
		for i++; i < len(group) && group[i].link != ""; i++ {
			if err := fn(group[i].header(), noContent{}); err != nil {
				return err
			}
		}
	}
	// Read on to the end, where the layer's digest is checked: content was
	// handed out, so the layer must be the one its name promises.
	if _, err := io.Copy(io.Discard, rc); err != nil {
		return &LayerError{Layer: l.name, Err: fmt.Errorf("reading to the layer's end: %w", err)}
	}
	return nil
}

// order lists the tree's entries in Walk's order: the entries that are not
// regular files, then, for each layer, the regular files whose content it
// holds.
func (t *Tree) order() (special []item, files [][]item) {
	c := collector{groups: map[*inode][]string{}}
	c.visit(t.root, ".")
	groups, inos := c.groups, c.inos
	files = make([][]item, len(t.layers))
	var regular []*inode
	for _, ino := range inos {
		paths := groups[ino]
		slices.Sort(paths)
		if ino.hdr.Typeflag == tar.TypeReg || ino.hdr.Typeflag == tar.TypeRegA {
			regular = append(regular, ino)
			continue
		}
		for i, p := range paths {
			it := item{path: p, ino: ino}
			if i > 0 {
				it.link = paths[0]
			}
			special = append(special, it)
		}
	}
	// The root sorts first whatever the names below it: "." is its name.
	slices.SortFunc(special, func(a, b item) int {
		return cmp.Or(cmp.Compare(btoi(a.path != "."), btoi(b.path != ".")), cmp.Compare(a.path, b.path))
	})
	slices.SortFunc(regular, func(a, b *inode) int { return cmp.Or(cmp.Compare(a.layer, b.layer), cmp.Compare(a.entry, b.entry)) })
	for _, ino := range regular {
		paths := groups[ino]
		for i, p := range paths {
			it := item{path: p, ino: ino}
			if i > 0 {
				it.link = paths[0]
			}
			files[ino.layer] = append(files[ino.layer], it)
		}
	}
	return special, files
}

// collector gathers every path of each inode, the inodes in the order
// first met.
type collector struct {
	groups map[*inode][]string
	inos   []*inode
}

func (c *collector) visit(n *node, p string) {
	if n.ino != nil {
		if _, ok := c.groups[n.ino]; !ok {
			c.inos = append(c.inos, n.ino)
		}
		c.groups[n.ino] = append(c.groups[n.ino], p)
	}
	for name, child := range n.children {
		cp := name
		if p != "." {
			cp = p + "/" + name
		}
		c.visit(child, cp)
	}
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

// header is the item's header, a copy the receiver may change: the layer's
// own with a clean name, or a TypeLink to the group's first path.
func (it item) header() *tar.Header {
	h := *it.ino.hdr
	h.Name = it.path
	h.PAXRecords = maps.Clone(h.PAXRecords)
	// These describe the name the layer gave, not this one; Xattrs is
	// deprecated and would override the PAX records.
	delete(h.PAXRecords, "path")
	delete(h.PAXRecords, "linkpath")
	h.Xattrs = nil
	if it.link != "" {
		h.Typeflag, h.Linkname, h.Size = tar.TypeLink, it.link, 0
		delete(h.PAXRecords, "size")
	}
	return &h
}

// noContent is the reader handed out with an entry that has no content.
type noContent struct{}

func (noContent) Read([]byte) (int, error) { return 0, io.EOF }

// WriteTar writes the tree as one tar, PAX format, every header as the
// layers have it (no time clamped: layers made by steps already are, and a
// base image's times are its own). Directories get a trailing slash.
func (t *Tree) WriteTar(ctx context.Context, w io.Writer) error {
	tw := tar.NewWriter(w)
	err := t.Walk(ctx, func(hdr *tar.Header, r io.Reader) error {
		hdr.Format = tar.FormatPAX
		if hdr.Typeflag == tar.TypeDir {
			hdr.Name += "/"
		}
		if err := tw.WriteHeader(hdr); err != nil {
			return fmt.Errorf("writing %s: %w", hdr.Name, err)
		}
		if hdr.Typeflag == tar.TypeReg || hdr.Typeflag == tar.TypeRegA {
			if _, err := io.Copy(tw, r); err != nil {
				return fmt.Errorf("writing %s: %w", hdr.Name, err)
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	return tw.Close()
}

// sameHeader says whether two headers agree on every field a tree or a
// disk takes from them.
func sameHeader(a, b *tar.Header) bool {
	return a.Typeflag == b.Typeflag && a.Name == b.Name && a.Linkname == b.Linkname && a.Size == b.Size &&
		a.Mode == b.Mode && a.Uid == b.Uid && a.Gid == b.Gid && a.Uname == b.Uname && a.Gname == b.Gname &&
		a.ModTime.Equal(b.ModTime) && a.AccessTime.Equal(b.AccessTime) && a.ChangeTime.Equal(b.ChangeTime) &&
		a.Devmajor == b.Devmajor && a.Devminor == b.Devminor && maps.Equal(a.PAXRecords, b.PAXRecords)
}
