package disk

import (
	"fmt"
	"os"

	"github.com/layerimg/layerimg/disk/format"
	"github.com/layerimg/layerimg/disk/sparse"
)

// vhdFooter is the size of a fixed VHD's footer, the only thing it adds to
// the raw disk.
const vhdFooter = 512

// ContentDigest names a disk by what it holds, whichever file carries it:
// "sha256:" and the hash of its bytes as a raw disk. A fixed VHD is the raw
// disk plus a footer, so the footer is left out and the two files get one
// digest; other formats are hashed as they are (layerimg writes them
// reproducibly). Cloud resources are tagged with it, so that a disk
// published once, by `build --publish` or by `publish`, is found again.
func ContentDigest(path string) (string, error) {
	f, err := format.Sniff(path)
	if err != nil {
		return "", fmt.Errorf("naming %s: %w", path, err)
	}
	n := int64(-1)
	if f == format.VHD {
		fi, err := os.Stat(path)
		if err != nil {
			return "", fmt.Errorf("naming %s: %w", path, err)
		}
		n = fi.Size() - vhdFooter
	}
	hex, err := sparse.DigestPrefix(path, n)
	if err != nil {
		return "", fmt.Errorf("naming %s: %w", path, err)
	}
	return "sha256:" + hex, nil
}
