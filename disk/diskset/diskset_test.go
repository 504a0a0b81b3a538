package diskset

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/klauspost/compress/zstd"

	"github.com/layerimg/layerimg/layers"
)

func openCache(t *testing.T) *Cache {
	t.Helper()
	lc, err := layers.OpenCache(t.TempDir(), false, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { lc.Close() })
	c, err := Open(lc, nil)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// putRaw caches a sparse raw disk under key and returns its bytes.
func putRaw(t *testing.T, c *Cache, key string) []byte {
	t.Helper()
	dir, err := c.Scratch()
	if err != nil {
		t.Fatal(err)
	}
	f, _ := os.Create(filepath.Join(dir, FileName("raw")))
	f.Truncate(4 << 20)
	f.WriteAt([]byte("GPT here"), 512)
	f.Close()
	if _, err := c.Put(key, dir, "none", []string{"raw"}); err != nil {
		t.Fatal(err)
	}
	data, _ := os.ReadFile(filepath.Join(c.Dir(key), FileName("raw")))
	return data
}

// A set handed out by hardlink and then written to is not reused.
func TestLookupNoticesWritesThroughLinks(t *testing.T) {
	c := openCache(t)
	putRaw(t, c, "sha256:aa")
	set, ok := c.Lookup(context.Background(), "sha256:aa", []string{"raw"})
	if !ok {
		t.Fatal("set not found")
	}
	if _, ok := c.Lookup(context.Background(), "sha256:aa", []string{"raw", "vhd"}); ok {
		t.Error("found a format the set lacks")
	}
	out := t.TempDir()
	files, err := set.HandOut(out, []string{"raw"}, true)
	if err != nil || files["raw"].SHA256 == "" || files["raw"].Path != filepath.Join(out, "disk.raw") {
		t.Fatalf("hand-out: %+v, %v", files, err)
	}
	f, _ := os.OpenFile(files["raw"].Path, os.O_WRONLY, 0)
	f.WriteAt([]byte("user data"), 1<<20)
	f.Close()
	if _, ok := c.Lookup(context.Background(), "sha256:aa", []string{"raw"}); ok {
		t.Error("a set written to through a link was reused")
	}
}

// Pack compresses what decompressSparse restores byte for byte.
func TestPackRoundTrip(t *testing.T) {
	c := openCache(t)
	want := putRaw(t, c, "sha256:bb")
	set, _ := c.Lookup(context.Background(), "sha256:bb", []string{"raw"})
	p, err := set.Pack("sha256:bb")
	if err != nil {
		t.Fatal(err)
	}
	if p.Disk.Files["raw"].FileSize != int64(len(want)) || len(p.Blobs) != 1 || p.Titles[0] != "disk.raw.zst" {
		t.Fatalf("packed %+v", p)
	}
	zr, err := p.Blobs[0].Compressed()
	if err != nil {
		t.Fatal(err)
	}
	defer zr.Close()
	out, _ := os.Create(filepath.Join(t.TempDir(), "back"))
	defer out.Close()
	if err := decompressSparse(zr, out, int64(len(want))); err != nil {
		t.Fatal(err)
	}
	got, _ := os.ReadFile(out.Name())
	if !bytes.Equal(got, want) {
		t.Fatal("unpacked disk differs")
	}
	var exp layers.CacheExport
	if err := p.AddTo(&exp); err != nil || len(exp.Extra[Section]) == 0 || len(exp.Blobs) != 1 {
		t.Fatalf("AddTo: %+v, %v", exp, err)
	}
}

// A blob that unpacks to more than the cache index says is refused as soon
// as it passes that size, not after it has filled the disk.
func TestDecompressStopsAtIndexSize(t *testing.T) {
	var zbuf bytes.Buffer
	zw, err := zstd.NewWriter(&zbuf)
	if err != nil {
		t.Fatal(err)
	}
	zw.Write(bytes.Repeat([]byte("x"), 8<<20))
	zw.Close()
	out, _ := os.Create(filepath.Join(t.TempDir(), "big"))
	defer out.Close()
	err = decompressSparse(&zbuf, out, 1<<20)
	if err == nil || !strings.Contains(err.Error(), "more than the 1048576 bytes") {
		t.Fatalf("err = %v", err)
	}
	if fi, _ := out.Stat(); fi.Size() > 1<<20 {
		t.Errorf("wrote %d bytes past the limit", fi.Size())
	}
}
