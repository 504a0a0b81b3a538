package diskset

import (
	"bytes"
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/layerimg/layerimg/layers"
)

var allFormats = []string{"raw", "vmdk", "qcow2"}

// putSet caches a set of sparse files, one per format, under key.
func putSet(t *testing.T, c *Cache, key string) {
	t.Helper()
	dir, err := c.Scratch()
	if err != nil {
		t.Fatal(err)
	}
	for i, f := range allFormats {
		out, _ := os.Create(filepath.Join(dir, FileName(f)))
		out.Truncate(200 << 20) // data in several windows, holes between
		for _, off := range []int64{0, 512, 70 << 20, 150<<20 + 3} {
			out.WriteAt([]byte(strings.Repeat(f, 1000+i)), off)
		}
		out.Close()
	}
	if _, err := c.Put(key, dir, "none", allFormats); err != nil {
		t.Fatal(err)
	}
}

// keepTimes runs change on p and puts its mtime back, to the nanosecond:
// the stamp cannot see the change.
func keepTimes(t *testing.T, p string, change func()) {
	fi, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	change()
	if err := os.Chtimes(p, fi.ModTime(), fi.ModTime()); err != nil {
		t.Fatal(err)
	}
}

func flipByte(t *testing.T, p string, off int64) {
	f, err := os.OpenFile(p, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b := []byte{0}
	f.ReadAt(b, off)
	b[0] ^= 0x20
	f.WriteAt(b, off)
}

// A cached disk or meta.json that was changed in any way is caught before
// it is handed out, named in a warning, reported by Check and dropped by
// Check's repair.
func TestCorruptDiskSet(t *testing.T) {
	type corruption struct {
		file string // what is corrupted, and what the warning must name
		do   func(t *testing.T, p string)
	}
	cases := map[string]corruption{}
	for _, f := range allFormats {
		name := FileName(f)
		cases[f+" byte flipped, mtime kept"] = corruption{name, func(t *testing.T, p string) {
			keepTimes(t, p, func() { flipByte(t, p, 70<<20+100) })
		}}
		cases[f+" byte written into a hole, mtime kept"] = corruption{name, func(t *testing.T, p string) {
			keepTimes(t, p, func() { flipByte(t, p, 100<<20) })
		}}
		cases[f+" truncated, mtime kept"] = corruption{name, func(t *testing.T, p string) {
			keepTimes(t, p, func() { os.Truncate(p, 150<<20) })
		}}
		cases[f+" byte flipped, mtime changed"] = corruption{name, func(t *testing.T, p string) { flipByte(t, p, 600) }}
	}
	cases["meta.json byte flipped"] = corruption{"meta.json", func(t *testing.T, p string) {
		data, _ := os.ReadFile(p)
		i := bytes.Index(data, []byte(`"boot": "`)) + len(`"boot": "`)
		data[i] ^= 0x20
		keepTimes(t, p, func() { os.WriteFile(p, data, 0o644) })
	}}
	cases["meta.json truncated"] = corruption{"meta.json", func(t *testing.T, p string) {
		keepTimes(t, p, func() { os.Truncate(p, 40) })
	}}
	cases["meta.json content digest changed"] = corruption{"meta.json", func(t *testing.T, p string) {
		data, _ := os.ReadFile(p)
		i := bytes.Index(data, []byte(contentAlgo+":")) + len(contentAlgo) + 1
		data[i] ^= 1
		os.WriteFile(p, data, 0o644)
	}}
	for name, cc := range cases {
		t.Run(name, func(t *testing.T) {
			var logs bytes.Buffer
			lc, err := layers.OpenCache(t.TempDir(), false, nil)
			if err != nil {
				t.Fatal(err)
			}
			defer lc.Close()
			c, _ := Open(lc, slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelWarn})))
			ctx := context.Background()
			putSet(t, c, "sha256:cc")
			if _, ok := c.Lookup(ctx, "sha256:cc", allFormats); !ok {
				t.Fatal("clean set not found")
			}
			if n, bad, err := c.Check(ctx, false); n != 1 || len(bad) != 0 || err != nil {
				t.Fatalf("clean check: %d %v %v", n, bad, err)
			}
			cc.do(t, filepath.Join(c.Dir("sha256:cc"), cc.file))
			_, bad, err := c.Check(ctx, false)
			want := "disks/cc/" + cc.file
			if err != nil || len(bad) != 1 || bad[0].Item != want {
				t.Fatalf("check: %v, %v; want %s reported", bad, err, want)
			}
			t.Logf("check: %v", bad)
			if _, ok := c.Lookup(ctx, "sha256:cc", allFormats); ok {
				t.Fatal("a corrupt set was handed out")
			}
			if !strings.Contains(logs.String(), want) {
				t.Errorf("the warning does not name %s: %s", want, logs.String())
			}
			if _, bad, _ := c.Check(ctx, true); len(bad) != 0 {
				t.Errorf("after the lookup dropped it: %v", bad)
			}
			putSet(t, c, "sha256:cc")
			if _, ok := c.Lookup(ctx, "sha256:cc", allFormats); !ok {
				t.Error("the set made again is not found")
			}
		})
	}
}

// Check's repair drops bad sets, keeps sound ones, and leaves a clean cache.
func TestCheckRepair(t *testing.T) {
	c := openCache(t)
	ctx := context.Background()
	putSet(t, c, "sha256:aa")
	putSet(t, c, "sha256:bb")
	p := filepath.Join(c.Dir("sha256:bb"), FileName("vmdk"))
	keepTimes(t, p, func() { flipByte(t, p, 10) })
	os.MkdirAll(c.Dir("sha256:dd"), 0o755) // an unfinished set
	n, bad, err := c.Check(ctx, true)
	if n != 3 || len(bad) != 2 || err != nil {
		t.Fatalf("repair: %d %v %v", n, bad, err)
	}
	if _, bad, _ := c.Check(ctx, false); len(bad) != 0 {
		t.Errorf("after repair: %v", bad)
	}
	if _, ok := c.Lookup(ctx, "sha256:aa", allFormats); !ok {
		t.Error("repair dropped a sound set")
	}
}

// The content digest depends on the bytes only: a copy that allocates
// zeros has the same digest; any byte changed, or the size, changes it.
func TestContentDigestIgnoresLayout(t *testing.T) {
	dir := t.TempDir()
	a, b := filepath.Join(dir, "a"), filepath.Join(dir, "b")
	fa, _ := os.Create(a)
	fa.Truncate(10 << 20)
	fa.WriteAt([]byte("data"), 5<<20)
	fa.Close()
	full := make([]byte, 10<<20) // no holes at all
	copy(full[5<<20:], "data")
	os.WriteFile(b, full, 0o644)
	da, err := ContentDigest(context.Background(), a)
	if err != nil {
		t.Fatal(err)
	}
	if db, _ := ContentDigest(context.Background(), b); db != da {
		t.Errorf("sparse %s, allocated %s", da, db)
	}
	os.Truncate(b, 10<<20+1)
	if db, _ := ContentDigest(context.Background(), b); db == da {
		t.Error("a longer file has the same digest")
	}
}
