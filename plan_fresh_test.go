package layerimg

import (
	"archive/tar"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/layerimg/layerimg/layers"
	"github.com/layerimg/layerimg/recipes"
)

// fakeMirror serves /ARCHIVE/dists/SUITE/InRelease from a map the test
// changes, so that it controls the mirror's state.
type fakeMirror struct {
	mu   sync.Mutex
	body map[string]string // path -> content
	hits map[string]int
}

func (m *fakeMirror) set(path, body string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.body[path] = body
}

func (m *fakeMirror) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.hits[r.URL.Path]++
	b, ok := m.body[r.URL.Path]
	if !ok {
		http.NotFound(w, r)
		return
	}
	io.WriteString(w, b)
}

// A bootstrap base's key covers each suite's InRelease: the same mirror
// state HITs; a new bookworm-security InRelease MISSes and plan says so.
func TestBootstrapKeyFollowsMirror(t *testing.T) {
	m := &fakeMirror{body: map[string]string{}, hits: map[string]int{}}
	srv := httptest.NewServer(m)
	defer srv.Close()
	m.set("/debian/dists/bookworm/InRelease", "bookworm 12.12\n")
	m.set("/debian/dists/bookworm-updates/InRelease", "updates 1\n")
	m.set("/debian-security/dists/bookworm-security/InRelease", "security 1\n")

	dir := t.TempDir()
	path := filepath.Join(dir, "recipe.yaml")
	os.WriteFile(path, []byte("name: fresh\nfrom:\n  bootstrap:\n    distro: debian\n    suite: bookworm\n    mirror: "+srv.URL+"/debian\n    security_mirror: "+srv.URL+"/debian-security\nsteps:\n  - run: 'true'\n"), 0o644)
	r, err := recipes.Load(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	o := Options{CacheDir: t.TempDir()}
	if err := o.defaults(); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	plan := func() StepPlan {
		t.Helper()
		sp, err := Plan(ctx, r, o)
		if err != nil {
			t.Fatal(err)
		}
		if sp[0].Kind != "bootstrap" {
			t.Fatalf("plan[0] = %+v", sp[0])
		}
		return sp[0]
	}
	first := plan()
	if first.Status != Miss || !strings.Contains(first.Why, "no earlier build") {
		t.Fatalf("first plan: %+v", first)
	}
	for _, p := range []string{"/debian/dists/bookworm/InRelease", "/debian/dists/bookworm-updates/InRelease", "/debian-security/dists/bookworm-security/InRelease"} {
		if m.hits[p] != 1 {
			t.Errorf("plan fetched %s %d times, want once", p, m.hits[p])
		}
	}

	// What a build leaves: the base's entry under the planned key and the
	// record of its input (as build.go writes them), without running
	// mmdebstrap.
	in, _, err := layers.BootstrapKey(ctx, *r.From.Bootstrap, layers.BaseOptions{Platform: r.Platform, Compression: o.Compression, Epoch: o.Epoch})
	if err != nil {
		t.Fatal(err)
	}
	if in.Key() != first.Key {
		t.Fatalf("key %s, plan said %s", in.Key(), first.Key)
	}
	storeFakeBase(t, o.CacheDir, r.Name, in)

	if again := plan(); again.Status != Hit || again.Key != first.Key {
		t.Fatalf("same mirror state: %+v, want HIT of %s", again, first.Key)
	}

	m.set("/debian-security/dists/bookworm-security/InRelease", "security 2: openssl 3.0.22\n")
	moved := plan()
	if moved.Status != Miss || moved.Key == first.Key {
		t.Fatalf("new security InRelease: %+v, want MISS", moved)
	}
	t.Logf("plan: bootstrap %s: %s", moved.Status, moved.Why)
	if !strings.Contains(moved.Why, "debian-security bookworm-security InRelease changed") || strings.Contains(moved.Why, "bookworm-updates") {
		t.Errorf("why = %q", moved.Why)
	}

	// Back to the recorded state: HIT again.
	m.set("/debian-security/dists/bookworm-security/InRelease", "security 1\n")
	if back := plan(); back.Status != Hit {
		t.Errorf("state as recorded: %+v, want HIT", back)
	}

	// A suite the mirror does not have: an error naming the URL.
	delete(m.body, "/debian/dists/bookworm-updates/InRelease")
	_, err = Plan(ctx, r, o)
	if err == nil || !strings.Contains(err.Error(), srv.URL+"/debian/dists/bookworm-updates/InRelease: 404") {
		t.Errorf("missing suite: err = %v", err)
	}
}

func storeFakeBase(t *testing.T, cacheDir, name string, in layers.KeyInput) {
	t.Helper()
	c, err := layers.OpenCache(cacheDir, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	desc, err := c.WriteLayer(layers.Gzip, func(w io.Writer) error {
		tw := tar.NewWriter(w)
		tw.WriteHeader(&tar.Header{Name: "etc/", Typeflag: tar.TypeDir, Mode: 0o755})
		return tw.Close()
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Store(layers.Entry{Key: in.Key(), Step: "bootstrap:debian/bookworm", Input: in, Layer: desc, Created: time.Now()}); err != nil {
		t.Fatal(err)
	}
	data, _ := json.Marshal(map[string]layers.KeyInput{"bootstrap": in})
	if err := writeFile(recordPath(c, name, "linux/amd64"), data); err != nil {
		t.Fatal(err)
	}
}

// A registry base by tag is resolved again at every plan: when the tag
// moved since the last build, plan says so, with both digests.
func TestPlanSaysBaseMoved(t *testing.T) {
	srv := httptest.NewServer(registry.New())
	defer srv.Close()
	host := strings.TrimPrefix(srv.URL, "http://")
	tag, err := name.NewTag(host + "/base:stable")
	if err != nil {
		t.Fatal(err)
	}
	push := func() string {
		img, _ := random.Image(256, 1)
		if err := remote.Write(tag, img); err != nil {
			t.Fatal(err)
		}
		d, _ := img.Digest()
		return d.String()
	}
	first := push()
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "hello.txt"), []byte("hi\n"), 0o644)
	path := filepath.Join(dir, "recipe.yaml")
	os.WriteFile(path, []byte("name: moving\nfrom: "+tag.String()+"\nsteps:\n  - name: hello\n    copy: {src: hello.txt, dst: /hello.txt}\n"), 0o644)
	r, err := recipes.Load(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	o := Options{CacheDir: t.TempDir(), InsecureRegistries: []string{host}}
	ctx := context.Background()
	res, err := Build(ctx, r, o)
	if err != nil {
		t.Fatal(err)
	}
	if res.Base.Digest != first {
		t.Fatalf("built from %s, pushed %s", res.Base.Digest, first)
	}
	sp, err := Plan(ctx, r, o)
	if err != nil {
		t.Fatal(err)
	}
	if sp[0].Status != Hit {
		t.Fatalf("unchanged tag: %+v", sp[0])
	}

	second := push()
	sp, err = Plan(ctx, r, o)
	if err != nil {
		t.Fatal(err)
	}
	want := "base " + tag.String() + " moved: " + first + " -> " + second
	if sp[0].Status != Miss || sp[0].Why != want {
		t.Errorf("moved tag: %s %q, want MISS %q", sp[0].Status, sp[0].Why, want)
	}

	// Pinned by digest, the same base is never re-resolved by tag: no move.
	os.WriteFile(path, []byte("name: pinned\nfrom: "+host+"/base@"+first+"\nsteps:\n  - name: hello\n    copy: {src: hello.txt, dst: /hello.txt}\n"), 0o644)
	if r, err = recipes.Load(path, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := Build(ctx, r, o); err != nil {
		t.Fatal(err)
	}
	push()
	if sp, err = Plan(ctx, r, o); err != nil || sp[0].Status != Hit {
		t.Errorf("pinned base after a push: %+v %v", sp, err)
	}
}
