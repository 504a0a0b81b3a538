package rootfs

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// te is one entry of a generated tar: a header and, for files, a body.
type te struct {
	h    *tar.Header
	body string
}

func hf(name, body string) te {
	return te{&tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: 0o644, Size: int64(len(body))}, body}
}
func hd(name string) te { return te{&tar.Header{Typeflag: tar.TypeDir, Name: name, Mode: 0o755}, ""} }
func hs(name, target string) te {
	return te{&tar.Header{Typeflag: tar.TypeSymlink, Name: name, Linkname: target, Mode: 0o777}, ""}
}
func hh(name, target string) te {
	return te{&tar.Header{Typeflag: tar.TypeLink, Name: name, Linkname: target}, ""}
}

// with changes an entry's header, for the odd fields a case needs.
func with(e te, f func(*tar.Header)) te { f(e.h); return e }

func xattr(e te, name, value string) te {
	return with(e, func(h *tar.Header) {
		if h.PAXRecords == nil {
			h.PAXRecords = map[string]string{}
		}
		h.PAXRecords[xattrPrefix+name] = value
	})
}

func genTar(t testing.TB, es ...te) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range es {
		h := *e.h
		if h.ModTime.IsZero() {
			h.ModTime = time.Unix(1000, 0)
		}
		if h.Format == tar.FormatUnknown {
			h.Format = tar.FormatPAX
		}
		if err := tw.WriteHeader(&h); err != nil {
			t.Fatalf("writing %q: %v", h.Name, err)
		}
		if _, err := tw.Write([]byte(e.body)); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// rawPAX is a tar whose first entry carries the given PAX records verbatim,
// written by hand: archive/tar will not write malformed or reserved ones.
func rawPAX(t testing.TB, records string, rest []byte) []byte {
	t.Helper()
	hdr := func(name string, typ byte, size int) []byte {
		b := make([]byte, 512)
		copy(b, name)
		copy(b[100:], "0000644\x00")
		copy(b[108:], "0000000\x00")
		copy(b[116:], "0000000\x00")
		copy(b[124:], fmt.Sprintf("%011o\x00", size))
		copy(b[136:], "00000001750\x00")
		b[156] = typ
		copy(b[257:], "ustar\x0000")
		copy(b[148:], "        ")
		sum := 0
		for _, c := range b {
			sum += int(c)
		}
		copy(b[148:], fmt.Sprintf("%06o\x00 ", sum))
		return b
	}
	pad := func(n int) []byte { return make([]byte, (512-n%512)%512) }
	var buf bytes.Buffer
	buf.Write(hdr("PaxHeaders/f", 'x', len(records)))
	buf.WriteString(records)
	buf.Write(pad(len(records)))
	buf.Write(hdr("f", '0', 0))
	buf.Write(rest)
	return buf.Bytes()
}

// paxRecord formats one PAX record, whose length counts itself.
func paxRecord(k, v string) string {
	n := len(k) + len(v) + 3
	for {
		s := strconv.Itoa(n) + " " + k + "=" + v + "\n"
		if len(s) == n {
			return s
		}
		n = len(s)
	}
}

// canaryStamp is what a canary entry must keep: type, mode, owner, size, link
// count, mtime, ctime and content.
func canaryStamp(t testing.TB, p string) string {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Lstat(p, &st); err != nil {
		return "missing: " + err.Error()
	}
	s := fmt.Sprintf("mode %o uid %d gid %d size %d nlink %d mtime %d.%d ctime %d.%d",
		st.Mode, st.Uid, st.Gid, st.Size, st.Nlink, st.Mtim.Sec, st.Mtim.Nsec, st.Ctim.Sec, st.Ctim.Nsec)
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFREG:
		data, _ := os.ReadFile(p)
		sum := sha256.Sum256(data)
		s += " sha256 " + hex.EncodeToString(sum[:])
	case unix.S_IFLNK:
		l, _ := os.Readlink(p)
		s += " -> " + l
	}
	return s
}

// rootOwner is what an entry must not change in the root itself: its type,
// mode and owner.
func rootOwner(t testing.TB, p string) string {
	var st unix.Stat_t
	if err := unix.Lstat(p, &st); err != nil {
		return err.Error()
	}
	return fmt.Sprintf("mode %o uid %d gid %d", st.Mode, st.Uid, st.Gid)
}

// outsideStamps stamps every path under top but the extraction root.
func outsideStamps(t testing.TB, top, root string) map[string]string {
	t.Helper()
	m := map[string]string{}
	filepath.WalkDir(top, func(p string, d fs.DirEntry, err error) error {
		if p == root {
			m[p] = "the root"
			return filepath.SkipDir
		}
		m[p] = canaryStamp(t, p)
		return nil
	})
	return m
}

// hostileCase is a layer (after optional trusted lower layers) and what
// must come of it: refusal naming bad and containing why, or acceptance
// with check run on the root.
type hostileCase struct {
	name   string
	lower  [][]byte                                 // trusted layers applied first
	layer  func(t *testing.T, canary string) []byte // may point at the canary's host path
	bad    string                                   // the entry the refusal names; "" when accepted
	why    string                                   // in the refusal's message
	check  func(t *testing.T, root, canary string)  // when accepted
	stream bool                                     // the refusal names no entry (the stream is at fault)
}

func layerOfEntries(es ...te) func(*testing.T, string) []byte {
	return func(t *testing.T, _ string) []byte { return genTar(t, es...) }
}

func wantExists(t *testing.T, p string) {
	t.Helper()
	if _, err := os.Lstat(p); err != nil {
		t.Errorf("%v", err)
	}
}

// wantGone passes for a path deleted or, in overlay form, whited out.
func wantGone(t *testing.T, p string) {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Lstat(p, &st); err == nil && (st.Mode&unix.S_IFMT != unix.S_IFCHR || st.Rdev != 0) {
		t.Errorf("%s is still there", p)
	}
}

func wantContent(t *testing.T, p, want string) {
	t.Helper()
	if data, err := os.ReadFile(p); err != nil || string(data) != want {
		t.Errorf("%s: %q %v, want %q", p, data, err, want)
	}
}

func wantType(t *testing.T, p string, typ uint32) {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Lstat(p, &st); err != nil || st.Mode&unix.S_IFMT != typ {
		t.Errorf("%s: mode %o %v, want type %o", p, st.Mode, err, typ)
	}
}

func wantMtime(t *testing.T, p string, want time.Time) {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Lstat(p, &st); err != nil {
		t.Fatal(err)
	}
	if st.Mtim.Sec != want.Unix() || st.Mtim.Nsec != int64(want.Nanosecond()) {
		t.Errorf("%s: mtime %d.%09d, want %d.%09d", p, st.Mtim.Sec, st.Mtim.Nsec, want.Unix(), want.Nanosecond())
	}
}

// TestHostileLayers is the corpus of layers that try to reach outside the
// extraction root. Each is applied plainly and in overlay form beside a
// canary directory, and either refused with an error naming the layer and
// the entry, or accepted with everything it wrote inside the root; in both
// cases no entry of the canary (nor the root itself) is created, removed or
// changed, down to its ctime.
// hostileLayerCases is the corpus of TestHostileLayers, shared with the
// Tree's tests: the trusted lower layer and the cases.
func hostileLayerCases(t *testing.T) (lower []byte, cases []hostileCase) {
	lower = genTar(t, hd("etc/"), hf("etc/passwd", "root:x:0:0"), hd("x/"), hf("x/old", "lower"), hd("keep/"), hf("keep/f", "k"))
	long := strings.Repeat("n", 255)
	deep := strings.Repeat(strings.Repeat("d", 99)+"/", 41) + "f" // 4096 bytes
	cases = []hostileCase{
		// Whiteouts whose victim is the directory itself or its parent.
		{name: ".wh. at top", layer: layerOfEntries(hf(".wh.", "")), bad: ".wh.", why: "whiteout of no entry strictly below its directory refused"},
		{name: ".wh.. at top", layer: layerOfEntries(hf(".wh..", "")), bad: ".wh..", why: "whiteout of no entry"},
		{name: ".wh... at top", layer: layerOfEntries(hf(".wh...", "")), bad: ".wh...", why: "whiteout of no entry"},
		{name: ".wh. in subdir", layer: layerOfEntries(hd("a/"), hf("a/.wh.", "")), bad: "a/.wh.", why: "whiteout of no entry"},
		{name: ".wh.. in subdir", layer: layerOfEntries(hf("x/.wh..", "")), bad: "x/.wh..", why: "whiteout of no entry"},
		{name: ".wh... in subdir", layer: layerOfEntries(hf("x/.wh...", "")), bad: "x/.wh...", why: "whiteout of no entry"},
		{name: ".wh... as dir", layer: layerOfEntries(hd("x/.wh.../")), bad: "x/.wh.../", why: "whiteout of no entry"},
		{name: ".wh. via ./", layer: layerOfEntries(hf("./.wh.", "")), bad: "./.wh.", why: "whiteout of no entry"},
		{name: "ordinary whiteout", layer: layerOfEntries(hf("x/.wh.old", ""), hf(".wh.keep", "")), check: func(t *testing.T, root, _ string) {
			wantGone(t, filepath.Join(root, "keep"))
			wantExists(t, filepath.Join(root, "x"))
		}},

		// Traversal by name.
		{name: "dotdot", layer: layerOfEntries(hf("../evil", "x")), bad: "../evil", why: `".." refused`},
		{name: "dot dotdot", layer: layerOfEntries(hf("./../evil", "x")), bad: "./../evil", why: `".." refused`},
		{name: "inner dotdot", layer: layerOfEntries(hf("a/../../evil", "x")), bad: "a/../../evil", why: `".." refused`},
		{name: "absolute", layer: layerOfEntries(hf("/evil", "x")), bad: "/evil", why: "absolute entry name"},
		{name: "absolute canary", layer: func(t *testing.T, canary string) []byte {
			return genTar(t, hf(canary+"/secret", "pwned"))
		}, bad: "<canary>/secret", why: "absolute entry name"},
		{name: "dotdot whiteout", layer: layerOfEntries(hf("../canary/.wh.secret", "")), bad: "../canary/.wh.secret", why: `".." refused`},

		// Symlinks, then writes through them.
		{name: "absolute symlink then file", layer: layerOfEntries(hs("l", "/etc"), hf("l/evil", "in")), check: func(t *testing.T, root, _ string) {
			wantContent(t, filepath.Join(root, "etc/evil"), "in")
		}},
		{name: "symlink to canary host path then file", layer: func(t *testing.T, canary string) []byte {
			return genTar(t, hs("l", canary), hf("l/secret", "pwned"), hf("l/new", "n"))
		}, check: func(t *testing.T, root, canary string) {
			wantContent(t, filepath.Join(root, canary, "secret"), "pwned")
			wantContent(t, filepath.Join(root, canary, "new"), "n")
		}},
		{name: "relative symlink out then file", layer: layerOfEntries(hs("l", "../canary"), hf("l/secret", "pwned")), bad: "l/secret", why: "points outside the root"},
		{name: "relative symlink deep out then file", layer: layerOfEntries(hd("a/"), hs("a/l", "../../../../../../.."), hf("a/l/evil", "x")), bad: "a/l/evil", why: "points outside the root"},
		{name: "symlink chain out", layer: layerOfEntries(hs("a", "b"), hs("b", "c/../.."), hf("a/evil", "x")), bad: "a/evil", why: "outside the root"},
		{name: "symlink loop", layer: layerOfEntries(hs("a", "b"), hs("b", "a"), hf("a/evil", "x")), bad: "a/evil", why: "too many levels of symlinks"},
		{name: "symlink out then dir", layer: layerOfEntries(hs("l", "../canary"), hd("l/sub/")), bad: "l/sub/", why: "outside the root"},
		{name: "dir replaced by symlink out then file", layer: layerOfEntries(hd("w/"), hs("w", "../canary"), hf("w/secret", "x")), bad: "w/secret", why: "outside the root"},
		{name: "dir times after a later symlink", layer: func(t *testing.T, canary string) []byte {
			// Without care, the time of d/sub is set at the end through d,
			// now a symlink to the canary's host path.
			return genTar(t, hd("d/"), hd("d/sub/"), hs("d", canary))
		}, check: func(t *testing.T, root, canary string) {
			wantType(t, filepath.Join(root, "d"), unix.S_IFLNK)
		}},
		{name: "symlink out is only data", layer: layerOfEntries(hs("l", "../../../../etc/shadow"), hs("m", "/etc/shadow")), check: func(t *testing.T, root, _ string) {
			wantType(t, filepath.Join(root, "l"), unix.S_IFLNK)
			wantType(t, filepath.Join(root, "m"), unix.S_IFLNK)
		}},

		// Hardlinks.
		{name: "hardlink dotdot", layer: layerOfEntries(hh("h", "../canary/secret")), bad: "h", why: "hardlink target outside"},
		{name: "hardlink absolute", layer: func(t *testing.T, canary string) []byte {
			return genTar(t, hh("h", canary+"/secret"))
		}, bad: "h", why: "hardlink target outside"},
		{name: "hardlink to the root", layer: layerOfEntries(hh("h", ".")), bad: "h", why: "hardlink target outside"},
		{name: "hardlink to a symlink out", layer: layerOfEntries(hs("s", "../canary/secret"), hh("h", "s")), check: func(t *testing.T, root, _ string) {
			wantType(t, filepath.Join(root, "h"), unix.S_IFLNK) // the link itself, not what it names
		}},
		{name: "hardlink through a symlink out", layer: layerOfEntries(hs("d", "../canary"), hh("h", "d/secret")), bad: "h", why: "points outside the root"},
		{name: "hardlink through an absolute symlink", layer: func(t *testing.T, canary string) []byte {
			return genTar(t, hs("d", canary), hh("h", "d/secret"))
		}, bad: "h", why: "no such file"},
		{name: "hardlink through a symlink inside", layer: layerOfEntries(hs("d", "/etc"), hh("h", "d/passwd")), check: func(t *testing.T, root, _ string) {
			wantContent(t, filepath.Join(root, "h"), "root:x:0:0")
		}},
		{name: "hardlink to a directory", layer: layerOfEntries(hh("h", "etc")), bad: "h", why: "operation not permitted"},

		// Whiteouts and opaque markers through symlinked parents.
		{name: "whiteout via symlink out", layer: layerOfEntries(hs("d", "../canary"), hf("d/.wh.secret", "")), bad: "d/.wh.secret", why: "points outside the root"},
		{name: "whiteout via absolute symlink", layer: func(t *testing.T, canary string) []byte {
			return genTar(t, hs("d", canary), hf("d/.wh.secret", ""))
		}, check: func(t *testing.T, root, canary string) {
			wantExists(t, filepath.Join(root, canary)) // made inside, as a parent
		}},
		{name: "whiteout of parent via symlink", layer: layerOfEntries(hs("d", "/"), hf("d/.wh..", "")), bad: "d/.wh..", why: "whiteout of no entry"},
		{name: "whiteout via symlink to root", layer: layerOfEntries(hs("d", "/x"), hf("d/.wh.old", "")), check: func(t *testing.T, root, _ string) {
			wantGone(t, filepath.Join(root, "x/old"))
		}},
		{name: "opaque via symlink out", layer: layerOfEntries(hs("d", "../canary"), hf("d/.wh..wh..opq", "")), bad: "d/.wh..wh..opq", why: "points outside the root"},
		{name: "opaque via symlink inside", layer: layerOfEntries(hs("d", "/x"), hf("d/.wh..wh..opq", ""), hf("d/new", "n")), check: func(t *testing.T, root, _ string) {
			wantContent(t, filepath.Join(root, "x/new"), "n")
		}},
		{name: "opaque at top", layer: layerOfEntries(hf(".wh..wh..opq", ""), hf("new", "n")), check: func(t *testing.T, root, _ string) {
			wantContent(t, filepath.Join(root, "new"), "n")
		}},

		// Devices and FIFOs: kept, inside.
		{name: "char device", layer: layerOfEntries(with(hf("null", ""), func(h *tar.Header) { h.Typeflag, h.Devmajor, h.Devminor = tar.TypeChar, 1, 3 })), check: func(t *testing.T, root, _ string) {
			wantType(t, filepath.Join(root, "null"), unix.S_IFCHR)
		}},
		{name: "block device", layer: layerOfEntries(with(hf("sda", ""), func(h *tar.Header) { h.Typeflag, h.Devmajor, h.Devminor = tar.TypeBlock, 8, 0 })), check: func(t *testing.T, root, _ string) {
			wantType(t, filepath.Join(root, "sda"), unix.S_IFBLK)
		}},
		{name: "fifo", layer: layerOfEntries(with(hf("p", ""), func(h *tar.Header) { h.Typeflag = tar.TypeFifo })), check: func(t *testing.T, root, _ string) {
			wantType(t, filepath.Join(root, "p"), unix.S_IFIFO)
		}},
		{name: "device number too big", layer: layerOfEntries(with(hf("dev", ""), func(h *tar.Header) { h.Typeflag, h.Devmajor, h.Format = tar.TypeChar, 1<<33, tar.FormatGNU })), bad: "dev", why: "does not fit"},
		{name: "fifo through symlink out", layer: layerOfEntries(hs("d", "../canary"), with(hf("d/p", ""), func(h *tar.Header) { h.Typeflag = tar.TypeFifo })), bad: "d/p", why: "outside the root"},

		// Long names.
		{name: "255-byte name", layer: layerOfEntries(hf(long, "ok")), check: func(t *testing.T, root, _ string) {
			wantContent(t, filepath.Join(root, long), "ok")
		}},
		{name: "256-byte name", layer: layerOfEntries(hf(long+"n", "x")), bad: long + "n", why: "file name too long"},
		{name: "4096-byte name", layer: layerOfEntries(hf(deep, "x")), bad: deep, why: "file name too long"},

		// Oversized PAX headers: refused by the reader, naming the layer and
		// the last entry read.
		{name: "oversized pax header", layer: func(t *testing.T, _ string) []byte {
			return rawPAX(t, paxRecord("comment", strings.Repeat("A", 2<<20)), nil)
		}, stream: true, why: "reading the tar"},
		{name: "negative time", layer: func(t *testing.T, _ string) []byte {
			return rawPAX(t, paxRecord("mtime", "-1.5"), make([]byte, 1024))
		}, check: func(t *testing.T, root, _ string) {
			wantMtime(t, filepath.Join(root, "f"), time.Unix(-2, 500_000_000))
		}},
		{name: "malformed pax time", layer: func(t *testing.T, _ string) []byte {
			return append(genTar(t, hf("first", ""))[:1024], rawPAX(t, paxRecord("mtime", "1.-5"), make([]byte, 1024))...)
		}, stream: true, why: `after entry "first"`},

		// Duplicates and type changes: the last entry wins, inside.
		{name: "duplicate file", layer: layerOfEntries(hf("f", "one"), hf("f", "two")), check: func(t *testing.T, root, _ string) {
			wantContent(t, filepath.Join(root, "f"), "two")
		}},
		{name: "file to dir", layer: layerOfEntries(hf("f", "one"), hd("f/"), hf("f/g", "g")), check: func(t *testing.T, root, _ string) {
			wantContent(t, filepath.Join(root, "f/g"), "g")
		}},
		{name: "dir to file", layer: layerOfEntries(hd("x/"), hf("x", "file")), check: func(t *testing.T, root, _ string) {
			wantContent(t, filepath.Join(root, "x"), "file")
		}},
		{name: "symlink to dir", layer: func(t *testing.T, canary string) []byte {
			return genTar(t, hs("z", canary), hd("z/"), hf("z/secret", "in"))
		}, check: func(t *testing.T, root, _ string) {
			wantType(t, filepath.Join(root, "z"), unix.S_IFDIR)
			wantContent(t, filepath.Join(root, "z/secret"), "in")
		}},
		{name: "symlink to file", layer: func(t *testing.T, canary string) []byte {
			return genTar(t, hs("z", canary+"/secret"), hf("z", "in"))
		}, check: func(t *testing.T, root, _ string) {
			wantContent(t, filepath.Join(root, "z"), "in")
		}},
		{name: "symlink to device", layer: func(t *testing.T, canary string) []byte {
			return genTar(t, hs("z", canary+"/secret"), with(hf("z", ""), func(h *tar.Header) { h.Typeflag = tar.TypeFifo }))
		}, check: func(t *testing.T, root, _ string) {
			wantType(t, filepath.Join(root, "z"), unix.S_IFIFO)
		}},

		// Xattrs.
		{name: "xattr without namespace", layer: layerOfEntries(xattr(hf("f", ""), "foo", "v")), bad: "f", why: "no namespace"},
		{name: "xattr trusted.overlay", layer: layerOfEntries(xattr(hd("d/"), "trusted.overlay.opaque", "y")), bad: "d/", why: "reserved for overlayfs"},
		{name: "xattr trusted.overlay.redirect", layer: layerOfEntries(xattr(hd("d/"), "trusted.overlay.redirect", "/etc")), bad: "d/", why: "reserved for overlayfs"},
		{name: "xattr user.overlay", layer: layerOfEntries(xattr(hf("f", ""), "user.overlay.origin", "x")), bad: "f", why: "reserved for overlayfs"},
		{name: "xattr empty name", layer: layerOfEntries(xattr(hf("f", ""), "user.", "v")), bad: "f", why: "no namespace"},
		{name: "xattr huge value", layer: layerOfEntries(xattr(hf("f", ""), "user.big", strings.Repeat("v", 512<<10))), bad: "f", why: "setting xattr user.big"},
		{name: "user xattr on a symlink", layer: layerOfEntries(xattr(hs("s", "etc"), "user.x", "v")), bad: "s", why: "setting xattr user.x: operation not permitted"},
		{name: "xattr on symlink to canary", layer: func(t *testing.T, canary string) []byte {
			return genTar(t, xattr(hs("s", canary+"/secret"), "trusted.x", "v"))
		}, check: func(t *testing.T, root, _ string) {
			if n, err := unix.Lgetxattr(filepath.Join(root, "s"), "trusted.x", make([]byte, 8)); err != nil || n != 1 {
				t.Errorf("xattr not on the symlink: %d %v", n, err)
			}
		}},

		// Times: the full range ext4 keeps.
		{name: "time 1901", layer: layerOfEntries(with(hf("old", ""), func(h *tar.Header) { h.ModTime = time.Unix(-(1 << 31), 0) }), with(hd("olddir/"), func(h *tar.Header) { h.ModTime = time.Unix(-(1 << 31), 0) })), check: func(t *testing.T, root, _ string) {
			wantMtime(t, filepath.Join(root, "old"), time.Unix(-(1<<31), 0))
			wantMtime(t, filepath.Join(root, "olddir"), time.Unix(-(1<<31), 0))
		}},
		{name: "time 2446", layer: layerOfEntries(with(hf("new", ""), func(h *tar.Header) { h.ModTime = time.Date(2446, 5, 10, 0, 0, 0, 123456789, time.UTC) })), check: func(t *testing.T, root, _ string) {
			wantMtime(t, filepath.Join(root, "new"), time.Date(2446, 5, 10, 0, 0, 0, 123456789, time.UTC))
		}},

		// Owners that do not fit a uid_t or mean "unchanged" to chown(2).
		{name: "uid 4294967295", layer: layerOfEntries(with(hf("f", ""), func(h *tar.Header) { h.Uid = 1<<32 - 1 })), bad: "f", why: "uid 4294967295 is outside 0..4294967294"},
		{name: "gid 99999999999", layer: layerOfEntries(with(hf("f", ""), func(h *tar.Header) { h.Gid = 99999999999 })), bad: "f", why: "gid 99999999999 is outside"},
		{name: "uid 4294967294", layer: layerOfEntries(with(hf("f", ""), func(h *tar.Header) { h.Uid, h.Gid = 1<<32-2, 1<<32-2 })), check: func(t *testing.T, root, _ string) {
			var st unix.Stat_t
			if err := unix.Lstat(filepath.Join(root, "f"), &st); err != nil || st.Uid != 1<<32-2 || st.Gid != 1<<32-2 {
				t.Errorf("owner %d:%d %v", st.Uid, st.Gid, err)
			}
		}},
		{name: "huge uid on a whiteout", layer: layerOfEntries(with(hf(".wh.keep", ""), func(h *tar.Header) { h.Uid = 1 << 40 })), bad: ".wh.keep", why: "uid"},
		{name: "unsupported type", layer: layerOfEntries(with(hf("s", ""), func(h *tar.Header) { h.Typeflag = 'Z' })), bad: "s", why: "unsupported"},
	}
	return lower, cases
}

func TestHostileLayers(t *testing.T) {
	needRoot(t)
	lower, cases := hostileLayerCases(t)
	for _, tc := range cases {
		for _, overlay := range []bool{false, true} {
			name := tc.name
			if overlay {
				name += " (overlay)"
			}
			t.Run(name, func(t *testing.T) {
				top := t.TempDir()
				root, canary := filepath.Join(top, "root"), filepath.Join(top, "canary")
				for _, d := range []string{root, canary, filepath.Join(canary, "sub")} {
					if err := os.Mkdir(d, 0o755); err != nil {
						t.Fatal(err)
					}
				}
				os.WriteFile(filepath.Join(canary, "secret"), []byte("s"), 0o600)
				os.WriteFile(filepath.Join(canary, "sub", "f"), []byte("f"), 0o644)
				os.Symlink("secret", filepath.Join(canary, "link"))
				for i, l := range append([][]byte{lower}, tc.lower...) {
					if err := Apply(context.Background(), root, bytes.NewReader(l), ApplyOptions{Layer: fmt.Sprint("lower", i), Overlay: overlay}); err != nil {
						t.Fatal(err)
					}
				}
				before := outsideStamps(t, top, root)
				rootBefore := rootOwner(t, root)
				time.Sleep(5 * time.Millisecond) // so that a change shows in a ctime
				err := Apply(context.Background(), root, bytes.NewReader(tc.layer(t, canary)), ApplyOptions{Layer: "hostile", Overlay: overlay})
				var le *LayerError
				switch {
				case tc.bad == "" && !tc.stream:
					if err != nil {
						t.Errorf("refused: %v", err)
					}
				case !errors.As(err, &le) || le.Layer != "hostile":
					t.Errorf("err = %v, want a refusal naming layer hostile", err)
				case le.Entry != strings.ReplaceAll(tc.bad, "<canary>", canary):
					t.Errorf("err = %v, want it to name entry %q", err, tc.bad)
				case !strings.Contains(err.Error(), tc.why) || !strings.HasPrefix(err.Error(), "layer hostile: "):
					t.Errorf("err = %v, want it to say %q", err, tc.why)
				case strings.Contains(err.Error(), root):
					t.Errorf("err = %v names the host path of the root", err)
				}
				if tc.bad == "" && !tc.stream && err == nil && tc.check != nil {
					tc.check(t, root, canary)
				}
				if fi, err := os.Lstat(root); err != nil || !fi.IsDir() {
					t.Fatalf("the root is gone or replaced: %v", err)
				}
				if got := rootOwner(t, root); got != rootBefore {
					t.Errorf("the root is now %s, was %s", got, rootBefore)
				}
				after := outsideStamps(t, top, root)
				for p, s := range before {
					if after[p] != s {
						t.Errorf("outside the root, %s changed:\n was %s\n now %s", p, s, after[p])
					}
				}
				for p := range after {
					if _, ok := before[p]; !ok {
						t.Errorf("outside the root, %s was created", p)
					}
				}
				t.Logf("outcome: %.300v", err) // <nil>: accepted
			})
		}
	}
}
