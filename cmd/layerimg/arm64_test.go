package main

import (
	"path/filepath"
	"testing"
)

// --platform and --arch: the usage errors, and a recipe validated for
// arm64 with TARGETARCH in its packages.
func TestPlatformFlags(t *testing.T) {
	good := writeRecipe(t, goodRecipe)
	multi := writeRecipe(t, "name: x\nfrom:\n  bootstrap:\n    distro: debian\n    suite: bookworm\n    packages:\n      - linux-image-cloud-${TARGETARCH}\n")
	disk := filepath.Join(t.TempDir(), "disk.raw")
	cliCases(t, []cliCase{
		{"bad platform", []string{"validate", "--platform", "linux/sparc", good}, 2, `--platform "linux/sparc" is not a linux platform`, ""},
		{"arg for a built-in", []string{"validate", "--arg", "TARGETARCH=arm64", multi}, 1, "--arg TARGETARCH: it is built in", ""},
		{"arm64 recipe", []string{"validate", "--platform", "linux/arm64", multi}, 0, "", "ok"},
		{"platform for disk", []string{"disk", "--platform", "linux/arm64", "x.tar"}, 2, "--platform: layerimg disk makes the disk for the architecture the image's config names", ""},
		{"bad arch", []string{"boot", "--arch", "sparc", disk}, 2, `--arch "sparc": expected one of amd64, arm64`, ""},
	})
}
