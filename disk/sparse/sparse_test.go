package sparse

import (
	"bytes"
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

func TestCopyKeepsHolesAndData(t *testing.T) {
	dir := t.TempDir()
	src, _ := os.Create(filepath.Join(dir, "src"))
	defer src.Close()
	src.Truncate(64 << 20)
	src.WriteAt(bytes.Repeat([]byte{7}, 5000), 3<<20+100)
	src.WriteAt(make([]byte, 1<<20), 10<<20) // written zeros: data to the fs, skipped by us
	src.WriteAt([]byte("end"), 64<<20-3)
	ranges, err := DataRanges(src, 64<<20, 1<<20)
	if err != nil || len(ranges) == 0 {
		t.Fatalf("ranges %v, %v", ranges, err)
	}
	dst, _ := os.Create(filepath.Join(dir, "dst"))
	defer dst.Close()
	dst.Truncate(64 << 20)
	if err := Copy(dst, 0, src, 64<<20); err != nil {
		t.Fatal(err)
	}
	a, _ := os.ReadFile(src.Name())
	b, _ := os.ReadFile(dst.Name())
	if !bytes.Equal(a, b) {
		t.Fatal("copy differs")
	}
	var st syscall.Stat_t
	syscall.Stat(dst.Name(), &st)
	if st.Blocks*512 > 3<<20 {
		t.Errorf("copy occupies %d bytes: holes or zero blocks were written", st.Blocks*512)
	}
}

func TestWriteAtomicLeavesNothingOnError(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "out")
	err := WriteAtomic(p, func(f *os.File) error { f.Write([]byte("half")); return os.ErrInvalid })
	if err == nil {
		t.Fatal("no error")
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 0 {
		t.Errorf("left behind: %v", ents)
	}
	if err := WriteAtomic(p, func(f *os.File) error { _, err := f.Write([]byte("whole")); return err }); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(p); string(b) != "whole" {
		t.Errorf("content %q", b)
	}
}

func TestIsZero(t *testing.T) {
	for _, n := range []int{0, 1, 7, 8, 9, 4096} {
		b := make([]byte, n)
		if !IsZero(b) {
			t.Errorf("zero buffer of %d", n)
		}
		if n > 0 {
			b[n-1] = 1
			if IsZero(b) {
				t.Errorf("non-zero buffer of %d", n)
			}
		}
	}
}
