package layerimg_test

import (
	"archive/tar"
	"bytes"
	"context"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"

	"github.com/layerimg/layerimg"
	"github.com/layerimg/layerimg/internal/debian/debtest"
	"github.com/layerimg/layerimg/recipes"
)

type pkg = debtest.Pkg

// outdatedMirror publishes bookworm (gz), bookworm-updates (plain) and
// bookworm-security (xz) with one update in each of the latter two.
func outdatedMirror(t *testing.T) *debtest.Mirror {
	m := debtest.New(t)
	m.Suite(t, "/debian", "bookworm", "amd64", ".gz", []pkg{
		debtest.P("libc6", "2.36-9+deb12u10", "amd64"), debtest.P("base-files", "12.4+deb12u11", "amd64"),
		debtest.P("tzdata", "2025a-0+deb12u1", "all"), debtest.P("libssl3", "3.0.17-1~deb12u1", "amd64"),
		debtest.P("gone", "0.2-1", "amd64"), debtest.P("arm-only", "9.9-1", "arm64"),
	})
	m.Suite(t, "/debian", "bookworm-updates", "amd64", "", []pkg{debtest.P("tzdata", "2025b-0+deb12u1", "all")})
	m.Suite(t, "/debian-security", "bookworm-security", "amd64", ".xz", []pkg{
		debtest.P("libssl3", "3.0.17-1~deb12u2", "amd64"), debtest.P("libc6", "2.36-9+deb12u9", "amd64"), // older than the point release's
	})
	return m
}

var oldStatus = []pkg{
	debtest.P("libc6", "2.36-9+deb12u10", "amd64"), debtest.P("base-files", "12.4+deb12u11", "amd64"),
	debtest.P("tzdata", "2025a-0+deb12u1", "all"), debtest.P("libssl3", "3.0.17-1~deb12u1", "amd64"),
	debtest.P("zlib1g", "1:1.2.13.dfsg-1", "amd64"), // in no suite: nothing to update to
	debtest.P("arm-only", "1.0-1", "amd64"),         // newer only for another architecture
}

func outdatedRecipe(t *testing.T, m *debtest.Mirror) *recipes.Recipe {
	path := filepath.Join(t.TempDir(), "recipe.yaml")
	os.WriteFile(path, []byte("name: stale\nfrom:\n  bootstrap:\n    distro: debian\n    suite: bookworm\n    mirror: "+m.URL+"/debian\n    security_mirror: "+m.URL+"/debian-security\nsteps:\n  - name: upgrade\n    run: apt-get -y upgrade\n"), 0o644)
	r, err := recipes.Load(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func TestOutdated(t *testing.T) {
	m := outdatedMirror(t)
	r := outdatedRecipe(t, m)
	cache := t.TempDir()
	ctx := context.Background()
	oo := layerimg.OutdatedOptions{Keyrings: []string{m.Keyring}}

	if _, err := layerimg.Outdated(ctx, r, layerimg.Options{CacheDir: cache}, oo); err == nil || !strings.Contains(err.Error(), "build it first") {
		t.Fatalf("nothing built: err = %v", err)
	}

	// Only the base is cached: it is what is read.
	debtest.FakeBuild(t, cache, "stale", *r.From.Bootstrap, debtest.Status(oldStatus), nil)
	rep, err := layerimg.Outdated(ctx, r, layerimg.Options{CacheDir: cache}, oo)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, u := range rep.Updates {
		got = append(got, u.Name+" "+u.Installed+" -> "+u.Candidate+" "+u.Suite)
	}
	want := []string{
		"libssl3 3.0.17-1~deb12u1 -> 3.0.17-1~deb12u2 bookworm-security", // security first
		"tzdata 2025a-0+deb12u1 -> 2025b-0+deb12u1 bookworm-updates",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("updates:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if rep.Image != "base" || rep.Installed != len(oldStatus) || rep.Security() != 1 || !rep.Updates[0].Security || rep.Updates[1].Security {
		t.Errorf("report: %+v", rep)
	}
	if len(rep.Sources) != 3 || rep.Sources[2].Signer == "" || rep.Sources[2].Built != rep.Sources[2].InRelease {
		t.Errorf("sources: %+v", rep.Sources)
	}

	// The final image (its step upgraded everything) is read when cached.
	newStatus := append([]pkg(nil), oldStatus...)
	newStatus[2].Version, newStatus[3].Version = "2025b-0+deb12u1", "3.0.17-1~deb12u2"
	debtest.FakeBuild(t, cache, "stale", *r.From.Bootstrap, debtest.Status(oldStatus), map[string][]byte{"upgrade": debtest.Status(newStatus)})
	rep, err = layerimg.Outdated(ctx, r, layerimg.Options{CacheDir: cache}, oo)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Image != "image" || len(rep.Updates) != 0 {
		t.Errorf("upgraded image: %+v", rep)
	}

	// --image: a pushed image, read without the build's cache.
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		var b bytes.Buffer
		tw := tar.NewWriter(&b)
		st := debtest.Status(oldStatus)
		tw.WriteHeader(&tar.Header{Name: "var/lib/dpkg/status", Typeflag: tar.TypeReg, Mode: 0o644, Size: int64(len(st))})
		tw.Write(st)
		tw.Close()
		return io.NopCloser(&b), nil
	})
	if err != nil {
		t.Fatal(err)
	}
	img, _ := mutate.ConfigFile(empty.Image, &v1.ConfigFile{OS: "linux", Architecture: "amd64", RootFS: v1.RootFS{Type: "layers"}})
	img, _ = mutate.AppendLayers(img, layer)
	lp, err := layout.Write(filepath.Join(t.TempDir(), "image"), empty.Index)
	if err != nil {
		t.Fatal(err)
	}
	lp.AppendImage(img)
	oo.Image = "oci-layout:" + string(lp)
	rep, err = layerimg.Outdated(ctx, r, layerimg.Options{CacheDir: t.TempDir()}, oo)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Image != oo.Image || len(rep.Updates) != 2 || !rep.Updates[0].Security {
		t.Errorf("--image: %+v", rep)
	}
}

// What is read is checked: a Packages index that is not the one the
// InRelease lists, or an InRelease signed by another key, is an error.
func TestOutdatedRefusesUnverified(t *testing.T) {
	m := outdatedMirror(t)
	r := outdatedRecipe(t, m)
	cache := t.TempDir()
	ctx := context.Background()
	debtest.FakeBuild(t, cache, "stale", *r.From.Bootstrap, debtest.Status(oldStatus), nil)

	other := debtest.New(t)
	_, err := layerimg.Outdated(ctx, r, layerimg.Options{CacheDir: cache}, layerimg.OutdatedOptions{Keyrings: []string{other.Keyring}})
	if err == nil || !strings.Contains(err.Error(), "InRelease signature") || !strings.Contains(err.Error(), m.URL+"/debian/dists/bookworm/InRelease") {
		t.Errorf("wrong keyring: err = %v", err)
	}

	// bookworm's own validly signed InRelease served as bookworm-security's
	// would hide every security update: refused, as apt refuses it.
	get := func(path string) []byte {
		resp, err := http.Get(m.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return b
	}
	secRel := get("/debian-security/dists/bookworm-security/InRelease")
	m.Set("/debian-security/dists/bookworm-security/InRelease", get("/debian/dists/bookworm/InRelease"))
	_, err = layerimg.Outdated(ctx, r, layerimg.Options{CacheDir: cache}, layerimg.OutdatedOptions{Keyrings: []string{m.Keyring}})
	if err == nil || !strings.Contains(err.Error(), "not of bookworm-security") {
		t.Errorf("another suite's InRelease: err = %v", err)
	}
	m.Set("/debian-security/dists/bookworm-security/InRelease", secRel)

	m.Set("/debian-security/dists/bookworm-security/main/binary-amd64/Packages.xz", []byte("not the index"))
	_, err = layerimg.Outdated(ctx, r, layerimg.Options{CacheDir: cache}, layerimg.OutdatedOptions{Keyrings: []string{m.Keyring}})
	if err == nil || !strings.Contains(err.Error(), "Packages.xz: 13 bytes with sha256") {
		t.Errorf("damaged index: err = %v", err)
	}
}
