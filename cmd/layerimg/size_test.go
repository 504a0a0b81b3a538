package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// `layerimg size` reads the cached layers: before a build it says the
// step is not cached; after, it lists the step's largest file. `plan`
// shows the sizes in its columns, and `build --sbom` writes an SPDX file
// recorded in the manifest.
func TestSizeCommand(t *testing.T) {
	recipe := writeRecipe(t, goodRecipe)
	cache := t.TempDir()
	out, stderr, code := cli(t, "size", "--cache-dir", cache, recipe)
	if code != 0 || !strings.Contains(out, "not cached") {
		t.Fatalf("size before a build: exit %d, %s%s", code, out, stderr)
	}
	sbom := filepath.Join(t.TempDir(), "sbom.json")
	manifest := filepath.Join(t.TempDir(), "build.json")
	if _, stderr, code := cli(t, "build", "--cache-dir", cache, "--sbom", sbom, "--manifest", manifest, recipe); code != 0 {
		t.Fatalf("build: exit %d: %s", code, stderr)
	}
	out, stderr, code = cli(t, "size", "--cache-dir", cache, "--top", "1", recipe)
	if code != 0 || !regexp.MustCompile(`(?m)^\s+6 B\s+/hello.txt$`).MatchString(out) {
		t.Errorf("size after the build: exit %d:\n%s%s", code, out, stderr)
	}
	out, _, _ = cli(t, "plan", "--cache-dir", cache, recipe)
	if !regexp.MustCompile(`(?m)^1\s+\S+\s+copy\s+\S+\s+HIT\s+\d+ B\s+6 B\s+1\s*$`).MatchString(out) {
		t.Errorf("plan's size columns:\n%s", out)
	}
	doc, err := os.ReadFile(sbom)
	if err != nil || !strings.Contains(string(doc), `"spdxVersion": "SPDX-2.3"`) {
		t.Errorf("--sbom wrote %q, %v", doc, err)
	}
	m, _ := os.ReadFile(manifest)
	if !strings.Contains(string(m), `"sbom": {`) || !strings.Contains(string(m), sbom) {
		t.Errorf("the manifest does not record the SBOM:\n%s", m)
	}
	if _, stderr, code := cli(t, "size", "--cache-dir", cache, "--top", "0", recipe); code != 2 || !strings.Contains(stderr, "--top 0") {
		t.Errorf("--top 0: exit %d, %s", code, stderr)
	}
}

// `layerimg disk --sbom` writes the SBOM of the image the disk is made of.
func TestDiskSBOM(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root, as TestDiskAndBootCommands")
	}
	dir := t.TempDir()
	tree := filepath.Join(dir, "tree")
	os.MkdirAll(filepath.Join(tree, "var/lib/dpkg"), 0o755)
	os.WriteFile(filepath.Join(tree, "var/lib/dpkg/status"), []byte("Package: hello\nStatus: install ok installed\nArchitecture: amd64\nVersion: 2.10-3\n"), 0o644)
	tarball := filepath.Join(dir, "rootfs.tar")
	if b, err := exec.Command("tar", "-cf", tarball, "-C", tree, ".").CombinedOutput(); err != nil {
		t.Fatalf("tar: %v %s", err, b)
	}
	sbom := filepath.Join(dir, "sbom.json")
	if _, errOut, code := cli(t, "disk", "--cache-dir", filepath.Join(dir, "cache"), "-o", filepath.Join(dir, "out"), "--sbom", sbom, tarball); code != 0 {
		t.Fatalf("disk --sbom: exit %d %s", code, errOut)
	}
	doc, err := os.ReadFile(sbom)
	if err != nil || !strings.Contains(string(doc), `"referenceLocator": "pkg:deb/debian/hello@2.10-3?arch=amd64"`) {
		t.Errorf("disk --sbom wrote %s, %v", doc, err)
	}
}
