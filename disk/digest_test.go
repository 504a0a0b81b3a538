package disk

import (
	"context"
	"crypto/sha256"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// A raw disk and the fixed VHD made of it are one disk, and get one digest:
// the sha256 of the raw bytes. Another format is another file.
func TestContentDigest(t *testing.T) {
	dir := t.TempDir()
	raw := filepath.Join(dir, "disk.raw")
	f, err := os.Create(raw)
	if err != nil {
		t.Fatal(err)
	}
	f.Truncate(8 << 20) // a hole, then data, then a hole
	f.WriteAt([]byte("data in the middle of the disk"), 3<<20)
	f.Close()
	data, _ := os.ReadFile(raw)
	want := fmt.Sprintf("sha256:%x", sha256.Sum256(data))

	ids, err := RawIDs(raw)
	if err != nil {
		t.Fatal(err)
	}
	got := map[Format]string{}
	for _, fm := range []Format{Raw, VHD, QCOW2} {
		p := raw
		if fm != Raw {
			p = filepath.Join(dir, "disk."+fm.Ext())
			if err := Convert(context.Background(), raw, p, fm, ids, time.Unix(0, 0)); err != nil {
				t.Fatal(err)
			}
		}
		if got[fm], err = ContentDigest(p); err != nil {
			t.Fatal(err)
		}
	}
	if got[Raw] != want || got[VHD] != want {
		t.Errorf("raw %s, vhd %s, want both %s", got[Raw], got[VHD], want)
	}
	if got[QCOW2] == want {
		t.Errorf("the qcow2 file got the raw disk's digest")
	}
}
