package layers

import (
	"context"
	"crypto/sha256"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"errors"
	"github.com/layerimg/layerimg/recipes"
)

func TestMmdebstrapArgs(t *testing.T) {
	for _, tc := range []struct {
		name string
		bs   recipes.Bootstrap
		tail []string
	}{
		{"default suites", recipes.Bootstrap{Distro: "debian", Suite: "bookworm", Mirror: "http://deb.debian.org/debian"}, []string{
			"bookworm", "/out.tar",
			"deb http://deb.debian.org/debian bookworm main",
			"deb http://deb.debian.org/debian bookworm-updates main",
			"deb http://deb.debian.org/debian-security bookworm-security main",
		}},
		{"snapshot", recipes.Bootstrap{Distro: "debian", Suite: "bookworm", Snapshot: "20240115T000000Z"}, []string{
			"bookworm", "/out.tar",
			"deb [check-valid-until=no] https://snapshot.debian.org/archive/debian/20240115T000000Z bookworm main",
			"deb [check-valid-until=no] https://snapshot.debian.org/archive/debian/20240115T000000Z bookworm-updates main",
			"deb [check-valid-until=no] https://snapshot.debian.org/archive/debian-security/20240115T000000Z bookworm-security main",
		}},
		{"sid", recipes.Bootstrap{Distro: "debian", Suite: "sid"}, []string{"sid", "/out.tar", "deb https://deb.debian.org/debian sid main"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			bs := tc.bs.WithDefaults()
			srcs, err := bs.Sources()
			if err != nil {
				t.Fatal(err)
			}
			args := mmdebstrapArgs(bs, srcs, "amd64", false, "/seen", "/out.tar")
			got := args[len(args)-len(tc.tail):]
			if strings.Join(got, "\n") != strings.Join(tc.tail, "\n") {
				t.Errorf("args end:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(tc.tail, "\n"))
			}
		})
	}
}

// A snapshot is immutable: its key needs no network (snapshot.debian.org
// is not reachable here), and another timestamp is another key.
func TestSnapshotKey(t *testing.T) {
	o := BaseOptions{Platform: "linux/amd64", Compression: Gzip}
	a, srcs, err := BootstrapKey(context.Background(), recipes.Bootstrap{Distro: "debian", Suite: "bookworm", Snapshot: "20240115T000000Z"}, o)
	if err != nil {
		t.Fatal(err)
	}
	if len(a.Mirrors) != 0 || len(srcs) != 3 {
		t.Errorf("snapshot key: mirrors %v, sources %v", a.Mirrors, srcs)
	}
	b, _, err := BootstrapKey(context.Background(), recipes.Bootstrap{Distro: "debian", Suite: "bookworm", Snapshot: "20240116T000000Z"}, o)
	if err != nil {
		t.Fatal(err)
	}
	if a.Key() == b.Key() || !strings.Contains(b.Why(a), "definition changed") {
		t.Errorf("another snapshot: same key or why %q", b.Why(a))
	}
}

// The hook mmdebstrap runs (as sh -c HOOK exec ROOT) records the InRelease
// files apt read; checkMirrorState accepts the planned state and names the
// suite whose InRelease is another.
func TestMirrorStateHook(t *testing.T) {
	root := t.TempDir()
	lists := filepath.Join(root, "var/lib/apt/lists")
	os.MkdirAll(lists, 0o755)
	files := map[string]string{
		"deb.debian.org_debian_dists_bookworm_InRelease":                   "main\n",
		"deb.debian.org_debian-security_dists_bookworm-security_InRelease": "security\n",
	}
	for n, b := range files {
		os.WriteFile(filepath.Join(lists, n), []byte(b), 0o644)
	}
	seen := filepath.Join(t.TempDir(), "it's seen") // a quote in the path
	args := mmdebstrapArgs(recipes.Bootstrap{Variant: "minbase", Suite: "bookworm"}, nil, "amd64", false, seen, "/out")
	var hook string
	for _, a := range args {
		if h, ok := strings.CutPrefix(a, "--customize-hook="); ok {
			hook = h
		}
	}
	if out, err := exec.Command("sh", "-c", hook, "exec", root).CombinedOutput(); err != nil {
		t.Fatalf("hook: %v\n%s", err, out)
	}
	state := func(suite, body string) MirrorState {
		archive := "debian"
		if strings.HasSuffix(suite, "-security") {
			archive = "debian-security"
		}
		return MirrorState{Archive: archive, Suite: suite, InRelease: fmt.Sprintf("sha256:%x", sha256.Sum256([]byte(body)))}
	}
	if err := checkMirrorState(seen, []MirrorState{state("bookworm", "main\n"), state("bookworm-security", "security\n")}); err != nil {
		t.Errorf("same state: %v", err)
	}
	err := checkMirrorState(seen, []MirrorState{state("bookworm", "main\n"), state("bookworm-security", "security 2\n")})
	if !errors.Is(err, ErrMirrorMoved) || !strings.Contains(err.Error(), "debian-security bookworm-security (planned") {
		t.Errorf("moved: err = %v", err)
	}
	// No InRelease in apt's lists: said so, not taken for a move.
	empty := filepath.Join(t.TempDir(), "empty")
	os.WriteFile(empty, nil, 0o644)
	if err := checkMirrorState(empty, []MirrorState{state("bookworm", "main\n")}); err == nil || errors.Is(err, ErrMirrorMoved) || !strings.Contains(err.Error(), "found no InRelease") {
		t.Errorf("no InRelease: err = %v", err)
	}
}

func TestMirrorStatesTimeout(t *testing.T) {
	block := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-block:
		case <-r.Context().Done():
		}
	}))
	defer srv.Close()
	defer close(block)
	src := recipes.AptSource{Archive: "debian", URL: srv.URL + "/debian", Suite: "bookworm"}
	began := time.Now()
	_, err := MirrorStates(context.Background(), []recipes.AptSource{src}, 200*time.Millisecond)
	if err == nil || !strings.Contains(err.Error(), "GET "+srv.URL+"/debian/dists/bookworm/InRelease: no answer within 200ms") {
		t.Errorf("err = %v", err)
	}
	if d := time.Since(began); d > 5*time.Second {
		t.Errorf("took %s", d)
	}
}
