package disktest

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

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

// Case is a raw disk for a format writer's test: Size bytes with 4 KiB of
// seeded data at each of Offs (see MakeRaw).
type Case struct {
	Name string
	Size int64
	Offs []int64
}

const mib = 1 << 20

// SparseCases are the raw disks every sparse format's writer converts (the
// smallest disk, one with no data, data between holes, 2 TiB of almost
// only hole), followed by more, the format's own boundaries.
func SparseCases(more ...Case) []Case {
	return append([]Case{
		{"one sector", 512, []int64{0}},
		{"all zero", 64 * mib, nil},
		{"holes", 100 * mib, []int64{0, 5 * mib, 33*mib + 7, 99 * mib}},
		{"2 TiB sparse", 2 << 40, []int64{0, 1 << 40, 2<<40 - 4096}},
	}, more...)
}

// ConvertCase makes c's raw disk and converts it through w to a file named
// name in a temporary directory, failing the test on an error. It returns
// both paths.
func ConvertCase(t testing.TB, c Case, w Writer, name string) (raw, out string) {
	t.Helper()
	raw = MakeRaw(t, c.Size, c.Offs...)
	out = filepath.Join(t.TempDir(), name)
	if err := Convert(context.Background(), raw, out, w); err != nil {
		t.Fatal(err)
	}
	return raw, out
}

// CheckDataExtents checks through qemu-img map that out holds n extents of
// data: how a disk too large to compare byte by byte is checked.
func CheckDataExtents(t testing.TB, out string, n int) {
	t.Helper()
	m := QemuImg(t, "map", "--output=json", out)
	if got := strings.Count(m, `"data": true`); got != n {
		t.Errorf("%d data extents, want %d:\n%s", got, n, m)
	}
}
