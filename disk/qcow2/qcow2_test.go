package qcow2

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/layerimg/layerimg/disk/disktest"
)

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
			raw := disktest.MakeRaw(t, tc.size, tc.offs...)
			out := filepath.Join(t.TempDir(), "disk.qcow2")
			if err := disktest.Convert(context.Background(), raw, out, Writer{}); err != nil {
				t.Fatal(err)
			}
			info := disktest.QemuImg(t, "info", out)
			if !strings.Contains(info, "compat: 1.1") || !strings.Contains(info, "cluster_size: 65536") {
				t.Errorf("qemu-img info:\n%s", info)
			}
			disktest.QemuImg(t, "check", out)
			if tc.size > 1<<40 {
				m := disktest.QemuImg(t, "map", "--output=json", out)
				if n := strings.Count(m, `"data": true`); n != len(tc.offs) {
					t.Errorf("%d data extents, want %d:\n%s", n, len(tc.offs), m)
				}
			} else {
				disktest.QemuImg(t, "compare", "-f", "raw", "-F", "qcow2", raw, out)
			}
			fi, _ := os.Stat(out)
			// header + data clusters + a few metadata clusters
			if max := int64(len(tc.offs)+8)*65536 + tc.size/(1<<29)*8; fi.Size() > max {
				t.Errorf("qcow2 is %d bytes, want at most %d: zero clusters must stay unallocated", fi.Size(), max)
			}
		})
	}
}
