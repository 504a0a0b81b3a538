package e2e_test

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/layerimg/layerimg"
	"github.com/layerimg/layerimg/recipes"
)

// fixtures holds the slow builds that several tests share: each is made
// once per `go test` run, on first use, in a folder removed when the
// package's tests end. A failed build fails every test that asks for it.
type fixtures struct {
	dir   string
	mu    sync.Mutex
	built map[string]*sharedBuild
}

// sharedBuild is one finished build: its result, the options it ran with
// (cache, disk folder, OCI layout, manifest) and its console output.
type sharedBuild struct {
	Res     *layerimg.Result
	Opts    layerimg.Options
	Console string
	Took    time.Duration
	err     error
	once    sync.Once
}

// shared is set by TestMain; tests reach the fixtures through its methods.
var shared = &fixtures{built: map[string]*sharedBuild{}}

// build returns the shared build called name, loading its recipe and
// running layerimg.Build with opts(dir) on first use. Callers must not change
// what they get back: other tests read the same files.
func (f *fixtures) build(t *testing.T, name string, load func() (*recipes.Recipe, error), opts func(dir string) layerimg.Options) *sharedBuild {
	t.Helper()
	f.mu.Lock()
	b, ok := f.built[name]
	if !ok {
		b = &sharedBuild{}
		f.built[name] = b
	}
	f.mu.Unlock()
	b.once.Do(func() {
		dir := filepath.Join(f.dir, name)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			b.err = err
			return
		}
		r, err := load()
		if err != nil {
			b.err = err
			return
		}
		o := opts(dir)
		var console bytes.Buffer
		o.Output = &console
		began := time.Now()
		b.Res, b.err = layerimg.Build(context.Background(), r, o)
		b.Took = time.Since(began)
		b.Opts, b.Console = o, console.String()
	})
	if b.err != nil {
		t.Fatalf("shared build %s: %v\nconsole:\n%s", name, b.err, tail(b.Console))
	}
	return b
}

// debianCloud is recipes/examples/debian-cloud.yaml built as root into all
// four formats, with an OCI layout and a manifest: several minutes, so one
// build serves every test that needs a real bootable Debian image.
func debianCloud(t *testing.T) *sharedBuild {
	t.Helper()
	needRoot(t)
	if testing.Short() {
		t.Skip("-short: skipping the bootable Debian build")
	}
	return shared.build(t, "debian-cloud", func() (*recipes.Recipe, error) {
		return recipes.Load("../recipes/examples/debian-cloud.yaml", nil)
	}, func(dir string) layerimg.Options {
		return layerimg.Options{CacheDir: filepath.Join(dir, "cache"), DiskDir: filepath.Join(dir, "out"),
			OCILayout: filepath.Join(dir, "out", "image"), Manifest: filepath.Join(dir, "out", "build.json"), DiskDigests: true,
			SBOM: filepath.Join(dir, "out", "sbom.spdx.json")}
	})
}
