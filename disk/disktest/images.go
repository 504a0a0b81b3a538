package disktest

import (
	"math/rand"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// MakeRaw writes a sparse raw disk of size bytes with a 4 KiB run of seeded
// random bytes at each offset (clipped at the end).
func MakeRaw(t testing.TB, size int64, offs ...int64) string {
	t.Helper()
	f := createHole(t, size)
	defer f.Close()
	rng := rand.New(rand.NewSource(size))
	for _, off := range offs {
		b := make([]byte, min(4096, size-off))
		rng.Read(b)
		if _, err := f.WriteAt(b, off); err != nil {
			t.Fatal(err)
		}
	}
	return f.Name()
}

// QemuImg runs qemu-img, the outside oracle for every disk format, and
// fails the test on a non-zero exit.
func QemuImg(t testing.TB, args ...string) string {
	t.Helper()
	if _, err := exec.LookPath("qemu-img"); err != nil {
		t.Fatal("qemu-img not found: apt-get install qemu-utils (.ci/run does)")
	}
	out, err := exec.Command("qemu-img", args...).CombinedOutput()
	if err != nil {
		t.Fatalf("qemu-img %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// ScatteredDisk writes a sparse disk of size bytes holding about data bytes
// in extents of 64 KiB to 4 MiB at seeded random 4 KiB-aligned offsets, as a
// filesystem lays files out (extents may overlap). Upload benchmarks use it.
func ScatteredDisk(t testing.TB, size, data int64) string {
	t.Helper()
	f := createHole(t, size)
	defer f.Close()
	rng := rand.New(rand.NewSource(size ^ data))
	buf := make([]byte, 4<<20)
	for i := range buf {
		buf[i] = byte(rng.Intn(255) + 1)
	}
	for written := int64(0); written < data; {
		n := int64(64<<10) << rng.Intn(7)
		off := rng.Int63n((size-n)/4096) * 4096
		if _, err := f.WriteAt(buf[:n], off); err != nil {
			t.Fatal(err)
		}
		written += n
	}
	return f.Name()
}

// createHole creates disk.raw in a temporary directory: size bytes, all hole.
func createHole(t testing.TB, size int64) *os.File {
	t.Helper()
	f, err := os.Create(filepath.Join(t.TempDir(), "disk.raw"))
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(size); err != nil {
		f.Close()
		t.Fatal(err)
	}
	return f
}
