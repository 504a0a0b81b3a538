package layers

import (
	"bytes"
	"crypto/sha256"
	"encoding/gob"
	"os"
	"path/filepath"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// The content of a few entries of a layer (the files an SBOM reads: dpkg's
// status, copyright files), kept by diff_id in <cache>/contents so that
// the next SBOM of an image holding the layer does not decompress it
// again. The file is the sha256 of the rest, then the gob of a map from
// entry index to content: a damaged file is read as missing.

func (c *Cache) contentsPath(diffID v1.Hash) string {
	return filepath.Join(c.dir, "contents", diffID.Hex)
}

// Contents returns the entries' contents kept for the layer diffID.
func (c *Cache) Contents(diffID v1.Hash) (map[int][]byte, bool) {
	if diffID.Algorithm != "sha256" || len(diffID.Hex) != 64 {
		return nil, false
	}
	data, err := os.ReadFile(c.contentsPath(diffID))
	if err != nil || len(data) < sha256.Size {
		return nil, false
	}
	if sum := sha256.Sum256(data[sha256.Size:]); !bytes.Equal(sum[:], data[:sha256.Size]) {
		return nil, false
	}
	var m map[int][]byte
	if err := gob.NewDecoder(bytes.NewReader(data[sha256.Size:])).Decode(&m); err != nil {
		return nil, false
	}
	return m, true
}

// PutContents keeps the entries' contents of the layer diffID, with those
// kept before. Like headers, they only spare a decompression: a failure
// is a warning.
func (c *Cache) PutContents(diffID v1.Hash, m map[int][]byte) error {
	if diffID.Algorithm != "sha256" || len(diffID.Hex) != 64 {
		return nil
	}
	all, _ := c.Contents(diffID)
	if all == nil {
		all = map[int][]byte{}
	}
	for k, v := range m {
		all[k] = v
	}
	var buf bytes.Buffer
	buf.Write(make([]byte, sha256.Size))
	err := gob.NewEncoder(&buf).Encode(all)
	if err == nil {
		data := buf.Bytes()
		sum := sha256.Sum256(data[sha256.Size:])
		copy(data, sum[:])
		err = c.writeFile(c.contentsPath(diffID), data)
	}
	if err != nil {
		c.log.Warn("could not keep a layer's file contents; the next SBOM will read the layer again", "diff_id", diffID.String(), "err", err)
	}
	return nil
}
