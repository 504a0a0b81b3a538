// Package debtest serves a small signed Debian archive over HTTP for
// tests: InRelease files clearsigned by a key made for the test, listing
// Packages indexes by size and SHA256, as Debian's archive does.
package debtest

import (
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ProtonMail/go-crypto/openpgp/clearsign"
	"github.com/ProtonMail/go-crypto/openpgp/packet"
	"github.com/ulikunitz/xz"
)

// Mirror is an HTTP server holding archives (path prefixes such as
// /debian and /debian-security) and their suites.
type Mirror struct {
	URL     string
	Keyring string // the public key file, for --keyring
	key     *openpgp.Entity
	mu      sync.Mutex
	files   map[string][]byte
}

// Pkg is one package a suite offers.
type Pkg struct{ Name, Version, Arch string }

// New starts a mirror, closed when the test ends.
func New(t testing.TB) *Mirror {
	t.Helper()
	e, err := openpgp.NewEntity("layerimg test archive", "", "test@example.invalid", &packet.Config{RSABits: 2048})
	if err != nil {
		t.Fatal(err)
	}
	var pub bytes.Buffer
	if err := e.Serialize(&pub); err != nil {
		t.Fatal(err)
	}
	kr := filepath.Join(t.TempDir(), "archive.gpg")
	if err := os.WriteFile(kr, pub.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	m := &Mirror{key: e, Keyring: kr, files: map[string][]byte{}}
	srv := httptest.NewServer(m)
	t.Cleanup(srv.Close)
	m.URL = srv.URL
	return m
}

func (m *Mirror) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	m.mu.Lock()
	b, ok := m.files[r.URL.Path]
	m.mu.Unlock()
	if !ok {
		http.NotFound(w, r)
		return
	}
	w.Write(b)
}

// Set replaces a file, to damage or move the archive.
func (m *Mirror) Set(path string, data []byte) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.files[path] = data
}

// Suite publishes suite in archive (a path such as /debian-security) for
// arch: its Packages index (xz, gz or plain, as ext says) and a signed
// InRelease listing it.
func (m *Mirror) Suite(t testing.TB, archive, suite, arch, ext string, pkgs []Pkg) {
	t.Helper()
	sort.Slice(pkgs, func(i, j int) bool { return pkgs[i].Name < pkgs[j].Name })
	var idx bytes.Buffer
	for _, p := range pkgs {
		fmt.Fprintf(&idx, "Package: %s\nVersion: %s\nArchitecture: %s\nDescription: test\n multi-line\n\n", p.Name, p.Version, p.Arch)
	}
	data := idx.Bytes()
	switch ext {
	case ".xz":
		var b bytes.Buffer
		w, err := xz.NewWriter(&b)
		if err != nil {
			t.Fatal(err)
		}
		w.Write(data)
		w.Close()
		data = b.Bytes()
	case ".gz":
		var b bytes.Buffer
		w := gzip.NewWriter(&b)
		w.Write(data)
		w.Close()
		data = b.Bytes()
	}
	name := "main/binary-" + arch + "/Packages" + ext
	dists := archive + "/dists/" + suite + "/"
	m.Set(dists+name, data)
	rel := fmt.Sprintf("Origin: Debian\nSuite: %s\nCodename: %s\nArchitectures: %s\nComponents: main\nSHA256:\n %x %d %s\n",
		suite, strings.TrimSuffix(strings.TrimSuffix(suite, "-security"), "-updates"), arch, sha256.Sum256(data), len(data), name)
	var signed bytes.Buffer
	w, err := clearsign.Encode(&signed, m.key.PrivateKey, nil)
	if err != nil {
		t.Fatal(err)
	}
	w.Write([]byte(rel))
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	m.Set(dists+"InRelease", signed.Bytes())
}

// Status is a dpkg status file with pkgs installed.
func Status(pkgs []Pkg) []byte {
	var b bytes.Buffer
	for _, p := range pkgs {
		fmt.Fprintf(&b, "Package: %s\nStatus: install ok installed\nPriority: optional\nArchitecture: %s\nVersion: %s\nDescription: test\n more\n\n", p.Name, p.Arch, p.Version)
	}
	// A removed package with its config left: not installed.
	b.WriteString("Package: gone\nStatus: deinstall ok config-files\nArchitecture: amd64\nVersion: 0.1-1\n\n")
	return b.Bytes()
}

// P is a Pkg.
func P(name, version, arch string) Pkg { return Pkg{Name: name, Version: version, Arch: arch} }
