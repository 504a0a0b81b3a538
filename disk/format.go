package disk

import (
	"context"
	"time"

	"github.com/layerimg/layerimg/disk/format"
)

// Format is a disk file format. The type, its constants and the table of
// writers live in disk/format, which recipes and the CLI can import without
// this package's dependencies.
type Format = format.Format

// The formats layerimg writes.
const (
	Raw   = format.Raw
	VMDK  = format.VMDK
	VHD   = format.VHD
	QCOW2 = format.QCOW2
)

// Convert writes the raw disk at raw as format f at dst, recording the ids
// derived for the image and created as the creation time where the format
// keeps one (VHD). dst is renamed into place only when complete.
func Convert(ctx context.Context, raw, dst string, f Format, ids IDs, created time.Time) error {
	return format.Convert(ctx, raw, dst, f, format.Stamp{VHDID: ids.VHD, VMDKCID: ids.VMDKCID, Created: created})
}
