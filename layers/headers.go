package layers

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"encoding/gob"
	"fmt"
	"os"
	"path/filepath"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// A layer's tar headers, kept by diff_id in <cache>/headers, so that the
// disk stage indexes a layer without decompressing it again. The file is
// the sha256 of the rest, then the gob of the headers: a damaged file is
// read as missing and made again.

func (c *Cache) headersPath(diffID v1.Hash) string {
	return filepath.Join(c.dir, "headers", diffID.Hex)
}

// Headers returns the headers kept for the layer diffID, if any.
func (c *Cache) Headers(diffID v1.Hash) ([]*tar.Header, bool) {
	if diffID.Algorithm != "sha256" || len(diffID.Hex) != 64 {
		return nil, false
	}
	data, err := os.ReadFile(c.headersPath(diffID))
	if err != nil || len(data) < sha256.Size {
		return nil, false
	}
	if sum := sha256.Sum256(data[sha256.Size:]); !bytes.Equal(sum[:], data[:sha256.Size]) {
		c.log.Warn("the cached headers of a layer are damaged: reading the layer instead", "diff_id", diffID.String())
		return nil, false
	}
	var hdrs []*tar.Header
	if err := gob.NewDecoder(bytes.NewReader(data[sha256.Size:])).Decode(&hdrs); err != nil {
		return nil, false
	}
	return hdrs, true
}

// PutHeaders keeps the headers of the layer diffID. They only spare a
// later decompression, so a cache that cannot keep them (full, read-only)
// is told in a warning, not an error.
func (c *Cache) PutHeaders(diffID v1.Hash, hdrs []*tar.Header) error {
	if err := c.putHeaders(diffID, hdrs); err != nil {
		c.log.Warn("could not keep a layer's headers; the next disk will read the layer again", "diff_id", diffID.String(), "err", err)
	}
	return nil
}

func (c *Cache) putHeaders(diffID v1.Hash, hdrs []*tar.Header) error {
	if diffID.Algorithm != "sha256" || len(diffID.Hex) != 64 {
		return nil
	}
	var buf bytes.Buffer
	buf.Write(make([]byte, sha256.Size))
	if err := gob.NewEncoder(&buf).Encode(hdrs); err != nil {
		return fmt.Errorf("keeping the headers of layer %s: %w", diffID, err)
	}
	data := buf.Bytes()
	sum := sha256.Sum256(data[sha256.Size:])
	copy(data, sum[:])
	if err := c.writeFile(c.headersPath(diffID), data); err != nil {
		return fmt.Errorf("keeping the headers of layer %s: %w", diffID, err)
	}
	return nil
}
