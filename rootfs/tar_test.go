package rootfs

import (
	"archive/tar"
	"bytes"
	"context"
	"io"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"
)

// A stage tar (RootOwned) takes neither the host's owners nor its xattrs.
func TestRootOwnedTarTakesNothingOfTheHost(t *testing.T) {
	dir := t.TempDir()
	f := filepath.Join(dir, "fstab")
	if err := os.WriteFile(f, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := unix.Lsetxattr(f, "user.host-label", []byte("leak"), 0); err != nil {
		t.Skipf("this filesystem takes no user xattrs: %v", err)
	}
	os.Lchown(f, 1234, 1234)
	var buf bytes.Buffer
	if err := WriteTar(context.Background(), &buf, dir, TarOptions{RootOwned: true}); err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(&buf)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if h.Uid != 0 || h.Gid != 0 || len(h.PAXRecords) > 0 && h.PAXRecords["SCHILY.xattr.user.host-label"] != "" {
			t.Errorf("%s: owner %d:%d, records %v", h.Name, h.Uid, h.Gid, h.PAXRecords)
		}
	}
}
