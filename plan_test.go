package layerimg_test

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/tarball"

	"github.com/layerimg/layerimg"
	"github.com/layerimg/layerimg/recipes"
)

// Relative oci-layout: and docker-archive: paths are read from the recipe's
// folder, whatever the current directory.
func TestRelativeBasePaths(t *testing.T) {
	dir := t.TempDir()
	img, _ := random.Image(512, 1)
	p, err := layout.Write(filepath.Join(dir, "images/layout"), empty.Index)
	if err != nil {
		t.Fatal(err)
	}
	p.AppendImage(img)
	tag, _ := name.NewTag("example/img:1")
	if err := tarball.WriteToFile(filepath.Join(dir, "images/img.tar"), tag, img); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(dir, "hello.txt"), []byte("hello\n"), 0o644)
	t.Chdir(t.TempDir())
	for _, from := range []string{"oci-layout:images/layout", "docker-archive:images/img.tar", "docker-archive:./images/../images/img.tar"} {
		path := filepath.Join(dir, "recipe.yaml")
		os.WriteFile(path, []byte("name: rel\nfrom: "+from+"\nsteps:\n  - copy: {src: hello.txt, dst: /hello.txt}\n"), 0o644)
		r, err := recipes.Load(path, nil)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := layerimg.Plan(context.Background(), r, layerimg.Options{CacheDir: t.TempDir()}); err != nil {
			t.Errorf("from: %s: %v", from, err)
		}
	}
}
