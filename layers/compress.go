// Package layers turns a recipe's base and steps into OCI layers: it resolves
// bases, executes steps, computes cache keys, and keeps the local layer cache.
package layers

import (
	"crypto/sha256"
	"fmt"
	"hash"
	"io"
	"runtime"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/klauspost/compress/zstd"
	"github.com/klauspost/pgzip"
)

// Compression names a layer compression.
type Compression string

const (
	Gzip Compression = "gzip"
	Zstd Compression = "zstd"
)

// ParseCompression checks a --compression value.
func ParseCompression(s string) (Compression, error) {
	switch Compression(s) {
	case "", Gzip:
		return Gzip, nil
	case Zstd:
		return Zstd, nil
	}
	return "", fmt.Errorf("unknown compression %q (gzip or zstd)", s)
}

// MediaType is the OCI layer media type for c.
func (c Compression) MediaType() types.MediaType {
	if c == Zstd {
		return types.OCILayerZStd
	}
	return types.OCILayer
}

// Descriptor identifies one stored layer blob.
type Descriptor struct {
	Digest    v1.Hash         `json:"digest"`
	DiffID    v1.Hash         `json:"diffID"`
	Size      int64           `json:"size"`
	MediaType types.MediaType `json:"mediaType"`
}

// layerWriter compresses a tar stream on all cores and hashes both sides.
// The output depends only on the input and the compression: block sizes and
// levels are fixed, and no header field carries a name or a time.
type layerWriter struct {
	raw, comp hash.Hash
	size      countWriter
	enc       io.WriteCloser
	uncomp    io.Writer
	media     types.MediaType
}

func newLayerWriter(w io.Writer, c Compression) (*layerWriter, error) {
	lw := &layerWriter{raw: sha256.New(), comp: sha256.New(), media: c.MediaType()}
	lw.size.w = io.MultiWriter(w, lw.comp)
	switch c {
	case Zstd:
		// A fixed concurrency, not the core count: the output must not depend
		// on the machine.
		enc, err := zstd.NewWriter(&lw.size, zstd.WithEncoderConcurrency(4), zstd.WithEncoderLevel(zstd.SpeedDefault))
		if err != nil {
			return nil, err
		}
		lw.enc = enc
	default:
		enc, err := pgzip.NewWriterLevel(&lw.size, pgzip.DefaultCompression)
		if err != nil {
			return nil, err
		}
		// 1 MiB blocks, as many in flight as there are cores.
		if err := enc.SetConcurrency(1<<20, 2*runtime.GOMAXPROCS(0)); err != nil {
			return nil, err
		}
		lw.enc = enc
	}
	lw.uncomp = io.MultiWriter(lw.enc, lw.raw)
	return lw, nil
}

func (lw *layerWriter) Write(p []byte) (int, error) { return lw.uncomp.Write(p) }

// Close flushes the compressor and returns the layer's descriptor.
func (lw *layerWriter) Close() (Descriptor, error) {
	if err := lw.enc.Close(); err != nil {
		return Descriptor{}, err
	}
	return Descriptor{
		Digest:    v1.Hash{Algorithm: "sha256", Hex: fmt.Sprintf("%x", lw.comp.Sum(nil))},
		DiffID:    v1.Hash{Algorithm: "sha256", Hex: fmt.Sprintf("%x", lw.raw.Sum(nil))},
		Size:      lw.size.n,
		MediaType: lw.media,
	}, nil
}

type countWriter struct {
	w io.Writer
	n int64
}

func (c *countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

// decompress opens the uncompressed tar of a layer blob.
func decompress(r io.Reader, mt types.MediaType) (io.ReadCloser, error) {
	switch mt {
	case types.OCILayerZStd:
		d, err := zstd.NewReader(r)
		if err != nil {
			return nil, err
		}
		return d.IOReadCloser(), nil
	case types.OCILayer, types.DockerLayer:
		return pgzip.NewReader(r)
	case types.OCIUncompressedLayer, types.DockerUncompressedLayer:
		return io.NopCloser(r), nil
	}
	return nil, fmt.Errorf("unsupported layer media type %s", mt)
}
