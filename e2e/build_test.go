package e2e_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/v1/mutate"

	"github.com/layerimg/layerimg"
	"github.com/layerimg/layerimg/internal/tartest"
	"github.com/layerimg/layerimg/layers"
	"github.com/layerimg/layerimg/rootfs"
)

func TestMain(m *testing.M) {
	rootfs.SandboxMain()
	dir, err := os.MkdirTemp("", "layerimg-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	shared.dir = dir
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

func TestCacheHitsAndMisses(t *testing.T) {
	needRoot(t)
	dir := busyboxContext(t, fixture(t, "bb-header.yaml")+`args: {WORD: one, OTHER: x}
  - name: conf
    copy: {src: conf, dst: /etc/conf}
  - name: first
    run: echo first > /first
  - name: uses-word
    run: echo ${WORD} > /word
`, map[string]string{"conf/a": "A"})
	// args after steps is valid YAML but reads oddly; put it in its place.
	raw, _ := os.ReadFile(filepath.Join(dir, "recipe.yaml"))
	fixed := strings.Replace(string(raw), "args: {WORD: one, OTHER: x}\n", "", 1)
	os.WriteFile(filepath.Join(dir, "recipe.yaml"), []byte("args: {WORD: one, OTHER: x}\n"+fixed), 0o644)
	o := layerimg.Options{CacheDir: t.TempDir()}
	ctx := context.Background()

	res := build(t, load(t, dir, nil), o)
	if got := statuses(res.Steps); got != "busybox=MISS conf=MISS first=MISS uses-word=MISS" || res.Executed != 4 {
		t.Fatalf("cold build: %s (%d executed)", got, res.Executed)
	}
	res = build(t, load(t, dir, nil), o)
	if got := statuses(res.Steps); got != "busybox=HIT conf=HIT first=HIT uses-word=HIT" || res.Executed != 0 {
		t.Fatalf("rebuild: %s", got)
	}
	// An arg used only by the last step rebuilds only that step.
	plan, err := layerimg.Plan(ctx, load(t, dir, map[string]string{"WORD": "two"}), o)
	if err != nil {
		t.Fatal(err)
	}
	if got := statuses(plan); got != "busybox=HIT conf=HIT first=HIT uses-word=MISS" {
		t.Fatalf("plan after arg change: %s", got)
	}
	if !strings.Contains(plan[3].Why, "definition changed") {
		t.Errorf("why = %q", plan[3].Why)
	}
	// An arg nobody uses changes nothing.
	res = build(t, load(t, dir, map[string]string{"OTHER": "y"}), o)
	if res.Executed != 0 {
		t.Errorf("unused arg rebuilt %d steps", res.Executed)
	}
	// Touching a copy source rebuilds nothing; changing it rebuilds from there.
	later := time.Now().Add(time.Hour)
	os.Chtimes(filepath.Join(dir, "conf/a"), later, later)
	if res = build(t, load(t, dir, nil), o); res.Executed != 0 {
		t.Errorf("mtime-only change rebuilt %d steps", res.Executed)
	}
	os.WriteFile(filepath.Join(dir, "conf/a"), []byte("A2"), 0o644)
	plan, err = layerimg.Plan(ctx, load(t, dir, nil), o)
	if err != nil {
		t.Fatal(err)
	}
	if got := statuses(plan); got != "busybox=HIT conf=MISS first=MISS uses-word=MISS" {
		t.Fatalf("plan after copy change: %s", got)
	}
	if !strings.Contains(plan[1].Why, "context files changed: conf/a (content)") || !strings.Contains(plan[2].Why, "an earlier step") {
		t.Errorf("why: %q / %q", plan[1].Why, plan[2].Why)
	}
	res = build(t, load(t, dir, nil), o)
	if res.Executed != 3 {
		t.Errorf("after copy change executed %d, want 3", res.Executed)
	}
}

// TestDeterministicColdBuilds builds one recipe in two empty caches: every
// layer digest, the image digest and the rootfs tar must be identical. The
// flattened rootfs must also match ggcr's own flattening of the OCI image.
func TestDeterministicColdBuilds(t *testing.T) {
	needRoot(t)
	dir := busyboxContext(t, fixture(t, "tree.yaml"), nil)
	out := t.TempDir()
	var results []*layerimg.Result
	for i := 0; i < 2; i++ {
		o := layerimg.Options{CacheDir: t.TempDir(), OCILayout: filepath.Join(out, "img"+string(rune('0'+i))), RootfsTar: filepath.Join(out, "root"+string(rune('0'+i))+".tar"), Manifest: filepath.Join(out, "m.json")}
		results = append(results, build(t, load(t, dir, nil), o))
		time.Sleep(1100 * time.Millisecond) // later wall clock for the second build
	}
	for i := range results[0].Steps {
		if results[0].Steps[i].Layer != results[1].Steps[i].Layer {
			t.Errorf("step %s: layer %s vs %s", results[0].Steps[i].Name, results[0].Steps[i].Layer, results[1].Steps[i].Layer)
		}
	}
	if results[0].Image != results[1].Image {
		t.Errorf("image digests differ: %s vs %s", results[0].Image, results[1].Image)
	}
	a, _ := os.ReadFile(filepath.Join(out, "root0.tar"))
	b, _ := os.ReadFile(filepath.Join(out, "root1.tar"))
	if !bytes.Equal(a, b) || len(a) == 0 {
		t.Error("rootfs tars differ")
	}
	// The OCI layout is a runnable image: load it back and check its config.
	img := layoutImage(t, filepath.Join(out, "img0"))
	cf, _ := img.ConfigFile()
	if cf.Config.WorkingDir != "/srv/app" || !slices.Contains(cf.Config.Env, "GREETING=hi") || cf.Architecture != "amd64" || cf.OS != "linux" {
		t.Errorf("config: %+v", cf.Config)
	}
	if d, _ := img.Digest(); d.String() != results[0].Image {
		t.Errorf("layout holds %s, build said %s", d, results[0].Image)
	}
	// Flattening: ours against mutate.Extract, entry for entry.
	want := tartest.Summary(t, mutate.Extract(img))
	got := tartest.Summary(t, io.NopCloser(bytes.NewReader(a)))
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("rootfs tar differs from mutate.Extract:\n got %q\nwant %q", got, want)
	}
	for _, must := range []string{"data/b f 04755 b\n", "data/c f 0644 c\n", "opq/new f 0644 n\n", "data/soft l a", "srv/app/greeting f 0644 hi\n"} {
		if !slices.Contains(got, must) {
			t.Errorf("rootfs lacks %q", must)
		}
	}
	for _, mustNot := range []string{"data/a", "data/hard", "data/gone", "opq/old", "proc", "dev", "sys"} {
		for _, g := range got {
			if strings.HasPrefix(g, mustNot+" ") {
				t.Errorf("rootfs still has %s", g)
			}
		}
	}
}

func TestSecretsNeverLeak(t *testing.T) {
	needRoot(t)
	const secret = "tok-7f3a9c-very-secret"
	dir := busyboxContext(t, fixture(t, "bb-header.yaml")+`  - name: use-secret
    secrets: [{id: apitoken, src: token.txt}]
    run: |
      test "$(wc -c < /run/secrets/apitoken)" -gt 10
      echo "the token is $(cat /run/secrets/apitoken)"
      echo done > /used
`, map[string]string{"token.txt": secret + "\n"})
	cache := t.TempDir()
	out := t.TempDir()
	var logBuf, outBuf bytes.Buffer
	o := layerimg.Options{CacheDir: cache, Output: &outBuf, OCILayout: filepath.Join(out, "img"), RootfsTar: filepath.Join(out, "rootfs.tar"), Manifest: filepath.Join(out, "m.json")}
	o.Log = newTestLogger(&logBuf)
	build(t, load(t, dir, nil), o)
	if !strings.Contains(outBuf.String(), "the token is ***") {
		t.Errorf("output not redacted: %q", outBuf.String())
	}
	// The secret's bytes appear nowhere: cache (keys, records, blobs
	// decompressed), outputs, logs.
	check := func(where string, data []byte) {
		if bytes.Contains(data, []byte(secret)) {
			t.Errorf("secret found in %s", where)
		}
	}
	check("log", logBuf.Bytes())
	check("output", outBuf.Bytes())
	for _, root := range []string{cache, out} {
		filepath.Walk(root, func(p string, fi os.FileInfo, err error) error {
			if err != nil || !fi.Mode().IsRegular() {
				return nil
			}
			data, _ := os.ReadFile(p)
			check(p, data)
			if zr, err := gunzip(data); err == nil {
				check(p+" (decompressed)", zr)
			}
			return nil
		})
	}
	// Nor does the mount point: /run/secrets is not in the image.
	rt, _ := os.ReadFile(filepath.Join(out, "rootfs.tar"))
	for _, e := range tartest.Summary(t, io.NopCloser(bytes.NewReader(rt))) {
		if strings.HasPrefix(e, "run") {
			t.Errorf("rootfs has %s", e)
		}
	}

	// A step that copies the secret into the image fails, and caches nothing.
	dir2 := busyboxContext(t, fixture(t, "bb-header.yaml")+`  - name: leak
    secrets: [{id: apitoken, src: token.txt}]
    run: cp /run/secrets/apitoken /leaked
`, map[string]string{"token.txt": secret})
	_, err := layerimg.Build(context.Background(), load(t, dir2, nil), layerimg.Options{CacheDir: cache})
	if err == nil || !strings.Contains(err.Error(), `step 2 (leak): the step wrote the content of secret "apitoken" into the image`) {
		t.Fatalf("err = %v", err)
	}
}

func TestFailingStepAndTest(t *testing.T) {
	needRoot(t)
	dir := busyboxContext(t, fixture(t, "bb-header.yaml")+`  - name: fails
    run: |
      echo about to fail
      exit 3
`, nil)
	cache := t.TempDir()
	_, err := layerimg.Build(context.Background(), load(t, dir, nil), layerimg.Options{CacheDir: cache})
	var ee *rootfs.ExitError
	if !errors.As(err, &ee) || ee.Code != 3 || !strings.Contains(err.Error(), "step 2 (fails): exit status 3") || !strings.Contains(err.Error(), "about to fail") {
		t.Fatalf("err = %v", err)
	}
	plan, _ := layerimg.Plan(context.Background(), load(t, dir, nil), layerimg.Options{CacheDir: cache})
	if got := statuses(plan); got != "busybox=HIT fails=MISS" {
		t.Errorf("after failure: %s", got)
	}
	dir = busyboxContext(t, fixture(t, "bb-header.yaml")+"tests:\n  - name: nope\n    run: test -f /missing\n", nil)
	_, err = layerimg.Build(context.Background(), load(t, dir, nil), layerimg.Options{CacheDir: cache})
	if err == nil || !strings.Contains(err.Error(), "test 1 (nope) failed: exit status 1") {
		t.Fatalf("err = %v", err)
	}
}

func TestInterruptLeavesNoPartialEntry(t *testing.T) {
	needRoot(t)
	dir := busyboxContext(t, fixture(t, "bb-header.yaml")+"  - name: slow\n    run: sleep 60\n", nil)
	cache := t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(3*time.Second, cancel)
	start := time.Now()
	_, err := layerimg.Build(ctx, load(t, dir, nil), layerimg.Options{CacheDir: cache})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v", err)
	}
	if time.Since(start) > 30*time.Second {
		t.Errorf("cancel took %v", time.Since(start))
	}
	plan, _ := layerimg.Plan(context.Background(), load(t, dir, nil), layerimg.Options{CacheDir: cache})
	if got := statuses(plan); got != "busybox=HIT slow=MISS" {
		t.Errorf("after interrupt: %s", got)
	}
	if ents, _ := os.ReadDir(filepath.Join(cache, "tmp")); len(ents) != 0 {
		t.Errorf("scratch left behind: %v", ents)
	}
}

func TestConcurrentBuildsShareCache(t *testing.T) {
	needRoot(t)
	dir := busyboxContext(t, fixture(t, "tree.yaml"), nil)
	cache := t.TempDir()
	var wg sync.WaitGroup
	res := make([]*layerimg.Result, 2)
	errs := make([]error, 2)
	for i := range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			res[i], errs[i] = layerimg.Build(context.Background(), load(t, dir, nil), layerimg.Options{CacheDir: cache})
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("build %d: %v", i, err)
		}
	}
	if res[0].Image != res[1].Image {
		t.Errorf("images differ: %s %s", res[0].Image, res[1].Image)
	}
	c, _ := layers.OpenCache(cache, false, nil)
	defer c.Close()
	es, _, _ := c.Entries()
	for _, e := range es {
		if ent, _ := c.Lookup(e.Key); ent == nil {
			t.Errorf("entry %s broken", e.Step)
		}
	}
}

// Building twice into the same -o directory hands out the cached disks
// again and leaves nothing else there: no temporary link or file.
func TestRebuildLeavesNoTempFiles(t *testing.T) {
	needRoot(t)
	dir := busyboxContext(t, fixture(t, "bb-header.yaml")+"disk: {boot: none, size: 1GiB}\n", nil)
	o := layerimg.Options{CacheDir: t.TempDir(), DiskDir: t.TempDir(), Formats: []string{"raw", "vmdk", "qcow2"}}
	for i := range 2 {
		build(t, load(t, dir, nil), o)
		ents, err := os.ReadDir(o.DiskDir)
		if err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, e := range ents {
			names = append(names, e.Name())
		}
		if got := strings.Join(names, " "); got != "disk.qcow2 disk.raw disk.vmdk" {
			t.Errorf("build %d left %s in the output dir", i+1, got)
		}
	}
}
