package qcow2

import (
	"os"
	"strings"
	"testing"

	"github.com/layerimg/layerimg/disk/disktest"
)

func TestConvertMatchesQemuImg(t *testing.T) {
	const mib = 1 << 20
	for _, tc := range disktest.SparseCases(
		disktest.Case{Name: "not a cluster multiple", Size: 3*mib + 1536, Offs: []int64{3 * mib}},
		disktest.Case{Name: "l2 boundary", Size: 1200 * mib, Offs: []int64{512*mib - 4096, 512 * mib, 1199 * mib}},
	) {
		t.Run(tc.Name, func(t *testing.T) {
			raw, out := disktest.ConvertCase(t, tc, Writer{}, "disk.qcow2")
			info := disktest.QemuImg(t, "info", out)
			if !strings.Contains(info, "compat: 1.1") || !strings.Contains(info, "cluster_size: 65536") {
				t.Errorf("qemu-img info:\n%s", info)
			}
			disktest.QemuImg(t, "check", out)
			if tc.Size > 1<<40 {
				disktest.CheckDataExtents(t, out, len(tc.Offs))
			} else {
				disktest.QemuImg(t, "compare", "-f", "raw", "-F", "qcow2", raw, out)
			}
			fi, _ := os.Stat(out)
			// header + data clusters + a few metadata clusters
			if max := int64(len(tc.Offs)+8)*65536 + tc.Size/(1<<29)*8; fi.Size() > max {
				t.Errorf("qcow2 is %d bytes, want at most %d: zero clusters must stay unallocated", fi.Size(), max)
			}
		})
	}
}
