package disktest

import (
	"context"
	"os"
	"path/filepath"
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
	in, err := os.Open(raw)
	if err != nil {
		return err
	}
	defer in.Close()
	fi, err := in.Stat()
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(out), "."+filepath.Base(out)+".tmp-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if err := w.Write(ctx, tmp, in, fi.Size()); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), out)
}
