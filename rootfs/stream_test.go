package rootfs

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"golang.org/x/sys/unix"

	"github.com/layerimg/layerimg/internal/tartest"
)

// memLayer is a layer held in memory; opens counts its reads.
type memLayer struct {
	data  []byte
	opens *int
}

func (m memLayer) Uncompressed() (io.ReadCloser, error) {
	if m.opens != nil {
		*m.opens++
	}
	return io.NopCloser(bytes.NewReader(m.data)), nil
}

// snap is what the comparison looks at in one entry.
type snap struct {
	typ          byte
	mode         int64
	uid, gid     int
	content      string // sha256 of a regular file's bytes
	size         int64
	linkname     string // a symlink's target
	xattrs       string
	mtime        time.Time
	major, minor int64
}

func (s snap) String() string {
	return fmt.Sprintf("type %c mode %#o owner %d:%d size %d content %.12s link %q xattrs %q mtime %d.%09d dev %d,%d",
		s.typ, s.mode, s.uid, s.gid, s.size, s.content, s.linkname, s.xattrs, s.mtime.Unix(), s.mtime.Nanosecond(), s.major, s.minor)
}

func sumOf(b []byte) string { s := sha256.Sum256(b); return fmt.Sprintf("%x", s) }

func xattrString(m map[string]string) string {
	var kv []string
	for k, v := range m {
		kv = append(kv, k+"="+v)
	}
	sort.Strings(kv)
	return strings.Join(kv, ",")
}

// hostSnaps reads the tree Apply made at root: every entry but the root,
// and its hard link groups (paths sharing an inode, when more than one).
func hostSnaps(t *testing.T, root string) (map[string]snap, [][]string) {
	t.Helper()
	snaps := map[string]snap{}
	byIno := map[uint64][]string{}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil || p == root {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		var st unix.Stat_t
		if err := unix.Lstat(p, &st); err != nil {
			return err
		}
		s := snap{mode: int64(st.Mode & 0o7777), uid: int(st.Uid), gid: int(st.Gid), mtime: time.Unix(st.Mtim.Sec, st.Mtim.Nsec)}
		switch st.Mode & unix.S_IFMT {
		case unix.S_IFREG:
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			s.typ, s.content, s.size = tar.TypeReg, sumOf(b), int64(len(b))
		case unix.S_IFDIR:
			s.typ = tar.TypeDir
		case unix.S_IFLNK:
			s.typ = tar.TypeSymlink
			s.linkname, _ = os.Readlink(p)
		case unix.S_IFCHR, unix.S_IFBLK:
			s.typ = tar.TypeChar
			if st.Mode&unix.S_IFMT == unix.S_IFBLK {
				s.typ = tar.TypeBlock
			}
			s.major, s.minor = int64(unix.Major(st.Rdev)), int64(unix.Minor(st.Rdev))
		case unix.S_IFIFO:
			s.typ = tar.TypeFifo
		}
		x, err := listXattrs(p)
		if err != nil {
			return err
		}
		s.xattrs = xattrString(x)
		snaps[rel] = s
		if st.Mode&unix.S_IFMT != unix.S_IFDIR && st.Nlink > 1 {
			byIno[st.Ino] = append(byIno[st.Ino], rel)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return snaps, groupsOf(byIno)
}

func groupsOf[K comparable](m map[K][]string) [][]string {
	var gs [][]string
	for _, g := range m {
		if len(g) > 1 {
			slices.Sort(g)
			gs = append(gs, g)
		}
	}
	slices.SortFunc(gs, func(a, b []string) int { return strings.Compare(a[0], b[0]) })
	return gs
}

// streamSnaps walks tr and checks the stream's promises on the way: every
// path once, clean names, parents before children, a hard link after its
// target, Headers in the same order.
func streamSnaps(t *testing.T, tr *Tree) (map[string]snap, [][]string) {
	t.Helper()
	snaps := map[string]snap{}
	links := map[string][]string{}
	var names []string
	err := tr.Walk(context.Background(), func(hdr *tar.Header, r io.Reader) error {
		name := hdr.Name
		names = append(names, name)
		if _, ok := snaps[name]; ok {
			t.Errorf("%s handed out twice", name)
		}
		if name == "" || strings.HasPrefix(name, "/") || strings.HasPrefix(name, "./") || strings.HasSuffix(name, "/") || (name != "." && filepath.Clean(name) != name) {
			t.Errorf("name %q is not clean", name)
		}
		if dir := filepath.Dir(name); dir != "." {
			if s, ok := snaps[dir]; ok && s.typ != tar.TypeDir {
				t.Errorf("%s comes after its parent %s, which is no directory", name, dir)
			} else if !ok {
				// A parent no layer named is not handed out; it must be one.
				if fi, err := tr.Lstat(dir); err != nil || !fi.IsDir() || fi.Sys().(*tar.Header) != implicitDir {
					t.Errorf("%s comes before its parent %s", name, dir)
				}
			}
		}
		if hdr.Typeflag == tar.TypeLink {
			target, ok := snaps[hdr.Linkname]
			if !ok {
				t.Errorf("hard link %s comes before its target %s", name, hdr.Linkname)
			}
			snaps[name] = target
			links[hdr.Linkname] = append(links[hdr.Linkname], name)
			return nil
		}
		s := snap{typ: hdr.Typeflag, mode: hdr.Mode & 0o7777, uid: hdr.Uid, gid: hdr.Gid, mtime: hdr.ModTime, linkname: hdr.Linkname, major: hdr.Devmajor, minor: hdr.Devminor}
		if s.typ != tar.TypeChar && s.typ != tar.TypeBlock {
			s.major, s.minor = 0, 0
		}
		x := map[string]string{}
		for k, v := range hdr.PAXRecords {
			if n, ok := strings.CutPrefix(k, xattrPrefix); ok {
				x[n] = v
			}
		}
		s.xattrs = xattrString(x)
		b, err := io.ReadAll(r)
		if err != nil {
			return err
		}
		if s.typ == tar.TypeReg {
			s.content, s.size = sumOf(b), int64(len(b))
			if s.size != hdr.Size {
				t.Errorf("%s: %d bytes read, header says %d", name, len(b), hdr.Size)
			}
		} else if len(b) > 0 {
			t.Errorf("%s (type %c) has content", name, s.typ)
		}
		snaps[name] = s
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	var hnames []string
	if err := tr.Headers(func(hdr *tar.Header) error { hnames = append(hnames, hdr.Name); return nil }); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(names, hnames) {
		t.Errorf("Headers and Walk differ:\n%q\n%q", hnames, names)
	}
	byFirst := map[string][]string{}
	for first, ls := range links {
		byFirst[first] = append([]string{first}, ls...)
	}
	return snaps, groupsOf(byFirst)
}

// compareWithApply checks that the tree holds what Apply made at root:
// the same entries, types, modes, owners, content, targets, xattrs, device
// numbers and hard link groups, and the same mtimes but for directories
// whose host time is the extraction's own (a child changed by a layer that
// did not name the directory).
func compareWithApply(t *testing.T, root string, tr *Tree, start time.Time) {
	t.Helper()
	want, wantGroups := hostSnaps(t, root)
	got, gotGroups := streamSnaps(t, tr)
	delete(got, ".") // Apply leaves the root as it is
	for p, w := range want {
		g, ok := got[p]
		if !ok {
			fi, err := tr.Lstat(p)
			if err != nil || !fi.IsDir() || w.typ != tar.TypeDir || w.mode != 0o755 || w.uid != 0 || w.gid != 0 {
				t.Errorf("%s: not in the stream (%v); Apply made %v", p, err, w)
			}
			continue
		}
		if w.typ == tar.TypeSymlink {
			g.mode, w.mode = 0, 0 // Linux symlinks have no mode of their own
		}
		if w.typ == tar.TypeDir && !w.mtime.Before(start) {
			g.mtime, w.mtime = time.Time{}, time.Time{}
		}
		if g.mtime.Equal(w.mtime) {
			g.mtime = w.mtime
		}
		if g != w {
			t.Errorf("%s differs:\n tree  %v\n Apply %v", p, g, w)
		}
	}
	for p := range got {
		if _, ok := want[p]; !ok {
			t.Errorf("%s: in the stream, not made by Apply", p)
		}
	}
	if fmt.Sprint(gotGroups) != fmt.Sprint(wantGroups) {
		t.Errorf("hard link groups:\n tree  %v\n Apply %v", gotGroups, wantGroups)
	}
}

func char(name string, major, minor int64) te {
	return with(hf(name, ""), func(h *tar.Header) { h.Typeflag, h.Devmajor, h.Devminor = tar.TypeChar, major, minor })
}

func mtime(e te, tm time.Time) te { return with(e, func(h *tar.Header) { h.ModTime = tm }) }

func owner(e te, uid, gid int) te { return with(e, func(h *tar.Header) { h.Uid, h.Gid = uid, gid }) }

// globalHeader is a tar holding a PAX global header, then es.
func globalHeader(t *testing.T, es ...te) []byte {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeXGlobalHeader, Name: "global", PAXRecords: map[string]string{"comment": "hi", "mtime": "5"}}); err != nil {
		t.Fatal(err)
	}
	tw.Flush()
	return append(buf.Bytes()[:buf.Len()], genTar(t, es...)...)
}

// treeStacks are layer stacks whose tree is compared with Apply's.
func treeStacks(t *testing.T) []struct {
	name   string
	layers [][]byte
} {
	ns := time.Unix(1700000000, 123456789)
	return []struct {
		name   string
		layers [][]byte
	}{
		{"every kind", [][]byte{genTar(t,
			hd("etc/"), hf("etc/passwd", "root:x:0:0"), owner(hf("etc/shadow", "secret"), 0, 42),
			with(hf("usr/bin/su", "su"), func(h *tar.Header) { h.Mode = 0o4755 }),
			hs("bin", "usr/bin"), owner(hs("etc/rel", "../usr"), 5, 6),
			hd("dev/"), char("dev/null", 1, 3), with(hf("dev/sda", ""), func(h *tar.Header) { h.Typeflag, h.Devmajor, h.Devminor = tar.TypeBlock, 8, 0 }),
			with(hf("run/fifo", ""), func(h *tar.Header) { h.Typeflag, h.Mode = tar.TypeFifo, 0o600 }),
			with(hd("tmp/"), func(h *tar.Header) { h.Mode = 0o1777 }),
			xattr(xattr(hf("usr/bin/ping", "ping"), "security.capability", "\x01\x00\x00\x02\x00\x20\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00"), "user.note", "kept"),
			xattr(hs("s", "etc"), "trusted.t", "v"),
			mtime(hf("ns", "nanoseconds"), ns), mtime(hd("old/"), time.Unix(-(1<<31), 0)), mtime(hf("new", ""), time.Date(2446, 5, 10, 0, 0, 0, 999, time.UTC)),
		)}},
		{"whiteouts", [][]byte{
			genTar(t, hd("a/"), hf("a/f1", "1"), hf("a/f2", "2"), hd("b/"), hd("b/sub/"), hf("b/sub/x", "x"), hf("c", "c")),
			genTar(t, hf("a/.wh.f1", ""), hf(".wh.b", ""), hf(".wh.c", ""), hf(".wh.never", "")),
			genTar(t, hf("c", "c again")),
		}},
		{"opaque", [][]byte{
			genTar(t, hd("a/"), hf("a/x", "x"), hd("a/sub/"), hf("a/sub/y", "y"), hd("keep/"), hf("keep/k", "k")),
			genTar(t, hd("a/"), hf("a/new", "n"), hf("a/.wh..wh..opq", ""), hf("a/after", "after")),
		}},
		{"nested opaque", [][]byte{
			genTar(t, hd("a/"), hd("a/b/"), hd("a/b/c/"), hf("a/b/c/x", "x"), hf("a/y", "y"), hf("a/b/z", "z")),
			genTar(t, hd("a/b/"), hf("a/b/.wh..wh..opq", ""), hf("a/b/n", "n")),
			genTar(t, hf("a/.wh..wh..opq", ""), hd("a/b/"), hf("a/b/m", "m")),
		}},
		{"opaque after a dir entry of the same layer", [][]byte{
			genTar(t, hd("d/"), hd("d/sub/"), hf("d/sub/old", "old"), hf("d/gone", "g")),
			genTar(t, hd("d/sub/"), hf("d/.wh..wh..opq", "")),
		}},
		{"opaque at the top", [][]byte{
			genTar(t, hf("a", "a"), hd("b/"), hf("b/c", "c")),
			genTar(t, hf(".wh..wh..opq", ""), hf("new", "n")),
		}},
		{"dir to file and back", [][]byte{
			genTar(t, hd("d/"), hf("d/f", "f"), hf("e", "file")),
			genTar(t, hf("d", "now a file"), hd("e/"), hf("e/in", "in")),
			genTar(t, hd("d/"), hf("d/g", "g"), hs("e", "d")),
		}},
		{"dir over dir", [][]byte{
			genTar(t, xattr(xattr(hd("d/"), "user.a", "1"), "user.b", "1"), hf("d/f", "f")),
			genTar(t, owner(xattr(with(hd("d/"), func(h *tar.Header) { h.Mode = 0o700 }), "user.b", "2"), 7, 8)),
		}},
		{"hardlink to a lower layer's file", [][]byte{
			genTar(t, hf("f", "lower"), hs("sl", "f"), char("null", 1, 3)),
			genTar(t, hh("h", "f"), hh("hs", "sl"), hh("hn", "null"), hd("d/"), hh("d/h2", "h")),
		}},
		{"hardlink target replaced later", [][]byte{
			genTar(t, hf("f", "old"), hh("h", "f"), hh("h2", "f")),
			genTar(t, hf("f", "new")),
		}},
		{"hardlink target whited out", [][]byte{
			genTar(t, hd("a/"), hf("a/f", "kept by the link"), hh("b", "a/f")),
			genTar(t, hf(".wh.a", "")),
		}},
		{"hardlink replaced itself", [][]byte{
			genTar(t, hf("f", "f"), hh("h", "f")),
			genTar(t, hf("h", "h now")),
		}},
		{"hardlink through a symlinked dir", [][]byte{
			genTar(t, hd("etc/"), hf("etc/real", "r"), hs("e", "/etc")),
			genTar(t, hh("h", "e/real"), hh("e/h2", "etc/real")),
		}},
		{"writes through symlinked parents", [][]byte{
			genTar(t, hd("etc/"), hs("l", "/etc"), hs("m", "l/sub")),
			genTar(t, hf("l/f", "f"), hf("m/deep/g", "g"), hf("l/.wh.f", ""), hf("m/x", "x")),
		}},
		{"whiteout makes its parents", [][]byte{genTar(t, hf("x/y/.wh.z", ""))}},
		{"duplicates in a layer", [][]byte{genTar(t, hf("f", "one"), hf("f", "two"), hf("g", "g"), hd("g/"), hf("g/in", "in"), hd("h/"), hf("h", "h"))}},
		{"root entry", [][]byte{genTar(t, with(hd("./"), func(h *tar.Header) { h.Mode = 0o700 }), hf("./f", "f"), hd("./d/"))}},
		{"global header", [][]byte{globalHeader(t, hf("f", "f"))}},
	}
}

// TestTreeMatchesApply: a Tree of each stack streams what Apply of the same
// layers makes on the host.
func TestTreeMatchesApply(t *testing.T) {
	needRoot(t)
	for _, st := range treeStacks(t) {
		t.Run(st.name, func(t *testing.T) {
			start := time.Now().Add(-time.Second)
			root := t.TempDir()
			tr := NewTree()
			for i, l := range st.layers {
				if err := Apply(context.Background(), root, bytes.NewReader(l), ApplyOptions{Layer: fmt.Sprint(i)}); err != nil {
					t.Fatal(err)
				}
				if err := tr.Append(context.Background(), fmt.Sprint(i), memLayer{data: l}); err != nil {
					t.Fatal(err)
				}
			}
			compareWithApply(t, root, tr, start)
		})
	}
}

// TestTreeHostileLayers runs Apply's hostile corpus through a Tree: the
// same entries are refused (naming the same layer and entry, saying the
// same thing), and what is accepted makes the same tree.
func TestTreeHostileLayers(t *testing.T) {
	needRoot(t)
	lower, cases := hostileLayerCases(t)
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			top := t.TempDir()
			root, canary := filepath.Join(top, "root"), filepath.Join(top, "canary")
			os.Mkdir(root, 0o755)
			os.Mkdir(canary, 0o755)
			os.WriteFile(filepath.Join(canary, "secret"), []byte("s"), 0o600)
			layers := append([][]byte{lower}, tc.lower...)
			ctx := context.Background()
			tr := NewTree()
			for i, l := range layers {
				must(t, Apply(ctx, root, bytes.NewReader(l), ApplyOptions{Layer: fmt.Sprint("lower", i)}))
				must(t, tr.Append(ctx, fmt.Sprint("lower", i), memLayer{data: l}))
			}
			start := time.Now().Add(-time.Second)
			layer := tc.layer(t, canary)
			applyErr := Apply(ctx, root, bytes.NewReader(layer), ApplyOptions{Layer: "hostile"})
			treeErr := tr.Append(ctx, "hostile", memLayer{data: layer})
			t.Logf("Apply: %.200v\nTree:  %.200v", applyErr, treeErr)
			if (applyErr == nil) != (treeErr == nil) {
				t.Fatalf("Apply says %v, the tree %v", applyErr, treeErr)
			}
			if applyErr == nil {
				compareWithApply(t, root, tr, start)
				return
			}
			var ae, te *LayerError
			if !errors.As(applyErr, &ae) || !errors.As(treeErr, &te) || ae.Layer != te.Layer || ae.Entry != te.Entry {
				t.Fatalf("Apply's error names %+v, the tree's %+v", ae, te)
			}
			if !strings.Contains(treeErr.Error(), tc.why) || !strings.HasPrefix(treeErr.Error(), "layer hostile: ") {
				t.Errorf("tree: %v; want it to say %q", treeErr, tc.why)
			}
			if applyErr.Error() != treeErr.Error() {
				t.Logf("worded differently:\nApply: %.300v\nTree:  %.300v", applyErr, treeErr)
			}
		})
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func treeOf(t *testing.T, layers ...[]byte) *Tree {
	t.Helper()
	tr := NewTree()
	for i, l := range layers {
		must(t, tr.Append(context.Background(), fmt.Sprint("layer", i), memLayer{data: l}))
	}
	return tr
}

// TestTreeView reads a tree as the disk stage does: links followed inside
// it, never outside, content read from the layer that holds it.
func TestTreeView(t *testing.T) {
	host := t.TempDir() // a path that exists on the host, not in the tree
	tr := treeOf(t,
		genTar(t, hd("etc/"), hf("etc/real", "image"), hf("boot/vmlinuz-1", "old kernel"), hf("big", strings.Repeat("b", 100000))),
		genTar(t, hs("rel", "etc/real"), hs("abs", "/etc/real"), hs("abshost", host+"/secret"), hs("climb", "../../../../etc/passwd"),
			hs("dirlink", "/etc"), hs("loop1", "loop2"), hs("loop2", "loop1"), hs("dangling", "nope"),
			with(hf("fifo", ""), func(h *tar.Header) { h.Typeflag = tar.TypeFifo }), hf("boot/vmlinuz-1", "new kernel"), hh("hl", "etc/real")),
	)
	read := func(p string) (string, error) {
		rc, err := tr.Open(p)
		if err != nil {
			return "", err
		}
		defer rc.Close()
		b, err := io.ReadAll(rc)
		return string(b), err
	}
	for p, want := range map[string]string{"etc/real": "image", "/rel": "image", "abs": "image", "dirlink/real": "image", "hl": "image", "boot/vmlinuz-1": "new kernel", "big": strings.Repeat("b", 100000)} {
		if got, err := read(p); err != nil || got != want {
			t.Errorf("Open(%q) = %.20q, %v; want %.20q", p, got, err, want)
		}
	}
	if _, err := read("abshost"); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("a link to a host path, not in the tree: %v", err)
	}
	var esc *ErrEscape
	if _, err := tr.Stat("climb"); !errors.As(err, &esc) || !strings.Contains(err.Error(), "/climb: symlink climb -> ../../../../etc/passwd points outside the root") {
		t.Errorf("Stat of a climbing link: %v", err)
	}
	if _, err := tr.Stat("loop1"); !errors.As(err, &esc) || !strings.Contains(err.Error(), "too many levels of symlinks") {
		t.Errorf("Stat of a loop: %v", err)
	}
	if _, err := tr.Stat("dangling"); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Stat of a dangling link: %v", err)
	}
	if _, err := tr.Stat("etc/real/x"); !errors.Is(err, syscall.ENOTDIR) {
		t.Errorf("Stat through a file: %v", err)
	}
	if _, err := read("fifo"); err == nil || !strings.Contains(err.Error(), "/fifo is a FIFO") {
		t.Errorf("Open of a FIFO: %v", err)
	}
	if _, err := read("etc"); err == nil || !strings.Contains(err.Error(), "/etc is a directory") {
		t.Errorf("Open of a directory: %v", err)
	}
	if fi, err := tr.Lstat("climb"); err != nil || fi.Mode()&fs.ModeSymlink == 0 || fi.Name() != "climb" {
		t.Errorf("Lstat of a link: %v %v", fi, err)
	}
	if fi, err := tr.Stat("/rel"); err != nil || !fi.Mode().IsRegular() || fi.Size() != 5 || fi.Name() != "real" {
		t.Errorf("Stat of a link: %v %v", fi, err)
	}
	if fi, err := tr.Stat("boot"); err != nil || !fi.IsDir() || fi.Mode().Perm() != 0o755 {
		t.Errorf("Stat of a parent no layer named: %v %v", fi, err)
	}
	if l, err := tr.Readlink("abs"); err != nil || l != "/etc/real" {
		t.Errorf("Readlink: %q %v", l, err)
	}
	if _, err := tr.Readlink("etc"); err == nil {
		t.Error("Readlink of a directory")
	}
	ents, err := tr.ReadDir("dirlink")
	if err != nil || len(ents) != 1 || ents[0].Name() != "real" || !ents[0].Type().IsRegular() {
		t.Errorf("ReadDir through a link: %v %v", ents, err)
	}
	ents, err = tr.ReadDir("/")
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	if err != nil || strings.Join(names, " ") != "abs abshost big boot climb dangling dirlink etc fifo hl loop1 loop2 rel" {
		t.Errorf("ReadDir of the root: %v %v", names, err)
	}
	if _, err := tr.ReadDir("climb"); !errors.As(err, &esc) {
		t.Errorf("ReadDir through a climbing link: %v", err)
	}
}

// TestWalkReadsOnlyWhatSurvives: a layer none of whose content is left is
// not read again, and a layer is read only as far as its last survivor.
func TestWalkReadsOnlyWhatSurvives(t *testing.T) {
	var opens [3]int
	tr := NewTree()
	for i, l := range [][]byte{
		genTar(t, hf("a", "a"), hf("b", "b")),
		genTar(t, hf("a", "a2"), hf("b", "b2"), hd("d/")),
		genTar(t, hf("c", "c")),
	} {
		must(t, tr.Append(context.Background(), fmt.Sprint(i), memLayer{data: l, opens: &opens[i]}))
	}
	var got []string
	must(t, tr.Walk(context.Background(), func(hdr *tar.Header, r io.Reader) error {
		b, _ := io.ReadAll(r)
		got = append(got, hdr.Name+"="+string(b))
		return nil
	}))
	if want := "d= a=a2 b=b2 c=c"; strings.Join(got, " ") != want {
		t.Errorf("walked %q, want %q", got, want)
	}
	if opens != [3]int{1, 2, 2} {
		t.Errorf("layers opened %v times, want [1 2 2]", opens)
	}
}

// TestWalkChangedLayer: a layer that reads differently the second time is
// an error naming it, not wrong bytes in a file.
func TestWalkChangedLayer(t *testing.T) {
	l := &flipLayer{a: genTar(t, hf("f", "one")), b: genTar(t, hf("g", "two"))}
	tr := NewTree()
	must(t, tr.Append(context.Background(), "flip", l))
	err := tr.Walk(context.Background(), func(*tar.Header, io.Reader) error { return nil })
	if err == nil || !strings.Contains(err.Error(), "layer flip") || !strings.Contains(err.Error(), "changed since it was indexed") {
		t.Errorf("err = %v", err)
	}
}

type flipLayer struct {
	a, b []byte
	n    int
}

func (f *flipLayer) Uncompressed() (io.ReadCloser, error) {
	f.n++
	if f.n == 1 {
		return io.NopCloser(bytes.NewReader(f.a)), nil
	}
	return io.NopCloser(bytes.NewReader(f.b)), nil
}

// TestTreeWriteTar: the tar of a tree is what crane export makes of the
// image, keeps every time as the layers have it, and reads back into the
// same tree.
func TestTreeWriteTar(t *testing.T) {
	layersData := [][]byte{
		genTar(t, hd("a/"), hf("a/f1", "one"), hf("a/f2", "two"), hd("b/"), hf("b/x", "x"), hf("c", "c"), mtime(hd("d/"), time.Unix(2000000000, 5)), hf("d/keep", "k")),
		genTar(t, hf("a/.wh.f1", ""), hd("b/"), hf("b/.wh..wh..opq", ""), hf("b/y", "y"), hs("d/l", "keep"), hh("d/h", "a/f2"), char("null", 1, 3)),
	}
	img := empty.Image
	for _, d := range layersData {
		var err error
		img, err = mutate.AppendLayers(img, layerOf(t, d))
		must(t, err)
	}
	tr, err := Index(context.Background(), img, nil)
	must(t, err)
	var out bytes.Buffer
	must(t, tr.WriteTar(context.Background(), &out))
	want := tartest.Summary(t, mutate.Extract(img))
	got := tartest.Summary(t, io.NopCloser(bytes.NewReader(out.Bytes())))
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("tree tar differs from mutate.Extract\n got: %q\nwant: %q", got, want)
	}
	rd := tar.NewReader(bytes.NewReader(out.Bytes()))
	for {
		h, err := rd.Next()
		if err == io.EOF {
			break
		}
		must(t, err)
		if h.Name == "d/" && !h.ModTime.Equal(time.Unix(2000000000, 5)) {
			t.Errorf("d/ has mtime %v: clamped or rounded", h.ModTime)
		}
		if h.Format != tar.FormatPAX && h.Format != tar.FormatUSTAR {
			t.Errorf("%s: format %v", h.Name, h.Format)
		}
	}
	again := treeOf(t, out.Bytes())
	var out2 bytes.Buffer
	must(t, again.WriteTar(context.Background(), &out2))
	if !bytes.Equal(out.Bytes(), out2.Bytes()) {
		t.Error("the tree of the tree's tar writes a different tar")
	}
}

// TestTreeRootEntry: an entry for the root gives it metadata (handed out as
// "."), but only a directory can be the root, and it is checked like any
// other entry.
func TestTreeRootEntry(t *testing.T) {
	tr := treeOf(t, genTar(t, hf("f", "f")))
	must(t, tr.Headers(func(h *tar.Header) error {
		if h.Name == "." {
			t.Error("a root no layer named is handed out")
		}
		return nil
	}))
	tr = treeOf(t, genTar(t, hf(".", "not a dir"), with(hd("./"), func(h *tar.Header) { h.Mode = 0o700 }), hf("f", "f")))
	var first *tar.Header
	must(t, tr.Headers(func(h *tar.Header) error {
		if first == nil {
			first = h
		}
		return nil
	}))
	if first.Name != "." || first.Mode != 0o700 || first.Typeflag != tar.TypeDir {
		t.Errorf("first entry %+v, want the root dir, 0700", first)
	}
	err := NewTree().Append(context.Background(), "bad", memLayer{data: genTar(t, owner(hd("./"), 1<<32-1, 0))})
	if err == nil || !strings.Contains(err.Error(), "uid 4294967295") {
		t.Errorf("a root entry with an impossible owner: %v", err)
	}
}

// memHeaders is a HeaderCache in memory; it counts what it was asked.
type memHeaders struct {
	m         map[v1.Hash][]*tar.Header
	hits, put int
}

func (c *memHeaders) Headers(id v1.Hash) ([]*tar.Header, bool) {
	h, ok := c.m[id]
	if ok {
		c.hits++
	}
	return h, ok
}

func (c *memHeaders) PutHeaders(id v1.Hash, h []*tar.Header) error {
	c.m[id] = h
	c.put++
	return nil
}

// An index from cached headers streams the same tar as one from the
// layers; headers that lie about an entry whose content is used are caught.
func TestIndexFromCachedHeaders(t *testing.T) {
	ctx := context.Background()
	img := empty.Image
	for _, d := range [][]byte{
		genTar(t, hd("a/"), hf("a/f1", "one"), hf("a/f2", "two"), hf("c", "c")),
		genTar(t, hf("a/.wh.f1", ""), hh("a/h", "a/f2"), hs("l", "c")),
	} {
		var err error
		img, err = mutate.AppendLayers(img, layerOf(t, d))
		must(t, err)
	}
	hc := &memHeaders{m: map[v1.Hash][]*tar.Header{}}
	var outs [2]bytes.Buffer
	for i := range outs {
		tr, err := Index(ctx, img, hc)
		must(t, err)
		must(t, tr.WriteTar(ctx, &outs[i]))
	}
	if hc.put != 2 || hc.hits != 2 {
		t.Errorf("put %d, hits %d: want each layer put once and read once", hc.put, hc.hits)
	}
	if !bytes.Equal(outs[0].Bytes(), outs[1].Bytes()) {
		t.Error("the tar from cached headers differs")
	}
	// A damaged or forged index is caught whatever field it changes, in
	// layers whose content is read and in those that hold none that
	// survives (the second's whiteout).
	for _, lie := range []struct {
		name   string
		forged func(h *tar.Header) bool
	}{
		{"size", func(h *tar.Header) bool { h.Size++; return h.Name == "a/f2" }},
		{"setuid", func(h *tar.Header) bool { h.Mode |= 0o4000; return h.Name == "c" }},
		{"owner of a dir", func(h *tar.Header) bool { h.Uid = 1000; return h.Name == "a/" }},
		{"symlink target", func(h *tar.Header) bool { h.Linkname = "/etc/shadow"; return h.Name == "l" }},
		{"whiteout dropped", func(h *tar.Header) bool { h.Name = "a/kept"; return h.Name == "a/.wh.f1" }},
		{"xattr added", func(h *tar.Header) bool {
			h.PAXRecords = map[string]string{"SCHILY.xattr.security.capability": "x"}
			return h.Name == "a/f1"
		}},
	} {
		t.Run(lie.name, func(t *testing.T) {
			forged := &memHeaders{m: map[v1.Hash][]*tar.Header{}}
			hit := false
			for id, hs := range hc.m {
				var out []*tar.Header
				for _, h := range hs {
					c := *h
					if name := c.Name; lie.forged(&c) || name != c.Name {
						hit = true
						out = append(out, &c)
						continue
					}
					out = append(out, h)
				}
				forged.m[id] = out
			}
			if !hit {
				t.Fatal("nothing forged")
			}
			tr, err := Index(ctx, img, forged)
			if err != nil {
				return // refused at once: fine too
			}
			if err := tr.WriteTar(ctx, io.Discard); err == nil || !strings.Contains(err.Error(), "differs from the headers cached") {
				t.Errorf("a forged %s: %v", lie.name, err)
			}
		})
	}
}

// A tree holds headers only, but a small layer can name millions: the tree
// is bounded in entries and in extended-header bytes.
func TestTreeBounds(t *testing.T) {
	ctx := context.Background()
	many := genTar(t, hf("a", "1"), hf("b", "2"), hf("c", "3"))
	tr := NewTree()
	tr.maxEntries = 2
	if err := tr.Append(ctx, "many", layerOf(t, many)); err == nil || !strings.Contains(err.Error(), "more than 2 entries") {
		t.Errorf("entries: %v", err)
	}
	big := genTar(t, xattr(hf("x", "1"), "user.a", strings.Repeat("v", 600)), xattr(hf("y", "1"), "user.b", strings.Repeat("v", 600)))
	tr = NewTree()
	tr.maxPAXBytes = 1000
	if err := tr.Append(ctx, "big", layerOf(t, big)); err == nil || !strings.Contains(err.Error(), "pass 1000 bytes") {
		t.Errorf("extended headers: %v", err)
	}
}
