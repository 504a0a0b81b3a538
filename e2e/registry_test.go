package e2e_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/layerimg/layerimg"
)

// TestRegistryCIStory is the CI story: runner A builds and writes
// the cache; runner B, with an empty cache dir, executes nothing, pulls only
// the disks, and gets the same disk.raw; a change to the last step runs only
// that step; a change to a copy source runs from there on.
func TestRegistryCIStory(t *testing.T) {
	needRoot(t)
	reg := startRegistry(t, "", "")
	ref := reg + "/cache:main"
	dir := busyboxContext(t, fixture(t, "story.yaml"), map[string]string{"conf/motd": "hello\n"})
	opts := func(cache, out string) layerimg.Options {
		return layerimg.Options{CacheDir: cache, DiskDir: out, InsecureRegistries: []string{reg}, DiskDigests: true}
	}
	a := opts(t.TempDir(), t.TempDir())
	a.CacheTo = ref
	resA := build(t, load(t, dir, nil), a)

	bCache := t.TempDir()
	b := opts(bCache, t.TempDir())
	b.CacheFrom = []string{ref}
	resB := build(t, load(t, dir, nil), b)
	if resB.Executed != 0 || resB.Disk.Files["raw"].SHA256 != resA.Disk.Files["raw"].SHA256 {
		t.Fatalf("runner B executed %d steps; raw %s vs %s", resB.Executed, resB.Disk.Files["raw"].SHA256, resA.Disk.Files["raw"].SHA256)
	}
	// Only the disks came over: no layer blob is in B's cache.
	if blobs, _ := os.ReadDir(filepath.Join(bCache, "blobs", "sha256")); len(blobs) != 0 {
		t.Errorf("runner B pulled %d layer blobs, want none", len(blobs))
	}
	// What B pulled: the manifest, the index and the compressed disks.
	var disks int64
	for _, f := range []string{"raw", "qcow2"} {
		fi, err := os.Stat(filepath.Join(a.CacheDir, "disks", strings.TrimPrefix(resA.Disk.Key, "sha256:"), "disk."+f+".zst"))
		if err != nil {
			t.Fatal(err)
		}
		disks += fi.Size()
	}
	if resB.Pulled < disks || resB.Pulled > disks+64<<10 {
		t.Errorf("runner B pulled %d bytes; the compressed disks are %d", resB.Pulled, disks)
	}

	// The last step changes: only it runs (its parents come from the cache).
	c := opts(t.TempDir(), t.TempDir())
	c.CacheFrom = []string{ref}
	resC := build(t, load(t, dir, map[string]string{"LAST": "two"}), c)
	if got := statuses(resC.Steps); resC.Executed != 1 || !strings.HasSuffix(got, "last=MISS") {
		t.Errorf("after changing the last step: executed %d, %s", resC.Executed, got)
	}
	// A copy source changes: it and everything after run.
	os.WriteFile(filepath.Join(dir, "conf/motd"), []byte("changed\n"), 0o644)
	d := opts(t.TempDir(), t.TempDir())
	d.CacheFrom = []string{ref}
	resD := build(t, load(t, dir, nil), d)
	if got := statuses(resD.Steps); resD.Executed != 3 || got != "busybox=HIT (remote) motd=MISS data=MISS last=MISS" {
		t.Errorf("after changing a copy source: executed %d, %s", resD.Executed, got)
	}
	// plan sees the remote hits before anything runs.
	os.WriteFile(filepath.Join(dir, "conf/motd"), []byte("hello\n"), 0o644)
	plan, err := layerimg.Plan(context.Background(), load(t, dir, nil), layerimg.Options{CacheDir: t.TempDir(), CacheFrom: []string{ref}, InsecureRegistries: []string{reg}})
	if err != nil {
		t.Fatal(err)
	}
	if got := statuses(plan); got != "busybox=HIT (remote) motd=HIT (remote) data=HIT (remote) last=HIT (remote)" {
		t.Errorf("plan: %s", got)
	}
}

func TestRegistryFaults(t *testing.T) {
	needRoot(t)
	reg := startRegistry(t, "", "")
	proxy, failures := flakyProxy(t, reg, 12)
	dir := busyboxContext(t, fixture(t, "story.yaml"), map[string]string{"conf/motd": "hello\n"})
	var logA, logB bytes.Buffer
	a := layerimg.Options{CacheDir: t.TempDir(), DiskDir: t.TempDir(), InsecureRegistries: []string{proxy}, DiskDigests: true, CacheTo: proxy + "/cache:flaky", Log: newTestLogger(&logA)}
	resA := build(t, load(t, dir, nil), a)
	b := layerimg.Options{CacheDir: t.TempDir(), DiskDir: t.TempDir(), InsecureRegistries: []string{proxy}, DiskDigests: true, CacheFrom: []string{proxy + "/cache:flaky"}, Log: newTestLogger(&logB)}
	resB := build(t, load(t, dir, nil), b)
	if resB.Executed != 0 || resB.Disk.Files["raw"].SHA256 != resA.Disk.Files["raw"].SHA256 {
		t.Errorf("through the flaky proxy: executed %d, raw %s vs %s", resB.Executed, resB.Disk.Files["raw"].SHA256, resA.Disk.Files["raw"].SHA256)
	}
	if atomic.LoadInt32(failures) == 0 {
		t.Fatal("the proxy injected no failure")
	}
	logs := logA.String() + logB.String()
	if !strings.Contains(logs, "retrying") && !strings.Contains(logs, "registry request failed") {
		t.Errorf("%d failures injected, none shows in the log", *failures)
	}
}

func TestRegistryAuthAndPushes(t *testing.T) {
	needRoot(t)
	const user, pass = "builder", "s3cret-Pa55word-9"
	reg := startRegistry(t, user, pass)
	cfgDir := t.TempDir()
	authB64 := base64.StdEncoding.EncodeToString([]byte(user + ":" + pass))
	os.WriteFile(filepath.Join(cfgDir, "config.json"), []byte(fmt.Sprintf(`{"auths":{%q:{"auth":%q}}}`, reg, authB64)), 0o600)
	t.Setenv("DOCKER_CONFIG", cfgDir)

	dir := busyboxContext(t, fixture(t, "story.yaml"), map[string]string{"conf/motd": "hello\n"})
	var logBuf, outBuf bytes.Buffer
	out := t.TempDir()
	o := layerimg.Options{CacheDir: t.TempDir(), DiskDir: out, InsecureRegistries: []string{reg}, Log: newTestLogger(&logBuf), Output: &outBuf,
		CacheTo: reg + "/cache:auth", Push: reg + "/golden:1.0", PushDisk: reg + "/golden-disk:1.0", DiskArtifact: reg + "/golden-files:1.0",
		Manifest: filepath.Join(out, "build.json")}
	res := build(t, load(t, dir, nil), o)
	manifest, _ := os.ReadFile(o.Manifest)
	for _, secret := range []string{pass, authB64} {
		for where, text := range map[string]string{"log": logBuf.String(), "output": outBuf.String(), "manifest": string(manifest)} {
			if strings.Contains(text, secret) {
				t.Errorf("a credential appears in the %s", where)
			}
		}
	}

	ropts := []remote.Option{remote.WithAuth(basicAuth{user, pass})}
	// The pushed image runs as a container: config with env and platform.
	imgRef, _ := name.ParseReference(reg+"/golden:1.0", name.Insecure)
	img, err := remote.Image(imgRef, ropts...)
	if err != nil {
		t.Fatal(err)
	}
	if d, _ := img.Digest(); d.String() != res.Image {
		t.Errorf("pushed %s, built %s", d, res.Image)
	}
	cf, _ := img.ConfigFile()
	if cf.Architecture != "amd64" || cf.OS != "linux" || len(cf.Config.Env) == 0 {
		t.Errorf("config %+v", cf)
	}
	// The containerDisk holds the qcow2 at /disk/, owned by 107.
	cdRef, _ := name.ParseReference(reg+"/golden-disk:1.0", name.Insecure)
	cd, err := remote.Image(cdRef, ropts...)
	if err != nil {
		t.Fatal(err)
	}
	ls, _ := cd.Layers()
	if len(ls) != 1 {
		t.Fatalf("containerDisk has %d layers", len(ls))
	}
	rc, _ := ls[0].Uncompressed()
	entries := tarEntries(t, rc)
	local, _ := os.ReadFile(res.Disk.Files["qcow2"].Path)
	if e, ok := entries["disk/disk.qcow2"]; !ok || e.uid != 107 || e.gid != 107 || !bytes.Equal(e.body, local) {
		t.Errorf("disk/disk.qcow2 in the containerDisk: present %v, uid %d, same bytes %v", ok, e.uid, bytes.Equal(e.body, local))
	}
	if e, ok := entries["disk/"]; !ok || e.uid != 107 {
		t.Errorf("disk/ dir: %+v", e)
	}
	// The disk artifact lists each file with its media type.
	artRef, _ := name.ParseReference(reg+"/golden-files:1.0", name.Insecure)
	desc, err := remote.Get(artRef, ropts...)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"artifactType":"application/vnd.layerimg.disk.v1"`, "application/vnd.layerimg.disk.raw.v1+zstd", "application/vnd.layerimg.disk.qcow2.v1+zstd", "disk.raw.zst"} {
		if !strings.Contains(string(desc.Manifest), want) {
			t.Errorf("artifact manifest lacks %s:\n%s", want, desc.Manifest)
		}
	}

	// Without credentials the push fails, naming the registry.
	t.Setenv("DOCKER_CONFIG", t.TempDir())
	o2 := layerimg.Options{CacheDir: t.TempDir(), InsecureRegistries: []string{reg}, Push: reg + "/golden:2.0"}
	_, err = layerimg.Build(context.Background(), load(t, dir, nil), o2)
	if err == nil || !strings.Contains(err.Error(), "--push") || !strings.Contains(err.Error(), reg) {
		t.Errorf("push without credentials: %v", err)
	}
}

func TestRegistryDown(t *testing.T) {
	needRoot(t)
	l, _ := net.Listen("tcp", "127.0.0.1:0")
	down := l.Addr().String()
	l.Close() // nothing listens there now
	dir := busyboxContext(t, fixture(t, "bb-header.yaml"), nil)
	var logBuf bytes.Buffer
	res := build(t, load(t, dir, nil), layerimg.Options{CacheDir: t.TempDir(), CacheFrom: []string{down + "/cache:x"}, InsecureRegistries: []string{down}, Log: newTestLogger(&logBuf)})
	if res.Executed != 1 || !strings.Contains(logBuf.String(), "cannot read the registry cache") {
		t.Errorf("cache-from a dead registry: executed %d, log %s", res.Executed, logBuf.String())
	}
	_, err := layerimg.Build(context.Background(), load(t, dir, nil), layerimg.Options{CacheDir: t.TempDir(), Push: down + "/img:1", InsecureRegistries: []string{down}})
	if err == nil || !strings.Contains(err.Error(), "pushing image to "+down+"/img:1") {
		t.Errorf("push to a dead registry: %v", err)
	}
	// Plain HTTP without --insecure-registry is refused.
	_, err = layerimg.Build(context.Background(), load(t, dir, nil), layerimg.Options{CacheDir: t.TempDir(), Push: down + "/img:1"})
	if err == nil {
		t.Error("push over plain HTTP to an unlisted registry succeeded")
	}
}

// TestRegistryPushResumes breaks a --cache-to halfway: the build fails with
// the reference named, the local cache stays whole, and the next push
// uploads only the blobs that did not make it.
func TestRegistryPushResumes(t *testing.T) {
	needRoot(t)
	reg := startRegistry(t, "", "")
	dir := busyboxContext(t, fixture(t, "story.yaml"), map[string]string{"conf/motd": "hello\n"})
	cache := t.TempDir()
	broken, _ := countingProxy(t, reg, 2)
	o := layerimg.Options{CacheDir: cache, DiskDir: t.TempDir(), InsecureRegistries: []string{broken}, CacheTo: broken + "/cache:resume"}
	_, err := layerimg.Build(context.Background(), load(t, dir, nil), o)
	if err == nil || !strings.Contains(err.Error(), "--cache-to") || !strings.Contains(err.Error(), broken+"/cache") {
		t.Fatalf("broken push: %v", err)
	}
	// The local cache is whole: every entry verifies, and a rebuild runs nothing.
	res := build(t, load(t, dir, nil), layerimg.Options{CacheDir: cache, DiskDir: t.TempDir()})
	if res.Executed != 0 {
		t.Errorf("after the broken push the rebuild executed %d steps", res.Executed)
	}
	// Resume against the registry itself, counting uploads.
	good, uploads := countingProxy(t, reg, 0)
	o = layerimg.Options{CacheDir: cache, DiskDir: t.TempDir(), InsecureRegistries: []string{good}, CacheTo: good + "/cache:resume"}
	build(t, load(t, dir, nil), o)
	// 4 step layers + the disk's generated layer + 2 disk blobs + the index
	// = 8 blobs. The first upload finished before the break, the second was
	// cut off: the resumed push must upload exactly the other 7.
	if n := atomic.LoadInt32(uploads); n != 7 {
		t.Errorf("the resumed push started %d uploads; want the 7 missing ones", n)
	}
}
