package layerimg_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
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

// BenchmarkPlan10000 plans a recipe of 10,000 steps: copy, env (each
// setting a new variable) and run steps in turn. Planning time grows
// linearly with the number of steps; before, it grew with its square.
func BenchmarkPlan10000(b *testing.B) {
	dir := b.TempDir()
	os.WriteFile(filepath.Join(dir, "f.txt"), []byte("hi\n"), 0o644)
	var sb strings.Builder
	sb.WriteString("name: big\nfrom: scratch\nsteps:\n")
	for i := range 10000 {
		switch i % 3 {
		case 0:
			fmt.Fprintf(&sb, "  - copy: {src: f.txt, dst: /f%d.txt}\n", i)
		case 1:
			fmt.Fprintf(&sb, "  - env: {V%d: \"%d\"}\n", i, i)
		case 2:
			fmt.Fprintf(&sb, "  - run: echo %d\n", i)
		}
	}
	path := filepath.Join(dir, "recipe.yaml")
	os.WriteFile(path, []byte(sb.String()), 0o644)
	cache := b.TempDir()
	b.ResetTimer()
	for range b.N {
		r, err := recipes.Load(path, nil)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := layerimg.Plan(context.Background(), r, layerimg.Options{CacheDir: cache}); err != nil {
			b.Fatal(err)
		}
	}
}
