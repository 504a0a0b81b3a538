package rootfs

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"golang.org/x/sys/unix"

	"github.com/layerimg/layerimg/internal/tartest"
)

func needRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root (chown, mknod, trusted xattrs); CI runs as root")
	}
}

// entry is a tar entry for tests: type from the first letter of kind.
type entry struct {
	name, kind, body string // kind: f(ile) d(ir) l(symlink) h(ardlink) c(har)
	xattrs           map[string]string
}

func mkTar(t testing.TB, es ...entry) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range es {
		h := &tar.Header{Name: e.name, Mode: 0o644, ModTime: time.Unix(1000, 0), Format: tar.FormatPAX}
		switch e.kind {
		case "f":
			h.Typeflag, h.Size = tar.TypeReg, int64(len(e.body))
		case "d":
			h.Typeflag, h.Mode = tar.TypeDir, 0o755
		case "l":
			h.Typeflag, h.Linkname = tar.TypeSymlink, e.body
		case "h":
			h.Typeflag, h.Linkname = tar.TypeLink, e.body
		case "c":
			h.Typeflag, h.Devmajor, h.Devminor = tar.TypeChar, 1, 3
		}
		for k, v := range e.xattrs {
			if h.PAXRecords == nil {
				h.PAXRecords = map[string]string{}
			}
			h.PAXRecords[xattrPrefix+k] = v
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if e.kind == "f" {
			tw.Write([]byte(e.body))
		}
	}
	tw.Close()
	return buf.Bytes()
}

// TestHostileTars is the corpus of layers that try to write outside the
// target. Each must fail, name the entry, and leave the outside untouched.
func TestHostileTars(t *testing.T) {
	needRoot(t)
	for _, tc := range []struct {
		name    string
		entries []entry
		bad     string // the entry the error must name
	}{
		{"dotdot", []entry{{name: "../evil", kind: "f", body: "x"}}, "../evil"},
		{"absolute", []entry{{name: "/evil", kind: "f", body: "x"}}, "/evil"},
		{"inner dotdot", []entry{{name: "a/../../evil", kind: "f", body: "x"}}, "a/../../evil"},
		{"symlink parent climbs", []entry{{name: "link", kind: "l", body: "../../.."}, {name: "link/evil", kind: "f", body: "x"}}, "link/evil"},
		{"symlink chain climbs", []entry{{name: "a", kind: "l", body: "b"}, {name: "b", kind: "l", body: "c/../.."}, {name: "a/evil", kind: "f", body: "x"}}, "a/evil"},
		{"hardlink dotdot", []entry{{name: "hl", kind: "h", body: "../outside/secret"}}, "hl"},
		{"hardlink absolute", []entry{{name: "hl", kind: "h", body: "/etc/passwd"}}, "hl"},
		{"hardlink via symlink", []entry{{name: "d", kind: "l", body: "../outside"}, {name: "hl", kind: "h", body: "d/secret"}}, "hl"},
		{"whiteout dotdot", []entry{{name: "../.wh.outside", kind: "f"}}, "../.wh.outside"},
		{"whiteout of parent", []entry{{name: "a/.wh...", kind: "f"}, {name: "../.wh.outside", kind: "f"}}, "a/.wh..."},
		{"overlay xattr", []entry{{name: "d", kind: "d", xattrs: map[string]string{"trusted.overlay.opaque": "y"}}}, "d"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			top := t.TempDir()
			root, outside := filepath.Join(top, "root"), filepath.Join(top, "outside")
			os.Mkdir(root, 0o755)
			os.Mkdir(outside, 0o755)
			os.WriteFile(filepath.Join(outside, "secret"), []byte("s"), 0o600)
			err := Apply(context.Background(), root, bytes.NewReader(mkTar(t, tc.entries...)), ApplyOptions{Layer: "hostile"})
			var le *LayerError
			if !errors.As(err, &le) || le.Entry != tc.bad || le.Layer != "hostile" {
				t.Fatalf("err = %v, want a LayerError naming %q", err, tc.bad)
			}
			ents, _ := os.ReadDir(outside)
			if len(ents) != 1 {
				t.Errorf("outside now holds %d entries", len(ents))
			}
			if data, _ := os.ReadFile(filepath.Join(outside, "secret")); string(data) != "s" {
				t.Errorf("outside/secret changed")
			}
			if _, err := os.Lstat(filepath.Join(top, "evil")); err == nil {
				t.Errorf("evil written beside the root")
			}
		})
	}
}

// TestAbsoluteSymlinkStaysInside: an absolute symlink in a parent is taken
// relative to the root, as inside a container, never as the host's path.
func TestAbsoluteSymlinkStaysInside(t *testing.T) {
	needRoot(t)
	root := t.TempDir()
	err := Apply(context.Background(), root, bytes.NewReader(mkTar(t,
		entry{name: "etc", kind: "d"},
		entry{name: "link", kind: "l", body: "/etc"},
		entry{name: "link/layerimg-test", kind: "f", body: "inside"},
	)), ApplyOptions{Layer: "l"})
	if err != nil {
		t.Fatal(err)
	}
	if data, err := os.ReadFile(filepath.Join(root, "etc/layerimg-test")); err != nil || string(data) != "inside" {
		t.Fatalf("file not inside root: %v", err)
	}
	if _, err := os.Stat("/etc/layerimg-test"); err == nil {
		t.Fatal("wrote to the host's /etc")
	}
}

func layerOf(t *testing.T, data []byte) v1.Layer {
	t.Helper()
	l, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(data)), nil })
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// TestFlattenMatchesCraneExport applies whiteouts, opaque dirs, replaced
// types and hardlinks across layers and compares the tree with ggcr's
// mutate.Extract (what `crane export` runs).
func TestFlattenMatchesCraneExport(t *testing.T) {
	needRoot(t)
	layersData := [][]byte{
		mkTar(t,
			entry{name: "a/", kind: "d"}, entry{name: "a/f1", kind: "f", body: "one"}, entry{name: "a/f2", kind: "f", body: "two"},
			entry{name: "b/", kind: "d"}, entry{name: "b/x", kind: "f", body: "x"}, entry{name: "b/sub/", kind: "d"}, entry{name: "b/sub/z", kind: "f", body: "z"},
			entry{name: "c", kind: "f", body: "c"}, entry{name: "d", kind: "d"}, entry{name: "d/keep", kind: "f", body: "k"},
			entry{name: "e", kind: "f", body: "file then dir"}, entry{name: "dev", kind: "d"}, entry{name: "dev/null", kind: "c"},
		),
		mkTar(t,
			entry{name: "a/.wh.f1", kind: "f"},
			entry{name: "b/", kind: "d"}, entry{name: "b/.wh..wh..opq", kind: "f"}, entry{name: "b/y", kind: "f", body: "y"},
			entry{name: ".wh.c", kind: "f"}, entry{name: "e/", kind: "d"}, entry{name: "e/inner", kind: "f", body: "in"},
			entry{name: "d/l", kind: "l", body: "keep"}, entry{name: "d/h", kind: "h", body: "a/f2"},
		),
		mkTar(t,
			entry{name: "c", kind: "f", body: "c again"}, entry{name: "a/", kind: "d", xattrs: map[string]string{"user.test": "v"}},
		),
	}
	img := empty.Image
	for _, d := range layersData {
		var err error
		img, err = mutate.AppendLayers(img, layerOf(t, d))
		if err != nil {
			t.Fatal(err)
		}
	}
	root := t.TempDir()
	for i, d := range layersData {
		if err := Apply(context.Background(), root, bytes.NewReader(d), ApplyOptions{Layer: string(rune('0' + i))}); err != nil {
			t.Fatal(err)
		}
	}
	var mine bytes.Buffer
	if err := WriteTar(context.Background(), &mine, root, TarOptions{}); err != nil {
		t.Fatal(err)
	}
	want := tartest.Summary(t, mutate.Extract(img))
	got := tartest.Summary(t, io.NopCloser(&mine))
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("flattened tree differs from mutate.Extract\n got: %q\nwant: %q", got, want)
	}
	if v, err := unix.Lgetxattr(filepath.Join(root, "a"), "user.test", make([]byte, 8)); err != nil || v != 1 {
		t.Errorf("xattr user.test on a: %d %v", v, err)
	}
}

// TestXattrOrder checks that xattrs are set in name order, whatever the
// tar header's map order: the host lists them in the order set, and
// mkfs.ext4 -d copies that order into the disk's inodes.
func TestXattrOrder(t *testing.T) {
	needRoot(t)
	xattrs := map[string]string{"user.b": "2", "user.a": "1", "user.d": "4", "user.c": "3", "user.e": "5"}
	for i := range 10 { // map order differs from run to run; sorted must not
		root := t.TempDir()
		if err := Apply(context.Background(), root, bytes.NewReader(mkTar(t, entry{name: "d/", kind: "d", xattrs: xattrs})), ApplyOptions{Layer: "x"}); err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, 256)
		n, err := unix.Llistxattr(filepath.Join(root, "d"), buf)
		if err != nil {
			t.Fatal(err)
		}
		if got := strings.Split(strings.TrimRight(string(buf[:n]), "\x00"), "\x00"); !slices.IsSorted(got) || len(got) != 5 {
			t.Fatalf("run %d: xattrs listed as %q", i, got)
		}
	}
}

// TestOverlayRoundTrip: a layer applied in overlay form, then archived as an
// overlay upper dir, gives back the same whiteouts and opaque markers.
func TestOverlayRoundTrip(t *testing.T) {
	needRoot(t)
	in := mkTar(t,
		entry{name: ".wh.gone", kind: "f"},
		entry{name: "dir/", kind: "d"}, entry{name: "dir/.wh..wh..opq", kind: "f"}, entry{name: "dir/new", kind: "f", body: "n"},
		entry{name: "dir/.wh.old", kind: "f"},
	)
	dir := t.TempDir()
	if err := Apply(context.Background(), dir, bytes.NewReader(in), ApplyOptions{Layer: "l", Overlay: true}); err != nil {
		t.Fatal(err)
	}
	var st unix.Stat_t
	if err := unix.Lstat(filepath.Join(dir, "gone"), &st); err != nil || st.Mode&unix.S_IFMT != unix.S_IFCHR || st.Rdev != 0 {
		t.Fatalf("gone is not an overlay whiteout: %v %o", err, st.Mode)
	}
	var out bytes.Buffer
	if err := WriteTar(context.Background(), &out, dir, TarOptions{Overlay: true}); err != nil {
		t.Fatal(err)
	}
	var names []string
	tr := tar.NewReader(&out)
	for {
		h, err := tr.Next()
		if err != nil {
			break
		}
		names = append(names, h.Name)
	}
	want := ".wh.gone dir/ dir/.wh..wh..opq dir/.wh.old dir/new"
	if got := strings.Join(names, " "); got != want {
		t.Errorf("entries %q, want %q", got, want)
	}
}

// TestOverlayRoundTripUserNS: a rootless build's lower dir marks opaque
// dirs with user.overlay.opaque (what overlayfs reads with userxattr) and
// leaves device nodes and trusted.* xattrs out; an upper dir so marked
// gives the same OCI whiteouts back. (Run as root here: the marks are the
// same bytes as in a user namespace.)
func TestOverlayRoundTripUserNS(t *testing.T) {
	needRoot(t)
	in := mkTar(t,
		entry{name: "dir/", kind: "d"}, entry{name: "dir/.wh..wh..opq", kind: "f"}, entry{name: "dir/new", kind: "f", body: "n"},
		entry{name: "null", kind: "c"}, entry{name: "t", kind: "f", xattrs: map[string]string{"trusted.x": "1", "user.y": "2"}},
	)
	dir := t.TempDir()
	if err := Apply(context.Background(), dir, bytes.NewReader(in), ApplyOptions{Layer: "l", Overlay: true, UserNS: true}); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 8)
	if n, err := unix.Lgetxattr(filepath.Join(dir, "dir"), userOpaque, buf); err != nil || string(buf[:n]) != "y" {
		t.Errorf("dir: %s = %q, %v", userOpaque, buf[:n], err)
	}
	if _, err := unix.Lgetxattr(filepath.Join(dir, "dir"), overlayOpaque, buf); err == nil {
		t.Errorf("dir has %s, which no user namespace can write", overlayOpaque)
	}
	if _, err := os.Lstat(filepath.Join(dir, "null")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the device node was made: %v", err)
	}
	if _, err := unix.Lgetxattr(filepath.Join(dir, "t"), "trusted.x", buf); err == nil {
		t.Error("trusted.x was set")
	}
	if n, err := unix.Lgetxattr(filepath.Join(dir, "t"), "user.y", buf); err != nil || string(buf[:n]) != "2" {
		t.Errorf("user.y = %q, %v", buf[:n], err)
	}
	var out bytes.Buffer
	if err := WriteTar(context.Background(), &out, dir, TarOptions{Overlay: true}); err != nil {
		t.Fatal(err)
	}
	var names []string
	tr := tar.NewReader(&out)
	for {
		h, err := tr.Next()
		if err != nil {
			break
		}
		names = append(names, h.Name)
	}
	if got, want := strings.Join(names, " "), "dir/ dir/.wh..wh..opq dir/new t"; got != want {
		t.Errorf("entries %q, want %q", got, want)
	}
}

func TestWriteTarDeterministic(t *testing.T) {
	needRoot(t)
	mk := func() []byte {
		dir := t.TempDir()
		os.MkdirAll(filepath.Join(dir, "z/y"), 0o755)
		os.WriteFile(filepath.Join(dir, "z/y/f"), []byte("data"), 0o640)
		os.WriteFile(filepath.Join(dir, "a"), []byte("a"), 0o755)
		os.Chmod(filepath.Join(dir, "a"), 0o755|os.ModeSetuid)
		os.Link(filepath.Join(dir, "a"), filepath.Join(dir, "b"))
		os.Symlink("a", filepath.Join(dir, "s"))
		unix.Mkfifo(filepath.Join(dir, "fifo"), 0o600)
		os.Lchown(filepath.Join(dir, "s"), 1000, 1000)
		unix.Lsetxattr(filepath.Join(dir, "a"), "security.capability", []byte{1, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}, 0)
		epoch := time.Unix(100, 0)
		var buf bytes.Buffer
		if err := WriteTar(context.Background(), &buf, dir, TarOptions{Epoch: &epoch}); err != nil {
			t.Fatal(err)
		}
		return buf.Bytes()
	}
	a := mk()
	time.Sleep(1100 * time.Millisecond) // different mtimes, clamped away
	b := mk()
	if !bytes.Equal(a, b) {
		t.Fatal("two archives of the same tree differ")
	}
	tr := tar.NewReader(bytes.NewReader(a))
	seen := map[string]*tar.Header{}
	for {
		h, err := tr.Next()
		if err != nil {
			break
		}
		seen[h.Name] = h
		if !h.ModTime.Equal(time.Unix(100, 0)) || h.Uname != "" || !h.AccessTime.IsZero() {
			t.Errorf("%s: mtime %v uname %q atime %v", h.Name, h.ModTime, h.Uname, h.AccessTime)
		}
	}
	if h := seen["b"]; h == nil || h.Typeflag != tar.TypeLink || h.Linkname != "a" {
		t.Errorf("b not a hardlink to a: %+v", h)
	}
	if h := seen["a"]; h == nil || h.Mode != 0o4755 || h.PAXRecords[xattrPrefix+"security.capability"] == "" {
		t.Errorf("a lost setuid or capability: %+v", h)
	}
	if h := seen["s"]; h == nil || h.Uid != 1000 || h.Typeflag != tar.TypeSymlink {
		t.Errorf("s: %+v", h)
	}
	if h := seen["fifo"]; h == nil || h.Typeflag != tar.TypeFifo {
		t.Errorf("fifo: %+v", h)
	}
}
