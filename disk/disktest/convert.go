package disktest

import (
	"context"
	"os"

	"github.com/layerimg/layerimg/disk/sparse"
)

// Writer is a format writer's shape (disk/format.Writer), repeated here so
// that the writers' own tests can use Convert without importing the
// registry that imports them.
type Writer interface {
	Write(ctx context.Context, dst, src *os.File, size int64) error
}

// Convert writes raw through w to out the way disk/format.Convert does: into
// a temporary file beside out, renamed only on success.
func Convert(ctx context.Context, raw, out string, w Writer) error {
	return sparse.WriteAtomicFrom(out, raw, func(dst, src *os.File, size int64) error {
		return w.Write(ctx, dst, src, size)
	})
}
