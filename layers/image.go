package layers

import (
	"io"
	"os"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// cachedLayer is a v1.Layer backed by a blob in the local cache.
type cachedLayer struct {
	c *Cache
	d Descriptor
}

// Layer returns the cached layer d as a v1.Layer.
func (c *Cache) Layer(d Descriptor) v1.Layer { return &cachedLayer{c, d} }

func (l *cachedLayer) Digest() (v1.Hash, error) { return l.d.Digest, nil }
func (l *cachedLayer) DiffID() (v1.Hash, error) { return l.d.DiffID, nil }
func (l *cachedLayer) Size() (int64, error)     { return l.d.Size, nil }
func (l *cachedLayer) MediaType() (types.MediaType, error) {
	return l.d.MediaType, nil
}
func (l *cachedLayer) Compressed() (io.ReadCloser, error) { return os.Open(l.c.BlobPath(l.d.Digest)) }
func (l *cachedLayer) Uncompressed() (io.ReadCloser, error) {
	return l.c.OpenLayer(l.d)
}

// imageFromLayers is an OCI image of the given layers.
func imageFromLayers(ls []v1.Layer, plat string) (v1.Image, error) {
	img := mutate.MediaType(empty.Image, types.OCIManifestSchema1)
	img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
	img, err := Append(img, ls, nil)
	if err != nil {
		return nil, err
	}
	pl, err := platform(plat)
	if err != nil {
		return nil, err
	}
	return EditConfig(img, func(cf *v1.ConfigFile) {
		cf.OS, cf.Architecture, cf.Variant = pl.OS, pl.Architecture, pl.Variant
	})
}

// Append returns img with ls on top, each under its own media type and,
// when history is not nil, with history(i) as the i-th one's history.
func Append(img v1.Image, ls []v1.Layer, history func(i int) v1.History) (v1.Image, error) {
	adds := make([]mutate.Addendum, 0, len(ls))
	for i, l := range ls {
		mt, err := l.MediaType()
		if err != nil {
			return nil, err
		}
		add := mutate.Addendum{Layer: l, MediaType: mt}
		if history != nil {
			add.History = history(i)
		}
		adds = append(adds, add)
	}
	return mutate.Append(img, adds...)
}

// EditConfig returns img with its config file changed by edit, which gets
// a copy of it.
func EditConfig(img v1.Image, edit func(*v1.ConfigFile)) (v1.Image, error) {
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cf = cf.DeepCopy()
	edit(cf)
	return mutate.ConfigFile(img, cf)
}
