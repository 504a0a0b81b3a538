package rootfs

import (
	"archive/tar"
	"cmp"
	"context"
	"fmt"
	"io"
	"slices"
)

// ReadFiles hands fn the content of each regular file named (symlinks
// followed inside the tree), reading each layer that holds one once and
// only once, whatever the number of files: Open reads a layer from its
// start for every call, which costs seconds per file on a large base. The
// files come in layer and tar order, not in the order named; a name given
// twice, or two names of one hard link group, are each handed out. The
// caller bounds the sizes it asks for: every file is read into memory.
func (t *Tree) ReadFiles(ctx context.Context, names []string, fn func(name string, data []byte) error) error {
	want := map[*inode][]string{}
	for _, name := range names {
		n, err := t.find("open", name, true)
		if err != nil {
			return err
		}
		if !n.isReg() {
			return fmt.Errorf("%s is a %s, not a regular file", displayName(name), kindOf(n))
		}
		want[n.ino] = append(want[n.ino], name)
	}
	groups := make([][]item, len(t.layers))
	byPath := map[string]*inode{}
	for ino := range want {
		// The item's path only keys the callback back to its inode.
		p := fmt.Sprintf("%d/%d", ino.layer, ino.entry)
		byPath[p] = ino
		groups[ino.layer] = append(groups[ino.layer], item{path: p, ino: ino})
	}
	for li, g := range groups {
		if len(g) == 0 {
			continue
		}
		slices.SortFunc(g, func(a, b item) int { return cmp.Compare(a.ino.entry, b.ino.entry) })
		err := t.walkLayer(ctx, li, g, func(hdr *tar.Header, r io.Reader) error {
			ino := byPath[hdr.Name]
			data, err := io.ReadAll(r)
			if err != nil {
				return &LayerError{Layer: t.layers[li].name, Entry: ino.hdr.Name, Err: err}
			}
			for _, name := range want[ino] {
				if err := fn(name, data); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			return err
		}
	}
	return nil
}
