package debtest

import (
	"archive/tar"
	"context"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/layerimg/layerimg/layers"
	"github.com/layerimg/layerimg/recipes"
)

// FakeBuild leaves in the cache at dir what a build of recipe name from bs
// leaves, without mmdebstrap: the base's entry under its key (mirror state
// read from the mirrors now), holding status as /var/lib/dpkg/status, and
// the record plan and outdated read (<cache>/records/NAME@linux-amd64.json, as layerimg.RecordName names it). Each of
// steps is a run step's layer holding its own status file on top.
func FakeBuild(t testing.TB, dir, name string, bs recipes.Bootstrap, status []byte, steps map[string][]byte) {
	t.Helper()
	in, _, err := layers.BootstrapKey(context.Background(), bs, layers.BaseOptions{Platform: "linux/amd64", Compression: layers.Gzip})
	if err != nil {
		t.Fatal(err)
	}
	c, err := layers.OpenCache(dir, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	store := func(in layers.KeyInput, status []byte) {
		desc, err := c.WriteLayer(layers.Gzip, func(w io.Writer) error {
			tw := tar.NewWriter(w)
			for _, d := range []string{"var/", "var/lib/", "var/lib/dpkg/"} {
				tw.WriteHeader(&tar.Header{Name: d, Typeflag: tar.TypeDir, Mode: 0o755})
			}
			tw.WriteHeader(&tar.Header{Name: "var/lib/dpkg/status", Typeflag: tar.TypeReg, Mode: 0o644, Size: int64(len(status))})
			tw.Write(status)
			return tw.Close()
		})
		if err != nil {
			t.Fatal(err)
		}
		if err := c.Store(layers.Entry{Key: in.Key(), Step: "fake", Input: in, Layer: desc, Created: time.Now()}); err != nil {
			t.Fatal(err)
		}
	}
	store(in, status)
	rec := map[string]layers.KeyInput{"bootstrap": in}
	for step, st := range steps {
		sin := layers.KeyInput{Parent: in.Key(), Kind: "run", Spec: step, Platform: in.Platform, Compression: in.Compression}
		store(sin, st)
		rec[step] = sin
	}
	data, _ := json.Marshal(rec)
	if err := os.WriteFile(filepath.Join(c.Dir(), "records", name+"@linux-amd64.json"), data, 0o644); err != nil {
		t.Fatal(err)
	}
}
