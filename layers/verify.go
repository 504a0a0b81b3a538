package layers

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/partial"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/klauspost/compress/zstd"
	"github.com/klauspost/pgzip"
)

// BaseLayerError is a base layer that could not be read as its image
// describes it. Layer names the base and the layer, as "base REF: layer N
// DIGEST".
type BaseLayerError struct {
	Layer string
	Err   error
}

func (e *BaseLayerError) Error() string { return e.Layer + ": " + e.Err.Error() }
func (e *BaseLayerError) Unwrap() error { return e.Err }

// DigestMismatch is content whose digest is not the one the manifest (for a
// blob) or the config (for a diff_id) says.
type DigestMismatch struct {
	What      string // "content" or "uncompressed content"
	Got, Want v1.Hash
	By        string // "the manifest says", "the config's diff_id is"
}

func (e *DigestMismatch) Error() string {
	return fmt.Sprintf("%s has digest %s, %s %s", e.What, e.Got, e.By, e.Want)
}

// verifiedImage is a base image whose layers check every byte they hand
// out against its manifest and config. ggcr checks a remote blob against its
// digest, but a layout's or an archive's blobs are read as they are, and no
// source checks an uncompressed layer against the config's diff_id: the
// DiffID of a layout layer is even computed from the very content it should
// vouch for.
type verifiedImage struct {
	v1.Image
	layers []v1.Layer
}

// verifyBase wraps img, a base named ref, so that its layers verify what
// they read. viaBlob says whether a layer's tar is to be decompressed from
// its verified blob (a layout or a registry, where the blob is what is
// stored), or read from the source's own Uncompressed (a docker archive,
// whose blobs ggcr derives from the stored tars).
func verifyBase(ref string, img v1.Image, viaBlob bool) (v1.Image, error) {
	m, err := img.Manifest()
	if err != nil {
		return nil, fmt.Errorf("base %s: manifest: %w", ref, err)
	}
	raw, err := img.RawConfigFile()
	if err != nil {
		return nil, fmt.Errorf("base %s: config: %w", ref, err)
	}
	if got := sha256Of(raw); got != m.Config.Digest {
		return nil, fmt.Errorf("base %s: config: %w", ref, &DigestMismatch{"content", got, m.Config.Digest, "the manifest says"})
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, fmt.Errorf("base %s: config: %w", ref, err)
	}
	ls, err := img.Layers()
	if err != nil {
		return nil, fmt.Errorf("base %s: %w", ref, err)
	}
	if len(ls) != len(m.Layers) || len(ls) != len(cf.RootFS.DiffIDs) {
		return nil, fmt.Errorf("base %s: the manifest lists %d layers and the config %d diff_ids", ref, len(m.Layers), len(cf.RootFS.DiffIDs))
	}
	vi := &verifiedImage{Image: img}
	for i, l := range ls {
		d := m.Layers[i].Digest
		vl := &verifiedLayer{
			inner: l, name: fmt.Sprintf("base %s: layer %d %s", ref, i+1, d),
			digest: d, diffID: cf.RootFS.DiffIDs[i], viaBlob: viaBlob,
		}
		var out v1.Layer = vl
		// Keep what lets remote.Write mount a blob instead of copying it.
		if ml, ok := l.(*remote.MountableLayer); ok {
			out = &remote.MountableLayer{Layer: vl, Reference: ml.Reference}
		}
		vi.layers = append(vi.layers, out)
	}
	return vi, nil
}

func (i *verifiedImage) Layers() ([]v1.Layer, error) { return i.layers, nil }

func (i *verifiedImage) LayerByDigest(h v1.Hash) (v1.Layer, error) {
	for _, l := range i.layers {
		if d, _ := l.Digest(); d == h {
			return l, nil
		}
	}
	return i.Image.LayerByDigest(h) // the config blob
}

func (i *verifiedImage) LayerByDiffID(h v1.Hash) (v1.Layer, error) {
	for _, l := range i.layers {
		if d, _ := l.DiffID(); d == h {
			return l, nil
		}
	}
	return nil, fmt.Errorf("no layer with diff_id %s", h)
}

// verifiedLayer is one layer of a verifiedImage. Its digest and diff_id are
// the manifest's and the config's, never computed from its content, and its
// readers fail at EOF when the content does not match them.
type verifiedLayer struct {
	inner          v1.Layer
	name           string
	digest, diffID v1.Hash
	viaBlob        bool
}

func (l *verifiedLayer) Digest() (v1.Hash, error)            { return l.digest, nil }
func (l *verifiedLayer) DiffID() (v1.Hash, error)            { return l.diffID, nil }
func (l *verifiedLayer) Size() (int64, error)                { return l.inner.Size() }
func (l *verifiedLayer) MediaType() (types.MediaType, error) { return l.inner.MediaType() }

// Descriptor keeps the manifest's descriptor (annotations, URLs) for
// writers that copy the image.
func (l *verifiedLayer) Descriptor() (*v1.Descriptor, error) { return partial.Descriptor(l.inner) }

// Exists lets writers skip a blob the target already holds, as the inner
// layer would.
func (l *verifiedLayer) Exists() (bool, error) { return partial.Exists(l.inner) }

func (l *verifiedLayer) Compressed() (io.ReadCloser, error) {
	rc, err := l.inner.Compressed()
	if err != nil {
		return nil, &BaseLayerError{l.name, err}
	}
	return newVerifyReader(rc, rc, l.name, l.digest, "content", "the manifest says"), nil
}

func (l *verifiedLayer) Uncompressed() (io.ReadCloser, error) {
	if !l.viaBlob {
		rc, err := l.inner.Uncompressed()
		if err != nil {
			return nil, &BaseLayerError{l.name, err}
		}
		return newVerifyReader(rc, rc, l.name, l.diffID, "uncompressed content", "the config's diff_id is"), nil
	}
	blob, err := l.Compressed()
	if err != nil {
		return nil, err
	}
	tr, err := decompressSniffed(blob)
	if err != nil {
		blob.Close()
		return nil, &BaseLayerError{l.name, fmt.Errorf("decompressing: %w", err)}
	}
	return newVerifyReader(tr, closers{tr, blob}, l.name, l.diffID, "uncompressed content", "the config's diff_id is"), nil
}

// decompressSniffed decompresses by the stream's magic number rather than
// its media type, as ggcr does: layers marked gzip are sometimes plain tars.
func decompressSniffed(r io.Reader) (io.ReadCloser, error) {
	br := bufio.NewReader(r)
	magic, err := br.Peek(4)
	if err != nil && !errors.Is(err, io.EOF) {
		return nil, err
	}
	switch {
	case bytes.HasPrefix(magic, []byte{0x1f, 0x8b}):
		return pgzip.NewReader(br)
	case bytes.HasPrefix(magic, []byte{0x28, 0xb5, 0x2f, 0xfd}):
		d, err := zstd.NewReader(br)
		if err != nil {
			return nil, err
		}
		return d.IOReadCloser(), nil
	}
	return io.NopCloser(br), nil
}

type closers []io.Closer

func (cs closers) Close() error {
	var err error
	for _, c := range cs {
		if e := c.Close(); err == nil {
			err = e
		}
	}
	return err
}

// verifyReader hashes what it reads and, at EOF, fails unless the digest is
// want. Read errors are given the layer's name.
type verifyReader struct {
	r       io.Reader
	c       io.Closer
	h       hash.Hash
	name    string
	want    v1.Hash
	what    string
	by      string
	stopped error // what every later Read returns
}

func newVerifyReader(r io.Reader, c io.Closer, name string, want v1.Hash, what, by string) *verifyReader {
	return &verifyReader{r: r, c: c, h: sha256.New(), name: name, want: want, what: what, by: by}
}

func (v *verifyReader) Read(p []byte) (int, error) {
	if v.stopped != nil {
		return 0, v.stopped
	}
	n, err := v.r.Read(p)
	v.h.Write(p[:n])
	switch {
	case err == io.EOF:
		got := v1.Hash{Algorithm: "sha256", Hex: hex.EncodeToString(v.h.Sum(nil))}
		if v.want.Algorithm != "sha256" {
			v.stopped = &BaseLayerError{v.name, fmt.Errorf("digest %s: only sha256 is supported", v.want)}
		} else if got != v.want {
			v.stopped = &BaseLayerError{v.name, &DigestMismatch{v.what, got, v.want, v.by}}
		} else {
			v.stopped = io.EOF
		}
	case err != nil:
		var named *BaseLayerError
		if errors.As(err, &named) {
			v.stopped = err // an inner reader already named the layer
		} else {
			v.stopped = &BaseLayerError{v.name, err}
		}
	}
	if v.stopped != nil {
		return n, v.stopped
	}
	return n, nil
}

func (v *verifyReader) Close() error { return v.c.Close() }

func sha256Of(b []byte) v1.Hash {
	sum := sha256.Sum256(b)
	return v1.Hash{Algorithm: "sha256", Hex: hex.EncodeToString(sum[:])}
}
