package e2e_test

import (
	"bytes"
	"context"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/layerimg/layerimg"
	"github.com/layerimg/layerimg/internal/tartest"
	"github.com/layerimg/layerimg/recipes"
)

// TestDebianExample builds recipes/examples/debian-minimal.yaml for real:
// mmdebstrap against the Debian mirror, apt-get inside the sandbox, tests in
// the finished rootfs. It is the slowest test (about a minute).
func TestDebianExample(t *testing.T) {
	needRoot(t)
	if testing.Short() {
		t.Skip("-short: skipping the real Debian bootstrap")
	}
	r, err := recipes.Load("../recipes/examples/debian-minimal.yaml", nil)
	if err != nil {
		t.Fatal(err)
	}
	out := t.TempDir()
	o := layerimg.Options{CacheDir: t.TempDir(), OCILayout: filepath.Join(out, "image"), RootfsTar: filepath.Join(out, "rootfs.tar"), Manifest: filepath.Join(out, "build.json")}
	res, err := layerimg.Build(context.Background(), r, o)
	if err != nil {
		t.Fatal(err)
	}
	if res.Executed != 4 || res.Base.Key == "" {
		t.Errorf("executed %d, base %+v", res.Executed, res.Base)
	}
	data, err := os.ReadFile(o.RootfsTar)
	if err != nil {
		t.Fatal(err)
	}
	entries := tartest.Summary(t, io.NopCloser(bytes.NewReader(data)))
	for _, want := range []string{"etc/motd f 0644 Built by layerimg.\n", "etc/greeting f 0644 hello from layerimg\n", "usr/bin/less f", "etc/debian_version f"} {
		found := false
		for _, e := range entries {
			found = found || strings.HasPrefix(e, want)
		}
		if !found {
			t.Errorf("rootfs lacks %q", want)
		}
	}
	for _, e := range entries {
		if strings.HasPrefix(e, "var/lib/apt/lists/deb.debian.org") {
			t.Errorf("apt lists left in the image: %s", e)
		}
	}
	manifest, _ := os.ReadFile(o.Manifest)
	if !strings.Contains(string(manifest), res.Image) || !strings.Contains(string(manifest), `"status": "MISS"`) {
		t.Errorf("manifest: %s", manifest)
	}
	// Nothing changed: nothing runs, and the image is the same.
	o.OCILayout, o.RootfsTar = "", ""
	res2, err := layerimg.Build(context.Background(), r, o)
	if err != nil {
		t.Fatal(err)
	}
	if res2.Executed != 0 || res2.Image != res.Image {
		t.Errorf("rebuild executed %d, image %s vs %s", res2.Executed, res2.Image, res.Image)
	}
}
