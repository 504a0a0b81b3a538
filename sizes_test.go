package layerimg_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/layerimg/layerimg"
	"github.com/layerimg/layerimg/recipes"
)

// Plan, the manifest and Sizes give each step's sizes and file count, and
// Sizes its largest files, from the cache alone; a step not cached is
// reported as such. Copy steps on a scratch base: no root needed.
func TestSizes(t *testing.T) {
	dir := t.TempDir()
	write := func(p string, n int) {
		os.MkdirAll(filepath.Dir(filepath.Join(dir, p)), 0o755)
		if err := os.WriteFile(filepath.Join(dir, p), []byte(strings.Repeat("x", n)), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("small/a.txt", 10)
	write("small/b.txt", 20)
	write("big/huge.bin", 300000)
	write("big/mid.bin", 5000)
	write("big/tiny.bin", 1)
	write("late.txt", 7)
	recipe := "name: sizes\nfrom: scratch\nsteps:\n" +
		"  - name: small\n    copy: {src: small, dst: /small}\n" +
		"  - name: big\n    copy: {src: big, dst: /opt/big}\n" +
		"  - name: late\n    copy: {src: late.txt, dst: /late.txt}\n"
	path := filepath.Join(dir, "recipe.yaml")
	os.WriteFile(path, []byte(recipe), 0o644)
	r, err := recipes.Load(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	o := layerimg.Options{CacheDir: t.TempDir()}
	res, err := layerimg.Build(ctx, r, o)
	if err != nil {
		t.Fatal(err)
	}
	big := res.Steps[1]
	if big.Uncompressed != 305001 || big.Files < 4 || big.Size <= 0 || big.Size >= big.Uncompressed {
		t.Errorf("manifest's big step: %d bytes uncompressed, %d compressed, %d files", big.Uncompressed, big.Size, big.Files)
	}

	// A changed file: the last step misses, the others are still read.
	write("late.txt", 8)
	plan, err := layerimg.Plan(ctx, r, o)
	if err != nil {
		t.Fatal(err)
	}
	if plan[1].Uncompressed != 305001 || plan[1].Files != big.Files || plan[2].Status != layerimg.Miss || plan[2].Files != 0 {
		t.Errorf("plan: %+v", plan)
	}
	sizes, err := layerimg.Sizes(ctx, r, o, 2)
	if err != nil {
		t.Fatal(err)
	}
	if len(sizes) != 3 {
		t.Fatalf("%d steps sized, want 3", len(sizes))
	}
	got := sizes[1]
	if len(got.Largest) != 2 || got.Largest[0].Path != "/opt/big/huge.bin" || got.Largest[0].Size != 300000 ||
		got.Largest[1].Path != "/opt/big/mid.bin" || got.Uncompressed != 305001 || got.Size != big.Size {
		t.Errorf("big step's sizes: %+v", got)
	}
	if sizes[0].Largest[0].Path != "/small/b.txt" || sizes[0].Note != "" {
		t.Errorf("small step's sizes: %+v", sizes[0])
	}
	if sizes[2].Note == "" || len(sizes[2].Largest) != 0 {
		t.Errorf("an uncached step has sizes: %+v", sizes[2])
	}
	if _, err := layerimg.Sizes(ctx, r, o, 0); err == nil {
		t.Error("--top 0 was accepted")
	}
}
