package qcow2

import (
	"context"
	"math/rand"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

func makeRaw(t *testing.T, size int64, offs ...int64) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "disk.raw")
	f, _ := os.Create(p)
	defer f.Close()
	f.Truncate(size)
	rng := rand.New(rand.NewSource(size))
	for _, off := range offs {
		b := make([]byte, min(4096, size-off))
		rng.Read(b)
		f.WriteAt(b, off)
	}
	return p
}

func qemuImg(t *testing.T, args ...string) string {
	t.Helper()
	out, err := exec.Command("qemu-img", args...).CombinedOutput()
	if err != nil {
		t.Fatalf("qemu-img %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

func TestConvertMatchesQemuImg(t *testing.T) {
	const mib = 1 << 20
	for _, tc := range []struct {
		name string
		size int64
		offs []int64
	}{
		{"one sector", 512, []int64{0}},
		{"all zero", 64 * mib, nil},
		{"holes", 100 * mib, []int64{0, 5 * mib, 33*mib + 7, 99 * mib}},
		{"not a cluster multiple", 3*mib + 1536, []int64{3 * mib}},
		{"l2 boundary", 1200 * mib, []int64{512*mib - 4096, 512 * mib, 1199 * mib}},
		{"2 TiB sparse", 2 << 40, []int64{0, 1 << 40, 2<<40 - 4096}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			raw := makeRaw(t, tc.size, tc.offs...)
			out := filepath.Join(t.TempDir(), "disk.qcow2")
			if err := Convert(context.Background(), raw, out); err != nil {
				t.Fatal(err)
			}
			info := qemuImg(t, "info", out)
			if !strings.Contains(info, "compat: 1.1") || !strings.Contains(info, "cluster_size: 65536") {
				t.Errorf("qemu-img info:\n%s", info)
			}
			qemuImg(t, "check", out)
			if tc.size > 1<<40 {
				m := qemuImg(t, "map", "--output=json", out)
				if n := strings.Count(m, `"data": true`); n != len(tc.offs) {
					t.Errorf("%d data extents, want %d:\n%s", n, len(tc.offs), m)
				}
			} else {
				qemuImg(t, "compare", "-f", "raw", "-F", "qcow2", raw, out)
			}
			fi, _ := os.Stat(out)
			// header + data clusters + a few metadata clusters
			if max := int64(len(tc.offs)+8)*65536 + tc.size/(1<<29)*8; fi.Size() > max {
				t.Errorf("qcow2 is %d bytes, want at most %d: zero clusters must stay unallocated", fi.Size(), max)
			}
		})
	}
}
