package layers

import (
	"crypto/sha256"
	"fmt"
	"io"
	"os"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// TarFileLayer is a rootfs tar used as an uncompressed layer, as the OCI
// spec allows: its digest is the file's sha256. (ggcr's tarball layers name
// an uncompressed file by its gzip, which costs seconds per 100 MB.)
func TarFileLayer(path string) (v1.Layer, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, f)
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", path, err)
	}
	return &tarFileLayer{path: path, size: n, digest: v1.Hash{Algorithm: "sha256", Hex: fmt.Sprintf("%x", h.Sum(nil))}}, nil
}

type tarFileLayer struct {
	path   string
	size   int64
	digest v1.Hash
}

func (l *tarFileLayer) Digest() (v1.Hash, error)             { return l.digest, nil }
func (l *tarFileLayer) DiffID() (v1.Hash, error)             { return l.digest, nil }
func (l *tarFileLayer) Size() (int64, error)                 { return l.size, nil }
func (l *tarFileLayer) MediaType() (types.MediaType, error)  { return types.OCIUncompressedLayer, nil }
func (l *tarFileLayer) Compressed() (io.ReadCloser, error)   { return l.open() }
func (l *tarFileLayer) Uncompressed() (io.ReadCloser, error) { return l.open() }

// open reads the file again, checked against the digest of the first
// read at its end: the disk's ids and cache key came from that digest, so
// a tar rewritten meanwhile must not reach the disk under it.
func (l *tarFileLayer) open() (io.ReadCloser, error) {
	f, err := os.Open(l.path)
	if err != nil {
		return nil, err
	}
	if fi, err := f.Stat(); err != nil || fi.Size() != l.size {
		f.Close()
		return nil, fmt.Errorf("%s changed while it was read", l.path)
	}
	return newVerifyReader(f, f, "rootfs tar "+l.path, l.digest, "content", "it had when first read, its digest"), nil
}
