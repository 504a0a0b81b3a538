package layers

import (
	"crypto/sha256"
	"encoding/hex"
	"hash"
	"io"
	"os"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

type hashWriter struct {
	w io.Writer
	h hash.Hash
}

func newHashWriter(w io.Writer) *hashWriter { return &hashWriter{w, sha256.New()} }

func (h *hashWriter) Write(p []byte) (int, error) {
	n, err := h.w.Write(p)
	h.h.Write(p[:n])
	return n, err
}

func (h *hashWriter) Digest() v1.Hash {
	return v1.Hash{Algorithm: "sha256", Hex: hex.EncodeToString(h.h.Sum(nil))}
}

// FileBlob is a file pushed as an opaque blob of the given media type.
type FileBlob struct {
	Path   string
	Hash   v1.Hash
	Length int64
	Type   types.MediaType
}

// NewFileBlob digests path.
func NewFileBlob(path string, mt types.MediaType) (*FileBlob, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	h, n, err := v1.SHA256(f)
	if err != nil {
		return nil, err
	}
	return &FileBlob{path, h, n, mt}, nil
}

func (b *FileBlob) Digest() (v1.Hash, error)             { return b.Hash, nil }
func (b *FileBlob) DiffID() (v1.Hash, error)             { return b.Hash, nil }
func (b *FileBlob) Size() (int64, error)                 { return b.Length, nil }
func (b *FileBlob) MediaType() (types.MediaType, error)  { return b.Type, nil }
func (b *FileBlob) Compressed() (io.ReadCloser, error)   { return os.Open(b.Path) }
func (b *FileBlob) Uncompressed() (io.ReadCloser, error) { return os.Open(b.Path) }
