package layers

import (
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// A rootfs tar rewritten after it was named (same size, other bytes) is
// caught when read again: its bytes must not reach a disk under the old
// name.
func TestTarFileLayerCatchesARewrite(t *testing.T) {
	p := filepath.Join(t.TempDir(), "rootfs.tar")
	os.WriteFile(p, []byte(strings.Repeat("a", 4096)), 0o644)
	l, err := TarFileLayer(p)
	if err != nil {
		t.Fatal(err)
	}
	rc, err := l.Uncompressed()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(io.Discard, rc); err != nil {
		t.Fatalf("the unchanged tar: %v", err)
	}
	rc.Close()
	os.WriteFile(p, []byte(strings.Repeat("b", 4096)), 0o644)
	rc, err = l.Uncompressed()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	if _, err := io.Copy(io.Discard, rc); err == nil || !strings.Contains(err.Error(), p) {
		t.Errorf("the rewritten tar: %v", err)
	}
}
