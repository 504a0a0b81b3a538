package e2e_test

import (
	"archive/tar"
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"debug/elf"
	"encoding/hex"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"github.com/layerimg/layerimg"
	"github.com/layerimg/layerimg/export/sign"
	"github.com/layerimg/layerimg/rootfs"
)

// debianMirror is where the arm64 busybox comes from; the suite's InRelease
// is checked with gpgv against Debian's archive keyring, the Packages file
// against InRelease, and the .deb against Packages.
const (
	debianMirror = "http://deb.debian.org/debian"
	debianSuite  = "bookworm"
)

// needEmulation skips (fails in CI) a test that runs arm64 binaries on a
// host that cannot.
func needEmulation(t *testing.T, platform string) {
	t.Helper()
	if err := rootfs.CheckEmulation("/", runtime.GOARCH, platform); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal(err)
		}
		t.Skip(err)
	}
}

// arm64Busybox is Debian's static busybox for arm64, fetched once per
// machine (cached under the temp dir by the .deb's SHA256) and verified.
func arm64Busybox(t *testing.T) string {
	t.Helper()
	for _, tool := range []string{"gpgv", "dpkg-deb"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s not found: apt-get install %s", tool, map[string]string{"gpgv": "gpgv", "dpkg-deb": "dpkg"}[tool])
		}
	}
	keyring := "/usr/share/keyrings/debian-archive-keyring.gpg"
	if _, err := os.Stat(keyring); err != nil {
		t.Fatalf("%s: apt-get install debian-archive-keyring", keyring)
	}
	cacheDir := filepath.Join(os.TempDir(), "layerimg-test-busybox-arm64")
	os.MkdirAll(cacheDir, 0o755)

	inRelease := fetch(t, debianMirror+"/dists/"+debianSuite+"/InRelease")
	signed := filepath.Join(t.TempDir(), "InRelease")
	os.WriteFile(signed, inRelease, 0o644)
	if out, err := exec.Command("gpgv", "--keyring", keyring, signed).CombinedOutput(); err != nil {
		t.Fatalf("%s InRelease does not verify: %v\n%s", debianSuite, err, out)
	}
	pkgsSum := releaseSum(t, inRelease, "main/binary-arm64/Packages.gz")
	// What the 12 MB Packages.gz says of busybox-static is kept by its
	// verified checksum: the next run fetches only InRelease.
	var file, debSum string
	found := filepath.Join(cacheDir, "packages-"+pkgsSum)
	if data, err := os.ReadFile(found); err == nil {
		file, debSum, _ = strings.Cut(strings.TrimSpace(string(data)), " ")
	}
	if file == "" || debSum == "" {
		pkgsGz := fetch(t, debianMirror+"/dists/"+debianSuite+"/main/binary-arm64/Packages.gz")
		checkSum(t, "Packages.gz", pkgsGz, pkgsSum)
		zr, err := gzip.NewReader(bytes.NewReader(pkgsGz))
		if err != nil {
			t.Fatal(err)
		}
		file, debSum = packageFile(t, zr, "busybox-static")
		if tmp, err := os.CreateTemp(cacheDir, "packages-"); err == nil {
			tmp.WriteString(file + " " + debSum + "\n")
			tmp.Close()
			os.Rename(tmp.Name(), found) // whole, for a concurrent run
		}
	}

	bin := filepath.Join(cacheDir, debSum, "busybox")
	if _, err := os.Stat(bin); err == nil {
		return bin
	}
	deb := fetch(t, debianMirror+"/"+file)
	checkSum(t, file, deb, debSum)
	tmp, err := os.MkdirTemp(cacheDir, "extract-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(tmp)
	debFile := filepath.Join(tmp, "busybox.deb")
	os.WriteFile(debFile, deb, 0o644)
	if out, err := exec.Command("dpkg-deb", "-x", debFile, filepath.Join(tmp, "root")).CombinedOutput(); err != nil {
		t.Fatalf("dpkg-deb -x %s: %v\n%s", file, err, out)
	}
	// Renamed into place whole, so that a concurrent run sees all or none.
	final := filepath.Join(tmp, debSum)
	os.MkdirAll(final, 0o755)
	if err := os.Rename(filepath.Join(tmp, "root/bin/busybox"), filepath.Join(final, "busybox")); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(final, filepath.Join(cacheDir, debSum)); err != nil && !os.IsExist(err) {
		if _, serr := os.Stat(bin); serr != nil {
			t.Fatal(err)
		}
	}
	return bin
}

func fetch(t *testing.T, url string) []byte {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatalf("fetching %s: %v", url, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("fetching %s: %s", url, resp.Status)
	}
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("fetching %s: %v", url, err)
	}
	return data
}

func checkSum(t *testing.T, what string, data []byte, want string) {
	t.Helper()
	sum := sha256.Sum256(data)
	if got := hex.EncodeToString(sum[:]); got != want {
		t.Fatalf("%s: sha256 %s, want %s", what, got, want)
	}
}

// releaseSum is the SHA256 a Release file lists for path.
func releaseSum(t *testing.T, release []byte, path string) string {
	t.Helper()
	inSHA := false
	for _, line := range strings.Split(string(release), "\n") {
		if !strings.HasPrefix(line, " ") {
			inSHA = line == "SHA256:"
			continue
		}
		if f := strings.Fields(line); inSHA && len(f) == 3 && f[2] == path {
			return f[0]
		}
	}
	t.Fatalf("InRelease lists no SHA256 for %s", path)
	return ""
}

// packageFile is the Filename and SHA256 of pkg in a Packages file.
func packageFile(t *testing.T, r io.Reader, pkg string) (string, string) {
	t.Helper()
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	var cur, file, sum string
	for sc.Scan() {
		k, v, _ := strings.Cut(sc.Text(), ": ")
		switch k {
		case "Package":
			cur, file, sum = v, "", ""
		case "Filename":
			file = v
		case "SHA256":
			sum = v
		}
		if cur == pkg && file != "" && sum != "" {
			return file, sum
		}
	}
	t.Fatalf("Packages lists no %s", pkg)
	return "", ""
}

// archContext is a build context with a static busybox for each
// architecture in bin-ARCH/, for recipes that copy bin-${TARGETARCH}.
func archContext(t *testing.T, recipe string, busyboxes map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for arch, bb := range busyboxes {
		bin := filepath.Join(dir, "bin-"+arch)
		os.MkdirAll(bin, 0o755)
		data, err := os.ReadFile(bb)
		if err != nil {
			t.Fatal(err)
		}
		os.WriteFile(filepath.Join(bin, "busybox"), data, 0o755)
		for _, l := range []string{"sh", "cp", "mkdir", "uname", "test", "cat"} {
			os.Symlink("busybox", filepath.Join(bin, l))
		}
	}
	os.WriteFile(filepath.Join(dir, "recipe.yaml"), []byte(recipe), 0o644)
	return dir
}

const archRecipe = `name: bb-arch
platform: linux/arm64
args: {TARGETARCH: arm64}
from: scratch
steps:
  - name: busybox
    copy: {src: "bin-${TARGETARCH}", dst: /bin}
  - name: emulated
    run: mkdir -p /usr/local/bin && cp /bin/busybox /usr/local/bin/bb && uname -m > /etc/arch
tests:
  - name: machine
    run: test "$(uname -m)" = "$(cat /etc/arch)"
`

// layerELFs reads a layer and returns the ELF machine of each ELF file in
// it, and the content of /etc/arch.
func layerELFs(t *testing.T, l v1.Layer) (map[string]elf.Machine, string) {
	t.Helper()
	rc, err := l.Uncompressed()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	machines, arch := map[string]elf.Machine{}, ""
	tr := tar.NewReader(rc)
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			return machines, arch
		}
		if err != nil {
			t.Fatal(err)
		}
		if hdr.Typeflag != tar.TypeReg {
			continue
		}
		data, _ := io.ReadAll(tr)
		if hdr.Name == "etc/arch" {
			arch = strings.TrimSpace(string(data))
		}
		if f, err := elf.NewFile(bytes.NewReader(data)); err == nil {
			machines[hdr.Name] = f.Machine
		}
	}
}

// An arm64 image built from scratch on this host: its run step and test
// run under qemu-user emulation, the binaries in the run step's layer are
// aarch64 ELF, and the config says linux/arm64.
func TestArm64BusyboxScratch(t *testing.T) {
	needRoot(t)
	if runtime.GOARCH == "amd64" {
		needEmulation(t, "linux/arm64")
	}
	dir := archContext(t, archRecipe, map[string]string{"arm64": arm64Busybox(t)})
	out := t.TempDir()
	r := load(t, dir, nil)
	res := build(t, r, layerimg.Options{CacheDir: t.TempDir(), OCILayout: out})
	if got := statuses(res.Steps); got != "busybox=MISS emulated=MISS" {
		t.Fatalf("steps: %s", got)
	}
	img := layoutImage(t, out)
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if cf.OS != "linux" || cf.Architecture != "arm64" || res.Platform != "linux/arm64" {
		t.Errorf("config says %s/%s, manifest %s", cf.OS, cf.Architecture, res.Platform)
	}
	ls, _ := img.Layers()
	if len(ls) != 2 {
		t.Fatalf("%d layers, want 2", len(ls))
	}
	machines, arch := layerELFs(t, ls[1])
	if arch != "aarch64" {
		t.Errorf("uname -m in the run step said %q, want aarch64", arch)
	}
	if m, ok := machines["usr/local/bin/bb"]; !ok || m != elf.EM_AARCH64 {
		t.Errorf("the run step's layer: ELF files %v, want usr/local/bin/bb as %s", machines, elf.EM_AARCH64)
	}
	for n, m := range machines {
		if m != elf.EM_AARCH64 {
			t.Errorf("%s in the run step's layer is %s", n, m)
		}
	}
}

// multiArchContext is archRecipe with the host's amd64 busybox and Debian's
// arm64 one, and a registry (Debian's docker-registry) to push to.
func multiArchContext(t *testing.T) (dir, reg string) {
	t.Helper()
	needRoot(t)
	if runtime.GOARCH != "amd64" {
		t.Skip("the amd64 busybox comes from this amd64 host")
	}
	needEmulation(t, "linux/arm64")
	bb, err := exec.LookPath("busybox")
	if err != nil {
		t.Fatal("busybox not found: apt-get install busybox-static (.ci/run does)")
	}
	dir = archContext(t, archRecipe, map[string]string{"amd64": bb, "arm64": arm64Busybox(t)})
	reg = startRegistry(t, "", "")
	return dir, reg
}

// build --platform linux/amd64,linux/arm64 builds both in turn, keyed
// apart in one cache, and --push writes an OCI image index of the two to
// a real registry (Debian's docker-registry).
func TestMultiPlatformBuildPush(t *testing.T) {
	dir, reg := multiArchContext(t)
	ref := reg + "/golden:multi"
	out, layouts := t.TempDir(), t.TempDir()
	o := layerimg.Options{CacheDir: t.TempDir(), InsecureRegistries: []string{reg}, Push: ref, DiskDir: out, Formats: []string{"raw"}, OCILayout: layouts}
	platforms := []string{"linux/amd64", "linux/arm64"}
	results, index, err := layerimg.BuildPlatforms(context.Background(), filepath.Join(dir, "recipe.yaml"), nil, platforms, o)
	if err != nil {
		t.Fatal(err)
	}
	if len(results) != 2 {
		t.Fatalf("%d results", len(results))
	}
	// Each platform's steps have their own keys: nothing is shared.
	for i := range results[0].Steps {
		if a, b := results[0].Steps[i].Key, results[1].Steps[i].Key; a == b {
			t.Errorf("step %s has key %s on both platforms", results[0].Steps[i].Name, a)
		}
	}
	for _, r := range results {
		if got := statuses(r.Steps); got != "busybox=MISS emulated=MISS" {
			t.Errorf("%s: %s", r.Platform, got)
		}
		part := layerimg.PlatformDir(r.Platform)
		if r.Disk == nil || !strings.HasPrefix(r.Disk.Files["raw"].Path, filepath.Join(out, part)) {
			t.Errorf("%s: disk %+v, want it under %s", r.Platform, r.Disk, filepath.Join(out, part))
		}
		img := layoutImage(t, filepath.Join(layouts, part))
		cf, _ := img.ConfigFile()
		if want := strings.TrimPrefix(r.Platform, "linux/"); cf.Architecture != want {
			t.Errorf("%s layout: config says %s", r.Platform, cf.Architecture)
		}
	}
	rr, _ := name.ParseReference(ref, name.Insecure)
	desc, err := remote.Get(rr)
	if err != nil {
		t.Fatal(err)
	}
	if string(desc.MediaType) != "application/vnd.oci.image.index.v1+json" || desc.Digest.String() != index {
		t.Fatalf("%s is %s %s; BuildPlatforms said %s", ref, desc.MediaType, desc.Digest, index)
	}
	idx, _ := desc.ImageIndex()
	im, _ := idx.IndexManifest()
	if len(im.Manifests) != 2 {
		t.Fatalf("index has %d manifests", len(im.Manifests))
	}
	for i, m := range im.Manifests {
		if m.Platform == nil || m.Platform.String() != platforms[i] || m.Digest.String() != results[i].Image {
			t.Errorf("entry %d: %s for %v, want %s for %s", i, m.Digest, m.Platform, results[i].Image, platforms[i])
		}
		// Each platform's image carries its own SBOM (cosign's tag scheme).
		if res := results[i].Result; res.SBOM == nil || len(res.SBOM.Attached) != 1 || !strings.HasSuffix(res.SBOM.Attached[0], "@"+res.Image) {
			t.Errorf("%s: SBOM %+v, want it attached to %s", platforms[i], res.SBOM, res.Image)
		} else {
			tag := rr.Context().Tag(strings.Replace(res.Image, ":", "-", 1) + ".sbom")
			if _, err := remote.Head(tag); err != nil {
				t.Errorf("%s: no SBOM at %s: %v", platforms[i], tag, err)
			}
		}
		// Pulled by platform, the image runs what the platform needs.
		img, err := remote.Image(rr, remote.WithPlatform(*m.Platform))
		if err != nil {
			t.Fatal(err)
		}
		ls, _ := img.Layers()
		machines, arch := layerELFs(t, ls[1]) // the run step's; a disk build adds one after it
		want := map[string]elf.Machine{"linux/amd64": elf.EM_X86_64, "linux/arm64": elf.EM_AARCH64}[platforms[i]]
		if machines["usr/local/bin/bb"] != want || arch != map[string]string{"linux/amd64": "x86_64", "linux/arm64": "aarch64"}[platforms[i]] {
			t.Errorf("%s pulled: bb is %s, uname -m said %q", platforms[i], machines["usr/local/bin/bb"], arch)
		}
	}
	// A rebuild of both is all hits, and pushes the same index.
	again, index2, err := layerimg.BuildPlatforms(context.Background(), filepath.Join(dir, "recipe.yaml"), nil, platforms, o)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range again {
		if r.Executed != 0 {
			t.Errorf("%s rebuild ran %d steps", r.Platform, r.Executed)
		}
	}
	if index2 != index {
		t.Errorf("rebuilt index %s, first %s", index2, index)
	}
}

// A signed multi-platform push with nothing else to write: each platform's
// image gets its SBOM attached and its signature and attestations, and the
// index the tag names is signed too, so verifying the tag works.
func TestMultiPlatformSignedPush(t *testing.T) {
	dir, reg := multiArchContext(t)
	ref := reg + "/golden:signed"
	pk, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	s, err := sign.NewKeySigner(pk)
	if err != nil {
		t.Fatal(err)
	}
	o := layerimg.Options{CacheDir: t.TempDir(), InsecureRegistries: []string{reg}, Push: ref, Signer: s}
	results, index, err := layerimg.BuildPlatforms(context.Background(), filepath.Join(dir, "recipe.yaml"), nil, []string{"linux/amd64", "linux/arm64"}, o)
	if err != nil {
		t.Fatal(err)
	}
	rr, _ := name.ParseReference(ref, name.Insecure)
	remoteOpts := sign.Remote{}
	rep, err := sign.VerifyImage(context.Background(), s.Verifier(), rr, remoteOpts)
	if err != nil || rep.Signatures != 1 || rep.Digest.DigestStr() != index {
		t.Errorf("verifying the index at %s: %+v, %v", ref, rep, err)
	}
	for _, r := range results {
		if r.SBOM == nil || len(r.SBOM.Attached) != 1 {
			t.Errorf("%s: SBOM %+v, want it attached to the pushed image", r.Platform, r.SBOM)
		}
		d := rr.Context().Digest(r.Image)
		rep, err := sign.VerifyImage(context.Background(), s.Verifier(), d, remoteOpts)
		if err != nil || rep.Signatures != 1 || len(rep.Attestations) != 2 {
			t.Errorf("verifying %s's image %s: %+v, %v", r.Platform, d, rep, err)
		}
	}
}
