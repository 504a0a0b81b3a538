package layers

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"hash"
	"io"
	"os"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/klauspost/compress/zstd"
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

// CompressFile writes src zstd-compressed to dst: a sparse disk of a few GiB
// becomes about the size of its data.
func CompressFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.Create(dst)
	if err != nil {
		return err
	}
	enc, err := zstd.NewWriter(out, zstd.WithEncoderConcurrency(4), zstd.WithEncoderLevel(zstd.SpeedFastest))
	if err != nil {
		out.Close()
		return err
	}
	_, err = io.Copy(enc, in)
	if cerr := enc.Close(); err == nil {
		err = cerr
	}
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	return err
}

// DecompressSparse unpacks a zstd stream into dst, leaving runs of zeros as
// holes.
func DecompressSparse(r io.Reader, dst *os.File) error {
	d, err := zstd.NewReader(r)
	if err != nil {
		return err
	}
	defer d.Close()
	buf := make([]byte, 1<<20)
	var off int64
	for {
		n, err := io.ReadFull(d, buf)
		if n > 0 {
			for b := 0; b < n; b += 64 << 10 {
				blk := buf[b:min(b+(64<<10), n)]
				if !allZero(blk) {
					if _, werr := dst.WriteAt(blk, off+int64(b)); werr != nil {
						return werr
					}
				}
			}
			off += int64(n)
		}
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return dst.Truncate(off)
		}
		if err != nil {
			return err
		}
	}
}

func allZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}
