package vmdk

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
	for _, tc := range disktest.SparseCases(
		disktest.Case{Name: "not a grain multiple", Size: 3*mib + 1536, Offs: []int64{3 * mib}},
		disktest.Case{Name: "gt boundary", Size: 64 * mib, Offs: []int64{32*mib - 4096, 32 * mib}},
	) {
		t.Run(tc.Name, func(t *testing.T) {
			raw, out := disktest.ConvertCase(t, tc, Writer{CID: 0x1234, Name: "disk.vmdk"}, "disk.vmdk")
			info := disktest.QemuImg(t, "info", out)
			if !strings.Contains(info, "create type: streamOptimized") || !strings.Contains(info, "compressed: true") {
				t.Errorf("qemu-img info:\n%s", info)
			}
			disktest.QemuImg(t, "check", out)
			// compare needs equal sizes (the VMDK rounds up to a sector) and
			// reads every byte, too slow for 2 TiB: there, map the data.
			switch {
			case tc.Size > 1<<30:
				disktest.CheckDataExtents(t, out, len(tc.Offs))
			case tc.Size%512 == 0:
				disktest.QemuImg(t, "compare", "-f", "raw", "-F", "vmdk", raw, out)
			}
			fi, _ := os.Stat(out)
			if max := int64(128<<10) + int64(len(tc.Offs))*(12<<10) + tc.Size/(32*mib)*4/512*512 + 4096; fi.Size() > max {
				t.Errorf("vmdk is %d bytes; zero grains should be left out (max %d)", fi.Size(), max)
			}
		})
	}
}

func TestConvertDeterministicAcrossWorkers(t *testing.T) {
	raw := disktest.MakeRaw(t, 40<<20, 0, 1<<20, 2<<20, 7<<20, 39<<20)
	var sums []string
	for _, w := range []int{1, 2, 7} {
		out := filepath.Join(t.TempDir(), "d.vmdk")
		if err := disktest.Convert(context.Background(), raw, out, Writer{Workers: w, Name: "d.vmdk"}); err != nil {
			t.Fatal(err)
		}
		b, _ := os.ReadFile(out)
		sums = append(sums, string(b))
	}
	if sums[0] != sums[1] || sums[1] != sums[2] {
		t.Error("output depends on the number of workers")
	}
}

func TestConvertCancelLeavesNothing(t *testing.T) {
	raw := disktest.MakeRaw(t, 64<<20, 0, 32<<20)
	out := filepath.Join(t.TempDir(), "d.vmdk")
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := disktest.Convert(ctx, raw, out, Writer{Name: "d.vmdk"}); err == nil {
		t.Fatal("cancelled conversion succeeded")
	}
	ents, _ := os.ReadDir(filepath.Dir(out))
	if len(ents) != 0 {
		t.Errorf("left behind: %v", ents)
	}
}
