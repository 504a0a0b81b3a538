package layerimg

import (
	"archive/tar"
	"bytes"
	"context"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"

	"github.com/layerimg/layerimg/layers"
)

// TestRootfsTarStreams: --rootfs-tar is the layers' final tree with each
// header as the layers have it (owners, devices, times after the epoch),
// whiteouts applied, made by any user.
func TestRootfsTarStreams(t *testing.T) {
	late := time.Unix(2000000000, 0)
	mk := func(hs ...*tar.Header) []byte {
		var buf bytes.Buffer
		tw := tar.NewWriter(&buf)
		for _, h := range hs {
			h.Format = tar.FormatPAX
			if h.ModTime.IsZero() {
				h.ModTime = late
			}
			if err := tw.WriteHeader(h); err != nil {
				t.Fatal(err)
			}
			tw.Write(bytes.Repeat([]byte("x"), int(h.Size)))
		}
		tw.Close()
		return buf.Bytes()
	}
	img := empty.Image
	for _, data := range [][]byte{
		mk(&tar.Header{Name: "etc/", Typeflag: tar.TypeDir, Mode: 0o755},
			&tar.Header{Name: "etc/shadow", Typeflag: tar.TypeReg, Mode: 0o640, Gid: 42, Size: 3},
			&tar.Header{Name: "dev/null", Typeflag: tar.TypeChar, Mode: 0o666, Devmajor: 1, Devminor: 3},
			&tar.Header{Name: "gone", Typeflag: tar.TypeReg, Size: 1}),
		mk(&tar.Header{Name: ".wh.gone", Typeflag: tar.TypeReg},
			&tar.Header{Name: "home/u/f", Typeflag: tar.TypeReg, Mode: 0o600, Uid: 1000, Gid: 1000, Size: 2}),
	} {
		l, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(data)), nil })
		if err != nil {
			t.Fatal(err)
		}
		if img, err = mutate.AppendLayers(img, l); err != nil {
			t.Fatal(err)
		}
	}
	c, err := layers.OpenCache(t.TempDir(), false, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	// Twice: the second time from the headers the cache kept.
	file := filepath.Join(t.TempDir(), "out", "rootfs.tar")
	var tars [2][]byte
	for i := range tars {
		if err := writeRootfsTar(context.Background(), img, file, c); err != nil {
			t.Fatal(err)
		}
		tars[i], _ = os.ReadFile(file)
	}
	if !bytes.Equal(tars[0], tars[1]) {
		t.Error("the rootfs tar from cached headers differs")
	}
	if kept, _ := filepath.Glob(filepath.Join(c.Dir(), "headers", "*")); len(kept) != 2 {
		t.Errorf("headers kept for %d layers, want 2", len(kept))
	}
	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	got := map[string]*tar.Header{}
	tr := tar.NewReader(f)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		got[h.Name] = h
	}
	if len(got) != 4 || got["gone"] != nil {
		t.Errorf("entries %v", got)
	}
	if h := got["etc/shadow"]; h == nil || h.Gid != 42 || h.Mode != 0o640 || !h.ModTime.Equal(late) {
		t.Errorf("etc/shadow: %+v", h)
	}
	if h := got["dev/null"]; h == nil || h.Typeflag != tar.TypeChar || h.Devmajor != 1 || h.Devminor != 3 {
		t.Errorf("dev/null: %+v", h)
	}
	if h := got["home/u/f"]; h == nil || h.Uid != 1000 || h.Size != 2 {
		t.Errorf("home/u/f: %+v", h)
	}
}
