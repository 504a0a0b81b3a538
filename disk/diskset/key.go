package diskset

import (
	"github.com/layerimg/layerimg/layers"
)

// formatVersion changes whenever the bytes a disk step writes change for
// the same input, so cached disks are never reused wrongly.
const formatVersion = 2 // 2: xattrs in the inode in canonical order

// spec is what the disk stage's cache key covers. Its JSON is part of the
// key: field names and order must not change.
type spec struct {
	Version int    `json:"v"`
	Disk    any    `json:"disk"`
	Image   string `json:"image"`
	Epoch   int64  `json:"epoch"`
}

// Key is the disk stage's key input for the image with content digest
// image and the recipe's disk section (any value whose JSON is the
// section). The same key names the generated layer's cache entry and the
// disk set.
func Key(image string, section any, epoch int64, compression layers.Compression) layers.KeyInput {
	return layers.KeyInput{
		Kind: "disk", Parent: image,
		Spec:        spec{Version: formatVersion, Disk: section, Image: image, Epoch: epoch},
		Compression: compression, Epoch: epoch,
	}
}
