package e2e_test

import (
	"archive/tar"
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"fmt"
	"io"
	"log/slog"
	"math/rand"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"golang.org/x/crypto/bcrypt"

	"github.com/layerimg/layerimg"
	"github.com/layerimg/layerimg/disk"
	"github.com/layerimg/layerimg/recipes"
)

func newTestLogger(w io.Writer) *slog.Logger {
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

func gunzip(data []byte) ([]byte, error) {
	zr, err := gzip.NewReader(bytes.NewReader(data))
	if err != nil {
		return nil, err
	}
	return io.ReadAll(zr)
}

type authConfig = authn.AuthConfig

func newTarReader(r io.Reader) *tar.Reader { return tar.NewReader(r) }

func needRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("run steps need root; CI runs as root")
	}
}

// busyboxContext makes a build context holding a static busybox as /bin/sh,
// so that run steps can be tested in seconds on a scratch base.
func busyboxContext(t *testing.T, recipe string, files map[string]string) string {
	t.Helper()
	bb, err := exec.LookPath("busybox")
	if err != nil {
		t.Fatal("busybox not found: apt-get install busybox-static (.ci/run does)")
	}
	dir := t.TempDir()
	os.MkdirAll(filepath.Join(dir, "bin"), 0o755)
	data, err := os.ReadFile(bb)
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(dir, "bin/busybox"), data, 0o755)
	for _, l := range []string{"sh", "cat", "echo", "mkdir", "rm", "sleep", "ls", "grep", "touch", "cp", "hostname", "ln", "test", "chmod", "mknod", "ip", "wc"} {
		os.Symlink("busybox", filepath.Join(dir, "bin", l))
	}
	for p, body := range files {
		os.MkdirAll(filepath.Dir(filepath.Join(dir, p)), 0o755)
		os.WriteFile(filepath.Join(dir, p), []byte(body), 0o644)
	}
	os.WriteFile(filepath.Join(dir, "recipe.yaml"), []byte(recipe), 0o644)
	return dir
}

func load(t *testing.T, dir string, args map[string]string) *recipes.Recipe {
	t.Helper()
	r, err := recipes.Load(filepath.Join(dir, "recipe.yaml"), args)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func build(t *testing.T, r *recipes.Recipe, o layerimg.Options) *layerimg.Result {
	t.Helper()
	res, err := layerimg.Build(context.Background(), r, o)
	if err != nil {
		t.Fatal(err)
	}
	return res
}

// layoutImage is the first image of the OCI layout at dir, as a build's
// OCILayout output holds it.
func layoutImage(t *testing.T, dir string) v1.Image {
	t.Helper()
	p, err := layout.FromPath(dir)
	if err != nil {
		t.Fatal(err)
	}
	idx, _ := p.ImageIndex()
	im, _ := idx.IndexManifest()
	img, err := idx.Image(im.Manifests[0].Digest)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

func statuses(steps []layerimg.StepPlan) string {
	var s []string
	for _, st := range steps {
		s = append(s, st.Name+"="+st.Status)
	}
	return strings.Join(s, " ")
}

// startRegistry runs Debian's docker-registry (distribution 2.8) on a free
// loopback port with its storage in a temp dir, optionally with htpasswd
// auth, and returns its host:port. It stops with the test.
func startRegistry(t *testing.T, user, pass string) string {
	t.Helper()
	if _, err := exec.LookPath("docker-registry"); err != nil {
		t.Fatal("docker-registry not found: apt-get install docker-registry (.ci/run does)")
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	dir := t.TempDir()
	auth := ""
	if user != "" {
		hash, _ := bcrypt.GenerateFromPassword([]byte(pass), bcrypt.MinCost)
		os.WriteFile(filepath.Join(dir, "htpasswd"), []byte(user+":"+string(hash)+"\n"), 0o600)
		auth = fmt.Sprintf("auth:\n  htpasswd:\n    realm: test\n    path: %s/htpasswd\n", dir)
	}
	cfg := fmt.Sprintf("version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: %s/data\n  delete:\n    enabled: true\nhttp:\n  addr: %s\n%s", dir, addr, auth)
	os.WriteFile(filepath.Join(dir, "config.yml"), []byte(cfg), 0o600)
	cmd := exec.Command("docker-registry", "serve", filepath.Join(dir, "config.yml"))
	var logBuf bytes.Buffer
	cmd.Stdout, cmd.Stderr = &logBuf, &logBuf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	for i := 0; i < 100; i++ {
		if resp, err := http.Get("http://" + addr + "/v2/"); err == nil {
			resp.Body.Close()
			return addr
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("docker-registry did not start: %s", logBuf.String())
	return ""
}

type basicAuth struct{ user, pass string }

func (b basicAuth) Authorization() (*authConfig, error) {
	return &authConfig{Username: b.user, Password: b.pass}, nil
}

type tarEntry struct {
	uid, gid int
	body     []byte
}

func tarEntries(t *testing.T, rc io.ReadCloser) map[string]tarEntry {
	t.Helper()
	defer rc.Close()
	out := map[string]tarEntry{}
	tr := newTarReader(bufio.NewReader(rc))
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(tr)
		out[h.Name] = tarEntry{h.Uid, h.Gid, body}
	}
}

// flakyProxy sits in front of a registry and fails about one request in
// four: a 500, or a connection dropped mid-flight. It stops failing after
// max failures, so a test always ends.
func flakyProxy(t *testing.T, target string, max int32) (string, *int32) {
	t.Helper()
	u, _ := url.Parse("http://" + target)
	rp := httputil.NewSingleHostReverseProxy(u)
	var failures int32
	var mu sync.Mutex
	rng := rand.New(rand.NewSource(7))
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		roll := rng.Intn(8)
		mu.Unlock()
		if r.URL.Path != "/v2/" && atomic.LoadInt32(&failures) < max && roll < 2 {
			atomic.AddInt32(&failures, 1)
			if roll == 0 {
				w.WriteHeader(http.StatusInternalServerError)
				return
			}
			if hj, ok := w.(http.Hijacker); ok {
				conn, _, err := hj.Hijack()
				if err == nil {
					conn.Close() // reset mid-request
					return
				}
			}
		}
		rp.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	return strings.TrimPrefix(srv.URL, "http://"), &failures
}

// countingProxy forwards to target, counts blob uploads started, and after
// breakAfter of them (if > 0) answers everything else with 503.
func countingProxy(t *testing.T, target string, breakAfter int32) (string, *int32) {
	t.Helper()
	u, _ := url.Parse("http://" + target)
	rp := httputil.NewSingleHostReverseProxy(u)
	var uploads int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if breakAfter > 0 && atomic.LoadInt32(&uploads) >= breakAfter {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		if r.Method == http.MethodPost && strings.HasSuffix(r.URL.Path, "/blobs/uploads/") {
			atomic.AddInt32(&uploads, 1)
		}
		rp.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	return strings.TrimPrefix(srv.URL, "http://"), &uploads
}

// fixture is the text of testdata/name: a recipe, or the head of one that
// a test completes.
func fixture(t *testing.T, name string) string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}

// contentDigest is the name cloud resources are tagged with: the raw disk's
// content digest, the same whichever file or route publishes it.
func contentDigest(t *testing.T, res *layerimg.Result) string {
	t.Helper()
	d, err := disk.ContentDigest(res.Disk.Files["raw"].Path)
	if err != nil {
		t.Fatal(err)
	}
	return d
}
