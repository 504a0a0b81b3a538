package rootfs

import (
	"archive/tar"
	"cmp"
	"context"
	"fmt"
	"io"
	"slices"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// ReadFiles hands fn the content of each regular file named (symlinks
// followed inside the tree), reading each layer that holds one once and
// only once, whatever the number of files: Open reads a layer from its
// start for every call, which costs seconds per file on a large base. The
// files come in layer and tar order, not in the order named; a name given
// twice, or two names of one hard link group, are each handed out. The
// caller bounds the sizes it asks for: every file is read into memory.
func (t *Tree) ReadFiles(ctx context.Context, names []string, fn func(name string, data []byte) error) error {
	return t.ReadFilesCached(ctx, names, nil, fn)
}

// ContentCache keeps the content of some entries of a layer, by diff_id
// and entry index, so that reading them again needs no decompression.
// *layers.Cache is one.
type ContentCache interface {
	Contents(diffID v1.Hash) (map[int][]byte, bool)
	PutContents(diffID v1.Hash, m map[int][]byte) error
}

// ReadFilesCached is ReadFiles, taking from cc (which may be nil) the
// files of a layer it has all of, and putting there those it reads. What
// cc gives is checked against the tree's header only by size: a cache is
// trusted as the cache's keys are.
func (t *Tree) ReadFilesCached(ctx context.Context, names []string, cc ContentCache, fn func(name string, data []byte) error) error {
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
		give := func(ino *inode, data []byte) error {
			for _, name := range want[ino] {
				if err := fn(name, data); err != nil {
					return err
				}
			}
			return nil
		}
		id, cached := t.cachedContents(cc, li, g)
		if cached != nil {
			for _, it := range g {
				if err := give(it.ino, cached[it.ino.entry]); err != nil {
					return err
				}
			}
			continue
		}
		read := map[int][]byte{}
		err := t.walkLayer(ctx, li, g, func(hdr *tar.Header, r io.Reader) error {
			ino := byPath[hdr.Name]
			data, err := io.ReadAll(r)
			if err != nil {
				return &LayerError{Layer: t.layers[li].name, Entry: ino.hdr.Name, Err: err}
			}
			read[ino.entry] = data
			return give(ino, data)
		})
		if err != nil {
			return err
		}
		if id != nil {
			if err := cc.PutContents(*id, read); err != nil {
				return err
			}
		}
	}
	return nil
}

// LayerHeaders is every tar header of l, in order: from hc when it has
// them, else read from the layer (to its end, where its digest is checked)
// and kept in hc (which may be nil) for the next reader, a Tree included.
func LayerHeaders(ctx context.Context, l v1.Layer, hc HeaderCache) ([]*tar.Header, error) {
	d, err := l.Digest()
	if err != nil {
		return nil, err
	}
	name := d.String()
	id, err := l.DiffID()
	if err != nil {
		return nil, &LayerError{Layer: name, Err: err}
	}
	if hc != nil {
		if hdrs, ok := hc.Headers(id); ok {
			return hdrs, nil
		}
	}
	rc, err := l.Uncompressed()
	if err != nil {
		return nil, &LayerError{Layer: name, Err: err}
	}
	defer rc.Close()
	var hdrs []*tar.Header
	err = eachEntry(ctx, rc, name, func(_ int, hdr *tar.Header, _ *tar.Reader) error {
		hdrs = append(hdrs, hdr)
		return nil
	})
	if err != nil {
		return nil, err
	}
	if hc != nil {
		if err := hc.PutHeaders(id, hdrs); err != nil {
			return nil, err
		}
	}
	return hdrs, nil
}

// cachedContents is what cc keeps of layer li when it has every entry of
// g (nil otherwise), and the layer's diff_id when cc can keep its files.
func (t *Tree) cachedContents(cc ContentCache, li int, g []item) (*v1.Hash, map[int][]byte) {
	if cc == nil {
		return nil, nil
	}
	l, ok := t.layers[li].l.(interface{ DiffID() (v1.Hash, error) })
	if !ok {
		return nil, nil
	}
	id, err := l.DiffID()
	if err != nil {
		return nil, nil
	}
	m, ok := cc.Contents(id)
	if !ok {
		return &id, nil
	}
	for _, it := range g {
		if data, ok := m[it.ino.entry]; !ok || int64(len(data)) != it.ino.hdr.Size {
			return &id, nil
		}
	}
	return &id, m
}
