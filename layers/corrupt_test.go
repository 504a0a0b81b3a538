package layers

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// warnings collects what a cache logs at warn level.
type warnings struct{ bytes.Buffer }

func (w *warnings) logger() *slog.Logger {
	return slog.New(slog.NewTextHandler(&w.Buffer, &slog.HandlerOptions{Level: slog.LevelWarn}))
}

func storedEntry(t *testing.T, c *Cache, key, body string) Entry {
	t.Helper()
	d, err := c.WriteLayer(Gzip, func(w io.Writer) error { _, err := w.Write(tarFile(t, "etc/", "", "etc/x", body)); return err })
	if err != nil {
		t.Fatal(err)
	}
	e := Entry{Key: key, Step: "s", Input: KeyInput{Kind: "run", Spec: map[string]any{"run": body}}, Layer: d}
	if err := c.Store(e); err != nil {
		t.Fatal(err)
	}
	return e
}

// editKey rewrites one field of a key file as a hand or a bad disk might.
func editKey(t *testing.T, c *Cache, key string, edit func(m map[string]any)) {
	t.Helper()
	data, _ := os.ReadFile(c.keyPath(key))
	var m map[string]any
	if err := json.Unmarshal(data, &m); err != nil {
		t.Fatal(err)
	}
	edit(m)
	data, _ = json.MarshalIndent(m, "", "  ")
	os.WriteFile(c.keyPath(key), data, 0o644)
}

// Every way a key file can lie is noticed on lookup, named in a warning,
// and the entry dropped; a clean entry is used as it is.
func TestCacheKeyFileCorruption(t *testing.T) {
	flipHex := func(h string) string {
		b := []byte(h)
		if b[len(b)-1] == '0' {
			b[len(b)-1] = '1'
		} else {
			b[len(b)-1] = '0'
		}
		return string(b)
	}
	cases := map[string]func(t *testing.T, c *Cache, e Entry){
		"diffID": func(t *testing.T, c *Cache, e Entry) {
			editKey(t, c, e.Key, func(m map[string]any) {
				l := m["layer"].(map[string]any)
				l["diffID"] = flipHex(l["diffID"].(string))
			})
		},
		"size": func(t *testing.T, c *Cache, e Entry) {
			editKey(t, c, e.Key, func(m map[string]any) { m["layer"].(map[string]any)["size"] = float64(e.Layer.Size + 1) })
		},
		"size with checksum redone": func(t *testing.T, c *Cache, e Entry) {
			e.Layer.Size--
			c.Store(e)
		},
		"step name": func(t *testing.T, c *Cache, e Entry) {
			editKey(t, c, e.Key, func(m map[string]any) { m["step"] = "other" })
		},
		"truncated": func(t *testing.T, c *Cache, e Entry) {
			fi, _ := os.Stat(c.keyPath(e.Key))
			os.Truncate(c.keyPath(e.Key), fi.Size()/2)
		},
		"byte flipped": func(t *testing.T, c *Cache, e Entry) {
			data, _ := os.ReadFile(c.keyPath(e.Key))
			i := bytes.Index(data, []byte(`"digest"`)) + 20 // inside the blob digest
			data[i] ^= 1
			os.WriteFile(c.keyPath(e.Key), data, 0o644)
		},
		"blob byte flipped": func(t *testing.T, c *Cache, e Entry) {
			f, _ := os.OpenFile(c.BlobPath(e.Layer.Digest), os.O_RDWR, 0)
			f.WriteAt([]byte{0xff}, 20)
			f.Close()
		},
		"blob truncated": func(t *testing.T, c *Cache, e Entry) {
			os.Truncate(c.BlobPath(e.Layer.Digest), e.Layer.Size-3)
		},
	}
	for name, corrupt := range cases {
		t.Run(name, func(t *testing.T) {
			var w warnings
			c, err := OpenCache(t.TempDir(), false, w.logger())
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			e := storedEntry(t, c, "sha256:0123", "hello")
			if got, _ := c.Lookup(e.Key); got == nil || got.Layer != e.Layer {
				t.Fatalf("clean lookup = %+v", got)
			}
			if n, bad, err := c.Verify(context.Background(), false); err != nil || len(bad) != 0 || n != 1 {
				t.Fatalf("clean verify: %d, %v, %v", n, bad, err)
			}
			corrupt(t, c, e)
			n, bad, err := c.Verify(context.Background(), false)
			if err != nil || len(bad) == 0 || !strings.HasPrefix(bad[0].Item, "keys/") && !strings.HasPrefix(bad[0].Item, "blobs/") {
				t.Fatalf("verify: %d, %v, %v", n, bad, err)
			}
			t.Logf("verify: %v", bad)
			if got, _ := c.Lookup(e.Key); got != nil {
				t.Fatalf("a corrupt entry was used: %+v", got)
			}
			if !strings.Contains(w.String(), "keys/0123.json") {
				t.Errorf("the warning does not name the key file: %s", w.String())
			}
			if _, bad, _ := c.Verify(context.Background(), true); len(bad) != 0 {
				t.Errorf("after the lookup dropped it, verify still finds %v", bad)
			}
			// The step is remade into the same layer, and found again.
			again := storedEntry(t, c, e.Key, "hello")
			if again.Layer != e.Layer {
				t.Errorf("remade layer %+v, was %+v", again.Layer, e.Layer)
			}
			if got, _ := c.Lookup(e.Key); got == nil {
				t.Error("the remade entry is not found")
			}
		})
	}
}

// A key file rewritten with a wrong diff_id and a checksum to match (no
// accident makes one) passes a lookup, which does not decompress the
// layer; but reading the layer fails, and verify catches it.
func TestCacheKeyFileRewrittenDiffID(t *testing.T) {
	c := openCache(t)
	e := storedEntry(t, c, "sha256:0789", "hello")
	want := e.Layer.DiffID
	e.Layer.DiffID.Hex = strings.Repeat("0", 64)
	c.Store(e)
	_, bad, err := c.Verify(context.Background(), false)
	if err != nil || len(bad) != 1 || !strings.Contains(bad[0].Why, "diff_id") {
		t.Fatalf("verify: %v, %v", bad, err)
	}
	got, _ := c.Lookup(e.Key)
	if got == nil {
		t.Fatal("lookup dropped it")
	}
	rc, err := c.OpenLayer(got.Layer)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	if _, err := io.Copy(io.Discard, rc); err == nil || !strings.Contains(err.Error(), want.String()) {
		t.Errorf("reading the layer: %v", err)
	}
}

// A key file written before entries had checksums is checked through its
// layer and given a checksum; its content stays what it was.
func TestCacheLegacyKeyFileUpgraded(t *testing.T) {
	c := openCache(t)
	e := storedEntry(t, c, "sha256:0456", "legacy")
	editKey(t, c, e.Key, func(m map[string]any) { delete(m, "sum") })
	got, err := c.Lookup(e.Key)
	if err != nil || got == nil || got.Layer != e.Layer {
		t.Fatalf("legacy lookup = %+v, %v", got, err)
	}
	data, _ := os.ReadFile(c.keyPath(e.Key))
	if !bytes.Contains(data, []byte(`"sum": "sha256:`)) {
		t.Errorf("no checksum added: %s", data)
	}
	editKey(t, c, e.Key, func(m map[string]any) { delete(m, "sum"); m["layer"].(map[string]any)["size"] = float64(1) })
	if got, _ := c.Lookup(e.Key); got != nil {
		t.Error("a legacy key file with a wrong size was used")
	}
}

// A changed file in an unpacked tree is noticed before the tree is used:
// the tree is extracted again, and verify reports it.
func TestCacheUnpackedTreeCorruption(t *testing.T) {
	for _, how := range []string{"byte flipped", "truncated", "file added", "mode changed", "digest lost"} {
		t.Run(how, func(t *testing.T) {
			var w warnings
			c, err := OpenCache(t.TempDir(), false, w.logger())
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			tr := tarFile(t, "etc/", "", "etc/x", "clean content")
			diffID := sha256Of(tr)
			open := func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(tr)), nil }
			dir, err := c.Unpacked(context.Background(), diffID, "test layer", open)
			if err != nil {
				t.Fatal(err)
			}
			p := filepath.Join(dir, "etc/x")
			fi, _ := os.Stat(p)
			switch how {
			case "byte flipped":
				f, _ := os.OpenFile(p, os.O_RDWR, 0)
				f.WriteAt([]byte("C"), 0)
				f.Close()
				os.Chtimes(p, fi.ModTime(), fi.ModTime())
			case "truncated":
				os.Truncate(p, 3)
				os.Chtimes(p, fi.ModTime(), fi.ModTime())
			case "file added":
				os.WriteFile(filepath.Join(dir, "etc/y"), []byte("poison"), 0o644)
			case "mode changed":
				os.Chmod(p, 0o4755)
			case "digest lost":
				os.Remove(treeSumPath(dir))
			}
			_, bad, err := c.Verify(context.Background(), false)
			if err != nil || len(bad) != 1 || bad[0].Item != "unpacked/"+diffID.Hex {
				t.Fatalf("verify: %v, %v", bad, err)
			}
			t.Logf("verify: %v", bad)
			again, err := c.Unpacked(context.Background(), diffID, "test layer", open)
			if err != nil || again != dir {
				t.Fatalf("unpack again: %s, %v", again, err)
			}
			if how != "digest lost" && !strings.Contains(w.String(), "unpacked/"+diffID.Hex) { // a lost digest is only an info
				t.Errorf("the warning does not name the tree: %s", w.String())
			}
			if got, _ := os.ReadFile(p); string(got) != "clean content" {
				t.Errorf("the tree still holds %q", got)
			}
			if _, err := os.Stat(filepath.Join(dir, "etc/y")); err == nil {
				t.Error("the added file is still there")
			}
			if _, bad, _ := c.Verify(context.Background(), false); len(bad) != 0 {
				t.Errorf("verify after the re-extraction: %v", bad)
			}
		})
	}
}

// verify --repair leaves a cache that verifies clean, keeping what is sound.
func TestCacheVerifyRepair(t *testing.T) {
	c := openCache(t)
	good := storedEntry(t, c, "sha256:0aaa", "good")
	bad := storedEntry(t, c, "sha256:0bbb", "bad")
	f, _ := os.OpenFile(c.BlobPath(bad.Layer.Digest), os.O_RDWR, 0)
	f.WriteAt([]byte{0xff}, bad.Layer.Size-1)
	f.Close()
	stray := v1.Hash{Algorithm: "sha256", Hex: strings.Repeat("ab", 32)}
	os.WriteFile(c.BlobPath(stray), []byte("not that"), 0o644)
	_, probs, err := c.Verify(context.Background(), true)
	if err != nil || len(probs) != 2 {
		t.Fatalf("verify --repair: %v, %v", probs, err)
	}
	if _, probs, _ := c.Verify(context.Background(), false); len(probs) != 0 {
		t.Errorf("after repair: %v", probs)
	}
	if e, _ := c.Lookup(good.Key); e == nil {
		t.Error("repair dropped a sound entry")
	}
	if e, _ := c.Lookup(bad.Key); e != nil {
		t.Error("repair kept a bad entry")
	}
}

// A build's temp blobs live in its scratch dir: when it dies, the next
// user of the cache removes them at once (their lock is free), not after
// an hour.
func TestCacheTempBlobsGoWithTheirBuild(t *testing.T) {
	dir := t.TempDir()
	c, err := OpenCache(dir, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	var tmpName string
	c.WriteLayer(Gzip, func(w io.Writer) error {
		ms, _ := filepath.Glob(filepath.Join(c.TempDir(), ".tmp-*"))
		if len(ms) == 1 {
			tmpName = ms[0]
		}
		return io.ErrUnexpectedEOF // dies half way
	})
	if tmpName == "" {
		t.Fatal("the temp blob is not in the build's scratch dir")
	}
	if ms, _ := filepath.Glob(filepath.Join(dir, "blobs", "sha256", ".tmp-*")); len(ms) != 0 {
		t.Errorf("temp files beside the blobs: %v", ms)
	}
	// Simulate a SIGKILL: the temp file stays, the lock is released.
	os.WriteFile(filepath.Join(c.TempDir(), ".tmp-left"), []byte("half a blob"), 0o644)
	scratch := c.TempDir()
	c.tmpL.Close()
	c.lock.Close()
	other, err := OpenCache(dir, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	if _, err := os.Stat(scratch); err == nil {
		t.Error("a dead build's scratch dir and temp blobs were kept")
	}
}
