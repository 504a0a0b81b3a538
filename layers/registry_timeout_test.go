package layers

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/layerimg/layerimg/recipes"
)

// silentRegistry accepts connections and never answers.
func silentRegistry(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var conns []net.Conn
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			c.Close()
		}
	})
	return ln.Addr().String()
}

// timeoutCacheArtifact is a cache manifest and its index, as a registry
// serves them.
func timeoutCacheArtifact(t *testing.T) (manifest, index []byte) {
	t.Helper()
	zero := v1.Hash{Algorithm: "sha256", Hex: strings.Repeat("0", 64)}
	index, err := json.Marshal(CacheIndex{Version: 1, Entries: []Entry{{Key: "sha256:k1", Step: "trickled",
		Layer: Descriptor{Digest: zero, DiffID: zero, MediaType: types.OCILayer}}}})
	if err != nil {
		t.Fatal(err)
	}
	d, _, _ := v1.SHA256(bytes.NewReader(index))
	manifest, err = json.Marshal(v1.Manifest{SchemaVersion: 2, MediaType: types.OCIManifestSchema1,
		Config: v1.Descriptor{MediaType: CacheConfigType, Digest: d, Size: int64(len(index))}})
	if err != nil {
		t.Fatal(err)
	}
	return manifest, index
}

// slowRegistry serves a cache artifact over TLS; stall names what it sends
// only half of before going quiet ("manifests" or "blobs"), and a positive
// trickle sends blobs a few bytes at a time instead.
type slowRegistry struct {
	stall   string
	trickle time.Duration
	done    chan struct{}
}

func (s *slowRegistry) start(t *testing.T, tls bool) string {
	t.Helper()
	manifest, index := timeoutCacheArtifact(t)
	s.done = make(chan struct{})
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var body []byte
		switch {
		case r.URL.Path == "/v2/":
			return
		case strings.Contains(r.URL.Path, "/manifests/"):
			w.Header().Set("Content-Type", string(types.OCIManifestSchema1))
			body = manifest
		case strings.Contains(r.URL.Path, "/blobs/"):
			body = index
		default:
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Length", fmt.Sprint(len(body)))
		if r.Method == http.MethodHead {
			return
		}
		f := w.(http.Flusher)
		switch {
		case s.stall != "" && strings.Contains(r.URL.Path, "/"+s.stall+"/"):
			w.Write(body[:len(body)/2])
			f.Flush()
			select {
			case <-r.Context().Done():
			case <-s.done:
			}
		case s.trickle > 0 && strings.Contains(r.URL.Path, "/blobs/"):
			for len(body) > 0 {
				n := min(len(body), max(1, len(index)/16))
				w.Write(body[:n])
				f.Flush()
				body = body[n:]
				time.Sleep(s.trickle)
			}
		default:
			w.Write(body)
		}
	})
	var srv *httptest.Server
	if tls {
		srv = httptest.NewTLSServer(h)
	} else {
		srv = httptest.NewServer(h)
	}
	t.Cleanup(srv.Close)
	t.Cleanup(func() { close(s.done) }) // runs first: lets stalled handlers return
	return srv.Listener.Addr().String()
}

// lockedBuffer collects log lines written from several goroutines.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// loadCacheFrom runs LoadRemoteCaches, which only warns, and returns the
// warning as an error.
func loadCacheFrom(ctx context.Context, host string, reg Registry) error {
	var log lockedBuffer
	reg.Log = slog.New(slog.NewTextHandler(&log, nil))
	rc := LoadRemoteCaches(ctx, []string{host + "/cache:1"}, reg)
	if len(rc.entries) != 0 {
		return nil
	}
	return fmt.Errorf("%s", log.String())
}

// TestRegistryTimeoutDefaults checks that the production defaults fail a
// silent or stalling registry well within two minutes, naming it.
func TestRegistryTimeoutDefaults(t *testing.T) {
	if testing.Short() {
		t.Skip("takes about 30s")
	}
	t.Parallel()
	silent := silentRegistry(t)
	stallManifest := (&slowRegistry{stall: "manifests"}).start(t, true)
	stallBlob := (&slowRegistry{stall: "blobs"}).start(t, true)
	base := func(host string, insecure bool) func(context.Context) error {
		return func(ctx context.Context) error {
			o := BaseOptions{Platform: "linux/amd64"}
			if insecure {
				o.InsecureRegistries = []string{host}
			}
			_, err := ResolveBase(ctx, nil, recipes.Base{Ref: host + "/base:1"}, o)
			return err
		}
	}
	cache := func(host string, insecure bool) func(context.Context) error {
		return func(ctx context.Context) error {
			reg := Registry{}
			if insecure {
				reg.Insecure = []string{host}
			}
			return loadCacheFrom(ctx, host, reg)
		}
	}
	for _, tc := range []struct {
		name string
		host string
		call func(string, bool) func(context.Context) error
		ins  bool
	}{
		{"silent/base/insecure", silent, base, true},
		{"silent/base/secure", silent, base, false},
		{"silent/cache/insecure", silent, cache, true},
		{"silent/cache/secure", silent, cache, false},
		{"stalled/base", stallManifest, base, true},
		{"stalled/cache", stallBlob, cache, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			start := time.Now()
			err := tc.call(tc.host, tc.ins)(ctx)
			if ctx.Err() != nil {
				t.Fatalf("still waiting on %s after 2 minutes: the registry timeouts in Registry have regressed (err: %v)", tc.host, err)
			}
			if err == nil {
				t.Fatal("succeeded against a registry that never answers")
			}
			if !strings.Contains(err.Error(), tc.host) {
				t.Errorf("error does not name the registry %s: %v", tc.host, err)
			}
			t.Logf("failed after %s: %v", time.Since(start).Round(100*time.Millisecond), err)
		})
	}
}

// shortTimeouts make the tests below fast; the figures are not what they test.
func shortTimeouts(insecure ...string) Registry {
	return Registry{Insecure: insecure, DialTimeout: time.Second, TLSHandshakeTimeout: 500 * time.Millisecond,
		ResponseHeaderTimeout: 500 * time.Millisecond, CommitTimeout: 500 * time.Millisecond,
		StallTimeout: 500 * time.Millisecond, RetryBudget: 2 * time.Second}
}

func TestRegistryTimeoutShort(t *testing.T) {
	t.Parallel()
	silent := silentRegistry(t)
	stallManifest := (&slowRegistry{stall: "manifests"}).start(t, true)
	stallBlob := (&slowRegistry{stall: "blobs"}).start(t, true)
	for _, tc := range []struct {
		name, host string
		reg        Registry
		want       string
	}{
		{"silent/insecure", silent, shortTimeouts(silent), "sent no response headers within 500ms"},
		{"silent/secure", silent, shortTimeouts(), "did not complete the TLS handshake within 500ms"},
		{"stalled/manifest", stallManifest, shortTimeouts(stallManifest), "sent no data for 500ms"},
		{"stalled/blob", stallBlob, shortTimeouts(stallBlob), "sent no data for 500ms"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			rc := &RemoteCache{reg: tc.reg}
			_, _, err := rc.readIndex(t.Context(), tc.host+"/cache:1")
			if err == nil {
				t.Fatal("read a cache from a registry that never answers")
			}
			if !strings.Contains(err.Error(), "registry "+tc.host+" "+tc.want) {
				t.Errorf("error should say %q of %s: %v", tc.want, tc.host, err)
			}
		})
	}
}

// TestRegistryTimeoutPush checks that pushes are bounded too: a registry
// that stops reading an upload fails it.
func TestRegistryTimeoutPush(t *testing.T) {
	t.Parallel()
	done := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.Method == http.MethodPost:
			w.Header().Set("Location", "/v2/cache/blobs/uploads/1")
			w.WriteHeader(http.StatusAccepted)
		case r.Method == http.MethodPatch:
			select { // never reads the body
			case <-r.Context().Done():
			case <-done:
			}
		case r.URL.Path == "/v2/":
		default:
			http.NotFound(w, r)
		}
	}))
	t.Cleanup(srv.Close)
	t.Cleanup(func() { close(done) })
	host := srv.Listener.Addr().String()
	// Larger than the socket buffers, so the upload has to wait for reads.
	blob := static.NewLayer(make([]byte, 64<<20), types.OCILayer)
	err := PushCache(t.Context(), host+"/cache:1", CacheExport{Blobs: []v1.Layer{blob}}, shortTimeouts(host))
	if err == nil || !strings.Contains(err.Error(), "registry "+host+" accepted no data for 500ms") {
		t.Fatalf("push to a registry that stops reading: %v", err)
	}
}

// TestRegistryTimeoutRetryBudget checks that a registry answering 503 is
// given up on after the retry budget, not after every backoff step.
func TestRegistryTimeoutRetryBudget(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/v2/" {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
	}))
	t.Cleanup(srv.Close)
	host := srv.Listener.Addr().String()
	reg := shortTimeouts(host)
	reg.RetryBudget = time.Second
	reg.RetryBackoff.Duration, reg.RetryBackoff.Factor, reg.RetryBackoff.Steps = 300*time.Millisecond, 1, 1000
	rc := &RemoteCache{reg: reg}
	_, _, err := rc.readIndex(t.Context(), host+"/cache:1")
	if err == nil || !strings.Contains(err.Error(), "registry "+host+": giving up after") {
		t.Fatalf("want the retry budget to end the retries: %v", err)
	}
}

// TestRegistryTimeoutSlowBody checks that the stall guard is not a
// deadline: a body that trickles in for longer than the stall limit, but
// never pauses that long, is read in full.
func TestRegistryTimeoutSlowBody(t *testing.T) {
	t.Parallel()
	s := &slowRegistry{trickle: 200 * time.Millisecond}
	host := s.start(t, false)
	reg := shortTimeouts(host)
	reg.StallTimeout = time.Second
	_, index := timeoutCacheArtifact(t)
	if want := 16 * s.trickle; want < 3*reg.StallTimeout || len(index) < 16 {
		t.Fatalf("the index trickles in over %s; make it longer than the stall limit %s", want, reg.StallTimeout)
	}
	rc := &RemoteCache{reg: reg}
	idx, _, err := rc.readIndex(t.Context(), host+"/cache:1")
	if err != nil {
		t.Fatal(err)
	}
	if len(idx.Entries) != 1 || idx.Entries[0].Step != "trickled" {
		t.Errorf("read %+v", idx)
	}
}
