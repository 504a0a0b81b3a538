package diskset

import (
	"context"
	"crypto/rand"
	"os"
	"path/filepath"
	"testing"
)

// syntheticDisk is a sparse 4 GiB disk holding about 400 MB of data in
// 100 extents of 4 MiB spread over it, as a small installed system is.
func syntheticDisk(b *testing.B) string {
	b.Helper()
	p := filepath.Join(b.TempDir(), "disk.raw")
	f, err := os.Create(p)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	f.Truncate(4 << 30)
	buf := make([]byte, 4<<20)
	for i := range int64(100) {
		rand.Read(buf)
		if _, err := f.WriteAt(buf, i*(40<<20)); err != nil {
			b.Fatal(err)
		}
	}
	return p
}

// BenchmarkContentDigest is what checking a cached disk adds to a fully
// cached build -o (page cache warm, as right after a build).
func BenchmarkContentDigest(b *testing.B) {
	p := syntheticDisk(b)
	b.SetBytes(400 << 20)
	b.ResetTimer()
	for range b.N {
		if _, err := ContentDigest(context.Background(), p); err != nil {
			b.Fatal(err)
		}
	}
}
