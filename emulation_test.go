package layerimg_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/layerimg/layerimg"
	"github.com/layerimg/layerimg/recipes"
	"github.com/layerimg/layerimg/rootfs"
)

// A run step for an architecture this host cannot run fails before it
// runs, with the emulation check's own words; the copy step before it
// was built and cached as usual.
func TestEmulationCheckedBeforeRunStep(t *testing.T) {
	const platform = "linux/s390x"
	want := rootfs.CheckEmulation("/", runtime.GOARCH, platform)
	if want == nil {
		t.Skipf("this host runs %s binaries (binfmt_misc has a handler): nothing to refuse", platform)
	}
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "hello.txt"), []byte("hi\n"), 0o644)
	path := filepath.Join(dir, "recipe.yaml")
	os.WriteFile(path, []byte("name: foreign\nplatform: "+platform+"\nfrom: scratch\nsteps:\n  - name: file\n    copy: {src: hello.txt, dst: /hello.txt}\n  - name: script\n    run: echo ran > /ran\n"), 0o644)
	r, err := recipes.Load(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	_, err = layerimg.Build(context.Background(), r, layerimg.Options{CacheDir: t.TempDir()})
	if err == nil || !strings.Contains(err.Error(), want.Error()) || !strings.Contains(err.Error(), "script") {
		t.Fatalf("err = %v, want the step named and %q", err, want)
	}
	var pe *os.PathError
	if errors.As(err, &pe) {
		t.Errorf("the step got as far as the filesystem: %v", err)
	}
}
