package ext4

import (
	"archive/tar"
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

func need(t *testing.T, tools ...string) {
	t.Helper()
	for _, tool := range tools {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s not installed (Debian: e2fsprogs)", tool)
		}
	}
}

// fsck runs e2fsck -fn on img and fails the test on anything it reports.
func fsck(t *testing.T, img string) {
	t.Helper()
	out, err := exec.Command("e2fsck", "-fn", img).CombinedOutput()
	if err != nil {
		t.Fatalf("e2fsck -fn %s: %v\n%s", img, err, out)
	}
}

func debugfs(t *testing.T, img, cmd string) string {
	t.Helper()
	out, err := exec.Command("debugfs", "-R", cmd, img).CombinedOutput()
	if err != nil {
		t.Fatalf("debugfs -R %q: %v\n%s", cmd, err, out)
	}
	return string(out)
}

func testOptions(size int64) Options {
	return Options{Size: size, Label: "test", UUID: [16]byte{1, 2, 3, 4}, HashSeed: [16]byte{9, 8, 7, 6, 5}, Epoch: 1700000000}
}

// build writes a filesystem of size bytes at off in a new file.
func build(t *testing.T, size, off int64, add func(w *Writer)) string {
	t.Helper()
	img := filepath.Join(t.TempDir(), "fs.img")
	f, err := os.Create(img)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := f.Truncate(off + size); err != nil {
		t.Fatal(err)
	}
	w, err := New(f, off, testOptions(size))
	if err != nil {
		t.Fatal(err)
	}
	add(w)
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return img
}

func addOK(t *testing.T, w *Writer, h *tar.Header, data []byte) {
	t.Helper()
	if h.ModTime.IsZero() {
		h.ModTime = time.Unix(1600000000, 0)
	}
	if err := w.Add(h, bytes.NewReader(data)); err != nil {
		t.Fatal(err)
	}
}

func TestDirHashMatchesDebugfs(t *testing.T) {
	need(t, "debugfs")
	img := build(t, 16<<20, 0, func(*Writer) {})
	opts := testOptions(0)
	var seed [4]uint32
	for i := range seed {
		seed[i] = uint32(opts.HashSeed[4*i]) | uint32(opts.HashSeed[4*i+1])<<8 | uint32(opts.HashSeed[4*i+2])<<16 | uint32(opts.HashSeed[4*i+3])<<24
	}
	uuid := fmt.Sprintf("%x-%x-%x-%x-%x", opts.HashSeed[0:4], opts.HashSeed[4:6], opts.HashSeed[6:8], opts.HashSeed[8:10], opts.HashSeed[10:16])
	re := regexp.MustCompile(`is 0x([0-9a-f]+) \(minor 0x([0-9a-f]+)\)`)
	for _, name := range []string{"a", "hello", "lost+found", "file-12345", strings.Repeat("long-name-", 10), strings.Repeat("z", 255)} {
		out := debugfs(t, img, fmt.Sprintf("dx_hash -h half_md4 -s %s %s", uuid, name))
		m := re.FindStringSubmatch(out)
		if m == nil {
			t.Fatalf("debugfs said %q", out)
		}
		h, minor := dirHash(name, seed)
		if got := fmt.Sprintf("%x %x", h, minor); got != m[1]+" "+m[2] {
			t.Errorf("hash of %q: got %s, debugfs says %s %s", name, got, m[1], m[2])
		}
	}
}

// A file of many separate runs needs extent tree blocks: 3000 extents is
// two levels below the inode (4 x 340 leaves hold 1360).
func TestDeepExtentTree(t *testing.T) {
	need(t, "e2fsck", "debugfs")
	const blocks = 6000
	data := make([]byte, blocks*blockSize)
	for i := 0; i < blocks; i += 2 {
		copy(data[i*blockSize:], fmt.Sprintf("block %d", i))
	}
	img := build(t, 64<<20, 1<<20, func(w *Writer) {
		addOK(t, w, &tar.Header{Name: "sparse", Typeflag: tar.TypeReg, Mode: 0o644, Size: int64(len(data))}, data)
	})
	part := filepath.Join(t.TempDir(), "part.img")
	raw, err := os.ReadFile(img)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(raw[:1<<20], make([]byte, 1<<20)) {
		t.Fatal("the writer wrote before its offset")
	}
	if err := os.WriteFile(part, raw[1<<20:], 0o644); err != nil {
		t.Fatal(err)
	}
	fsck(t, part)
	out := debugfs(t, part, "stat /sparse")
	if !strings.Contains(out, "Level Entries") && !strings.Contains(out, "EXTENTS") {
		t.Fatalf("no extents in %s", out)
	}
	dump := filepath.Join(t.TempDir(), "dump")
	debugfs(t, part, "dump /sparse "+dump)
	got, err := os.ReadFile(dump)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, data) {
		t.Fatal("the file read back differs")
	}
	ex := debugfs(t, part, "ex /sparse")
	if !strings.Contains(ex, " 2/ 2 ") {
		t.Errorf("want a tree of depth 2:\n%s", ex[:min(len(ex), 600)])
	}
}

func TestEncodeTime(t *testing.T) {
	for _, sec := range []int64{-1 << 31, -1, 0, 1<<31 - 1, 1 << 31, 4000000000, 3<<32 + 1<<31 - 1} {
		lo, extra := encodeTime(time.Unix(sec, 999999999))
		back := int64(int32(lo)) + int64(extra&3)<<32
		if back != sec || extra>>2 != 999999999 {
			t.Errorf("%d: got %d ns %d", sec, back, extra>>2)
		}
	}
}

// An error after an entry's inode was made leaves the writer unusable, so
// that no half-made inode reaches a filesystem that Close calls finished.
func TestErrorAfterInodeIsSticky(t *testing.T) {
	f, err := os.Create(filepath.Join(t.TempDir(), "fs.img"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	f.Truncate(16 << 20)
	w, err := New(f, 0, testOptions(16<<20))
	if err != nil {
		t.Fatal(err)
	}
	mt := time.Unix(1600000000, 0)
	// A bad name changes nothing: the writer goes on.
	if err := w.Add(&tar.Header{Name: strings.Repeat("n", 256), Typeflag: tar.TypeReg, ModTime: mt}, bytes.NewReader(nil)); err == nil {
		t.Fatal("a 256-byte name was taken")
	}
	if err := w.Add(&tar.Header{Name: "ok", Typeflag: tar.TypeReg, ModTime: mt}, bytes.NewReader(nil)); err != nil {
		t.Fatalf("after a refused name: %v", err)
	}
	// Short content fails after the inode is made: sticky.
	short := w.Add(&tar.Header{Name: "short", Typeflag: tar.TypeReg, Size: 10, ModTime: mt}, strings.NewReader("abc"))
	if short == nil || !strings.Contains(short.Error(), "ends 7 bytes short of the 10") {
		t.Fatalf("short content: %v", short)
	}
	if err := w.Add(&tar.Header{Name: "later", Typeflag: tar.TypeReg, ModTime: mt}, bytes.NewReader(nil)); err == nil || err.Error() != short.Error() {
		t.Errorf("Add after the short file: %v", err)
	}
	if err := w.Close(); err == nil {
		t.Error("Close after the short file succeeded")
	}
}

func TestSizeLimits(t *testing.T) {
	for _, size := range []int64{minSize - blockSize, minSize + 1, maxBlocks*blockSize + blockSize} {
		if _, err := New(nil, 0, testOptions(size)); err == nil {
			t.Errorf("size %d was taken", size)
		}
	}
}
