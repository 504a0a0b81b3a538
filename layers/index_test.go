package layers

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
)

// The index's extra sections must marshal to the bytes the format had when
// disks were a field of it (docs/cache.md), so that old and new builds
// share registry caches.
func TestCacheIndexExtraKeepsTheWireFormat(t *testing.T) {
	disks := json.RawMessage(`[{"key":"sha256:k","boot":"none","files":{"raw":{"digest":"sha256:d","size":1,"file_size":2,"mediaType":"m<&>"}}}]`)
	old := struct {
		Version int             `json:"version"`
		Entries []Entry         `json:"entries"`
		Disks   json.RawMessage `json:"disks,omitempty"`
	}{1, []Entry{{Key: "sha256:a", Step: "s"}}, disks}
	want, err := json.Marshal(old)
	if err != nil {
		t.Fatal(err)
	}
	got, err := json.Marshal(CacheIndex{Version: 1, Entries: old.Entries, Extra: map[string]json.RawMessage{"disks": disks}})
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("index\n got %s\nwant %s", got, want)
	}
	old.Disks = nil
	want, _ = json.Marshal(old)
	if got, _ = json.Marshal(CacheIndex{Version: 1, Entries: old.Entries}); !bytes.Equal(got, want) {
		t.Fatalf("index without extras\n got %s\nwant %s", got, want)
	}

	var back CacheIndex
	if err := json.Unmarshal([]byte(`{"version":1,"entries":[{"key":"sha256:a"}],"disks":[1]}`), &back); err != nil {
		t.Fatal(err)
	}
	if back.Version != 1 || len(back.Entries) != 1 || string(back.Extra["disks"]) != "[1]" || len(back.Extra) != 1 {
		t.Fatalf("read back %+v", back)
	}
}

// A keyed folder's subfolders live as long as the entry of their key.
func TestKeyedDirPrunedWithItsEntry(t *testing.T) {
	c, err := OpenCache(t.TempDir(), true, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	dir, err := c.KeyedDir("things")
	if err != nil {
		t.Fatal(err)
	}
	c.Store(Entry{Key: "sha256:aa"})
	for _, k := range []string{"aa", "bb"} {
		os.MkdirAll(filepath.Join(dir, k), 0o755)
		os.WriteFile(filepath.Join(dir, k, "f"), []byte("x"), 0o644)
	}
	if _, _, err := c.Prune(7, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "aa")); err != nil {
		t.Errorf("kept entry's folder removed: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "bb")); err == nil {
		t.Error("orphan folder kept")
	}
	if _, ok := c.Usage()["things"]; !ok {
		t.Error("Usage leaves out the keyed folder")
	}
}
