package layerimg

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func TestParsePlatforms(t *testing.T) {
	got, err := ParsePlatforms("linux/amd64, linux/arm64")
	if err != nil || !slices.Equal(got, []string{"linux/amd64", "linux/arm64"}) {
		t.Errorf("got %v, %v", got, err)
	}
	for _, bad := range []string{"linux/amd64,linux/amd64", "windows/amd64", "linux/amd64,", "amd64"} {
		if _, err := ParsePlatforms(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

// With several platforms, what would collide is split per platform.
func TestForPlatform(t *testing.T) {
	o := Options{DiskDir: "out", OCILayout: "img", RootfsTar: "out/rootfs.tar", Manifest: "build.json",
		SBOM: "sbom.spdx.json", Provenance: "out/prov.json", CacheTo: "reg.example/cache:main", CacheFrom: []string{"reg.example:5000/cache", "reg.example/cache:main"}}
	p, err := o.forPlatform("linux/arm64")
	if err != nil {
		t.Fatal(err)
	}
	want := Options{DiskDir: "out/linux-arm64", OCILayout: "img/linux-arm64", RootfsTar: "out/rootfs-linux-arm64.tar", Manifest: "build-linux-arm64.json",
		SBOM: "sbom.spdx-linux-arm64.json", Provenance: "out/prov-linux-arm64.json", CacheTo: "reg.example/cache:main-linux-arm64", CacheFrom: []string{"reg.example:5000/cache:latest-linux-arm64", "reg.example/cache:main-linux-arm64"}}
	if p.DiskDir != want.DiskDir || p.OCILayout != want.OCILayout || p.RootfsTar != want.RootfsTar || p.Manifest != want.Manifest ||
		p.SBOM != want.SBOM || p.Provenance != want.Provenance || p.CacheTo != want.CacheTo || !slices.Equal(p.CacheFrom, want.CacheFrom) {
		t.Errorf("got  %+v\nwant %+v", p, want)
	}
	if o.CacheFrom[0] != "reg.example:5000/cache" {
		t.Error("forPlatform changed the caller's --cache-from")
	}
	if _, err := (Options{CacheTo: "reg.example/cache@sha256:" + strings.Repeat("0", 64)}).forPlatform("linux/arm64"); err == nil {
		t.Error("a digest --cache-to was split")
	}
}

// A recipe declaring TARGETARCH gets each platform's architecture, unless
// --arg sets it; --platform overrides the recipe's platform.
func TestLoadRecipeTargetArch(t *testing.T) {
	path := filepath.Join(t.TempDir(), "recipe.yaml")
	os.WriteFile(path, []byte("name: x\nplatform: linux/amd64\nargs: {TARGETARCH: none}\nfrom: scratch\nsteps:\n  - copy: {src: \"bin-${TARGETARCH}\", dst: /bin}\n"), 0o644)
	for _, tc := range []struct {
		platform string
		args     map[string]string
		want     string
	}{
		{"", nil, "bin-amd64"},
		{"linux/arm64", nil, "bin-arm64"},
		{"linux/arm64", map[string]string{"TARGETARCH": "x"}, "bin-x"},
	} {
		r, err := LoadRecipe(path, tc.args, tc.platform)
		if err != nil {
			t.Fatal(err)
		}
		if got := r.Steps[0].Copy[0].Src; got != tc.want {
			t.Errorf("platform %q args %v: src %s, want %s", tc.platform, tc.args, got, tc.want)
		}
		if tc.platform != "" && r.Platform != tc.platform {
			t.Errorf("platform %s, want %s", r.Platform, tc.platform)
		}
	}
}
