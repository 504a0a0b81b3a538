package layers

import (
	"bytes"
	"context"
	"io"
	"log"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"

	"github.com/layerimg/layerimg/recipes"
)

func openCache(t *testing.T) *Cache {
	t.Helper()
	c, err := OpenCache(t.TempDir(), false, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func TestKeyStableAndSensitive(t *testing.T) {
	base := KeyInput{Parent: "sha256:p", Kind: "run", Spec: map[string]any{"argv": []string{"a"}}, Platform: "linux/amd64", Compression: Gzip}
	if base.Key() != base.Key() {
		t.Fatal("key not stable")
	}
	// The golden value pins the encoding: a change here invalidates every
	// user's cache, so it must come with a keyVersion bump.
	if got := base.Key(); got != "sha256:ae1d0024a755df7a293e4c559fa795febecdf5aa0af2e40f04bdbf6e38c44a8b" {
		t.Errorf("key of the reference input is %s; bump keyVersion if the encoding changed on purpose", got)
	}
	for name, mut := range map[string]func(*KeyInput){
		"parent":      func(k *KeyInput) { k.Parent = "sha256:q" },
		"spec":        func(k *KeyInput) { k.Spec = map[string]any{"argv": []string{"b"}} },
		"platform":    func(k *KeyInput) { k.Platform = "linux/arm64" },
		"compression": func(k *KeyInput) { k.Compression = Zstd },
		"files":       func(k *KeyInput) { k.Files = []FileDigest{{Path: "x", Digest: "sha256:1"}} },
		"epoch":       func(k *KeyInput) { k.Epoch = 1 },
	} {
		k := base
		mut(&k)
		if k.Key() == base.Key() {
			t.Errorf("changing %s did not change the key", name)
		}
		if k.Why(base) == "" {
			t.Errorf("changing %s gives no explanation", name)
		}
	}
}

func writeCtx(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for p, body := range files {
		full := filepath.Join(dir, p)
		os.MkdirAll(filepath.Dir(full), 0o755)
		if strings.HasPrefix(body, "->") {
			os.Symlink(strings.TrimPrefix(body, "->"), full)
			continue
		}
		os.WriteFile(full, []byte(body), 0o644)
	}
	return dir
}

func TestCopyKeyIgnoresMtimeButNotContentOrMode(t *testing.T) {
	dir := writeCtx(t, map[string]string{"conf/a": "A", "conf/sub/b": "B", "conf/link": "->a"})
	copies := []recipes.Copy{{Src: "conf", Dst: "/etc/app"}}
	key := func() string {
		fs, err := CopyKeyFiles(dir, copies)
		if err != nil {
			t.Fatal(err)
		}
		return KeyInput{Kind: "copy", Files: fs}.Key()
	}
	k0 := key()
	future := time.Now().Add(time.Hour)
	os.Chtimes(filepath.Join(dir, "conf/a"), future, future)
	if key() != k0 {
		t.Error("mtime changed the key")
	}
	os.Chmod(filepath.Join(dir, "conf/a"), 0o600)
	k1 := key()
	if k1 == k0 {
		t.Error("mode did not change the key")
	}
	os.WriteFile(filepath.Join(dir, "conf/sub/b"), []byte("B2"), 0o644)
	if key() == k1 {
		t.Error("content did not change the key")
	}
}

func TestCopyRefusesEscapes(t *testing.T) {
	outside := t.TempDir()
	os.WriteFile(filepath.Join(outside, "secret"), []byte("s"), 0o600)
	dir := writeCtx(t, map[string]string{"ok": "x", "esc": "->" + outside, "esc2": "->../../../../../../etc/passwd"})
	for _, src := range []string{"esc/secret", "esc", "esc2", "../" + filepath.Base(outside)} {
		_, err := CopyKeyFiles(dir, []recipes.Copy{{Src: src, Dst: "/x"}})
		if err == nil || !strings.Contains(err.Error(), "outside the build context") {
			t.Errorf("src %s: err = %v", src, err)
		}
	}
	_, err := CopyKeyFiles(dir, []recipes.Copy{{Src: "missing", Dst: "/x"}})
	if err == nil || !strings.Contains(err.Error(), `copy src "missing"`) {
		t.Errorf("missing: err = %v", err)
	}
}

func TestCopyLayerDeterministic(t *testing.T) {
	dir := writeCtx(t, map[string]string{"d/a": "A", "d/b": strings.Repeat("b", 3<<20)})
	copies := []recipes.Copy{{Src: "d", Dst: "/opt/d", Mode: "0640", Owner: "10:20"}, {Src: "d/a", Dst: "/etc/"}}
	var digests []string
	for _, comp := range []Compression{Gzip, Gzip, Zstd, Zstd} {
		c := openCache(t)
		d, err := CopyStep(context.Background(), c, dir, copies, comp, time.Unix(0, 0))
		if err != nil {
			t.Fatal(err)
		}
		if err := c.VerifyBlob(d.Digest); err != nil {
			t.Fatal(err)
		}
		digests = append(digests, d.Digest.String())
		// Touch the sources between builds: the layer must not change.
		later := time.Now().Add(time.Duration(len(digests)) * time.Hour)
		os.Chtimes(filepath.Join(dir, "d/a"), later, later)
	}
	if digests[0] != digests[1] || digests[2] != digests[3] || digests[0] == digests[2] {
		t.Errorf("digests: %v", digests)
	}
}

func TestCacheDropsCorruptBlob(t *testing.T) {
	c := openCache(t)
	d, err := c.WriteLayer(Gzip, func(w io.Writer) error { _, err := w.Write(make([]byte, 10240)); return err })
	if err != nil {
		t.Fatal(err)
	}
	e := Entry{Key: "sha256:abc", Step: "s", Layer: d}
	if err := c.Store(e); err != nil {
		t.Fatal(err)
	}
	if got, _ := c.Lookup(e.Key); got == nil || got.Layer.Digest != d.Digest {
		t.Fatalf("lookup = %+v", got)
	}
	f, _ := os.OpenFile(c.BlobPath(d.Digest), os.O_WRONLY, 0)
	f.WriteAt([]byte("corrupt"), 5)
	f.Close()
	if got, _ := c.Lookup(e.Key); got != nil {
		t.Fatal("corrupt blob was used")
	}
	if _, err := os.Stat(c.BlobPath(d.Digest)); err == nil {
		t.Fatal("corrupt blob kept")
	}
	if got, _ := c.Lookup(e.Key); got != nil {
		t.Fatal("entry kept")
	}
}

func TestCachePruneAndStaleTmp(t *testing.T) {
	dir := t.TempDir()
	c, err := OpenCache(dir, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	old, _ := c.WriteLayer(Gzip, func(w io.Writer) error { _, err := w.Write([]byte("old")); return err })
	cur, _ := c.WriteLayer(Gzip, func(w io.Writer) error { _, err := w.Write([]byte("cur")); return err })
	c.Store(Entry{Key: "sha256:old", Layer: old})
	c.Store(Entry{Key: "sha256:cur", Layer: cur})
	past := time.Now().Add(-30 * 24 * time.Hour)
	os.Chtimes(c.keyPath("sha256:old"), past, past)
	// A scratch dir whose owner died (no lock held), beside c's live one:
	// a second user of the cache removes the first and keeps the second.
	os.MkdirAll(filepath.Join(dir, "tmp", "dead"), 0o755)
	os.WriteFile(filepath.Join(dir, "tmp", "dead.lock"), nil, 0o644)
	other, err := OpenCache(dir, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "tmp", "dead")); err == nil {
		t.Error("stale scratch dir kept")
	}
	if _, err := os.Stat(c.TempDir()); err != nil {
		t.Errorf("a live build's scratch dir was removed: %v", err)
	}
	other.Close()
	c.Close()

	c, err = OpenCache(dir, true, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	n, _, err := c.Prune(7, nil)
	if err != nil || n != 1 {
		t.Fatalf("prune: %d, %v", n, err)
	}
	if _, err := os.Stat(c.BlobPath(old.Digest)); err == nil {
		t.Error("old blob kept")
	}
	if e, _ := c.Lookup("sha256:cur"); e == nil {
		t.Error("current entry pruned")
	}
}

func TestBaseRegistry(t *testing.T) {
	srv := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	defer srv.Close()
	host := strings.TrimPrefix(srv.URL, "http://")
	amd, _ := random.Image(1024, 2)
	arm, _ := random.Image(1024, 1)
	idx := mutate.AppendManifests(empty.Index,
		mutate.IndexAddendum{Add: amd, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: "amd64"}}},
		mutate.IndexAddendum{Add: arm, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: "arm64"}}},
	)
	ref, _ := name.ParseReference(host+"/base:1", name.Insecure)
	if err := remote.WriteIndex(ref, idx); err != nil {
		t.Fatal(err)
	}
	c := openCache(t)
	ctx := context.Background()
	// Without --insecure-registry the registry must be reached over HTTPS.
	if _, err := ResolveBase(ctx, c, recipes.Base{Ref: host + "/base:1"}, BaseOptions{Platform: "linux/arm64"}); err == nil {
		t.Fatal("plain HTTP registry used without --insecure-registry")
	}
	b, err := ResolveBase(ctx, c, recipes.Base{Ref: host + "/base:1"}, BaseOptions{Platform: "linux/arm64", InsecureRegistries: []string{host}})
	if err != nil {
		t.Fatal(err)
	}
	want, _ := arm.Digest()
	if b.Digest != want.String() || b.ID != want.String() {
		t.Errorf("picked %s, want the arm64 image %s", b.Digest, want)
	}
}

func TestBaseLayoutAndArchive(t *testing.T) {
	img, _ := random.Image(512, 2)
	want, _ := img.Digest()
	dir := t.TempDir()
	p, err := layout.Write(filepath.Join(dir, "layout"), empty.Index)
	if err != nil {
		t.Fatal(err)
	}
	other, _ := random.Image(512, 1)
	p.AppendImage(img, layout.WithAnnotations(map[string]string{"org.opencontainers.image.ref.name": "v1"}))
	p.AppendImage(other, layout.WithAnnotations(map[string]string{"org.opencontainers.image.ref.name": "v2"}))
	tag, _ := name.NewTag("example/img:1")
	archive := filepath.Join(dir, "img.tar")
	if err := tarball.WriteToFile(archive, tag, img); err != nil {
		t.Fatal(err)
	}
	c := openCache(t)
	ctx := context.Background()
	o := BaseOptions{Platform: "linux/amd64"}
	for _, ref := range []string{"oci-layout:" + dir + "/layout:v1", "oci-layout:" + dir + "/layout@" + want.String(), "docker-archive:" + archive} {
		b, err := ResolveBase(ctx, c, recipes.Base{Ref: ref}, o)
		if err != nil {
			t.Errorf("%s: %v", ref, err)
			continue
		}
		got, _ := b.Image.Digest()
		ls, _ := b.Image.Layers()
		if strings.HasPrefix(ref, "oci") && got != want || len(ls) != 2 {
			t.Errorf("%s: digest %s (want %s), %d layers", ref, got, want, len(ls))
		}
	}
	if _, err := ResolveBase(ctx, c, recipes.Base{Ref: "oci-layout:" + dir + "/layout"}, o); err == nil || !strings.Contains(err.Error(), "2 images match") {
		t.Errorf("ambiguous layout: %v", err)
	}
	if _, err := ResolveBase(ctx, c, recipes.Base{Ref: "docker-archive:" + dir + "/none.tar"}, o); err == nil || !strings.Contains(err.Error(), "none.tar") {
		t.Errorf("missing archive: %v", err)
	}
	s, err := ResolveBase(ctx, c, recipes.Base{Ref: "scratch"}, o)
	if err != nil || s.ID != "scratch" {
		t.Errorf("scratch: %+v %v", s, err)
	}
}

func TestSecretScan(t *testing.T) {
	s := &secretScan{secrets: []namedSecret{{"tok", []byte("s3cr3t-value")}}}
	s.Write([]byte("xxxxs3cr3t"))
	s.Write([]byte("-valueyyy"))
	if s.found != "tok" {
		t.Error("secret split across writes not found")
	}
	var buf bytes.Buffer
	r := &redactor{w: &buf, secrets: [][]byte{[]byte("s3cr3t")}}
	r.Write([]byte("token=s3cr3t\n"))
	if buf.String() != "token=***\n" {
		t.Errorf("redacted: %q", buf.String())
	}
}
