package azure

import (
	"context"
	"fmt"
	"io"
	"os"
	"testing"
	"time"

	"github.com/layerimg/layerimg/disk/disktest"
	"github.com/layerimg/layerimg/disk/sparse"
)

// benchDisk is LAYERIMG_BENCH_DISK (a real image), else a sparse 2 GiB
// disk with about 450 MiB of data.
func benchDisk(b *testing.B) string {
	if p := os.Getenv("LAYERIMG_BENCH_DISK"); p != "" {
		return p
	}
	return disktest.ScatteredDisk(b, 2<<30, 450<<20)
}

// nonZero counts the disk's non-zero blocks of bs bytes, in bytes.
func nonZero(b *testing.B, p string, bs int) int64 {
	f, err := os.Open(p)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	var n int64
	buf := make([]byte, 1<<20)
	for off := int64(0); ; off += int64(len(buf)) {
		k, err := f.ReadAt(buf, off)
		for s := 0; s+bs <= k; s += bs {
			if !sparse.IsZero(buf[s : s+bs]) {
				n += int64(bs)
			}
		}
		if err == io.EOF || k < len(buf) {
			return n
		}
	}
}

// BenchmarkAzureUpload publishes a managed image through the ARM fake with
// the page upload going to Azurite, with the default 16 writers.
func BenchmarkAzureUpload(b *testing.B) {
	raw := benchDisk(b)
	data, blocks := nonZero(b, raw, 512), nonZero(b, raw, 4096)
	var res *Result
	for i := range b.N {
		b.StopTimer()
		s := fakeB(b)
		cfg := testConfig(s, io.Discard)
		cfg.Parallel, cfg.PollInterval = 16, 10*time.Millisecond
		if g := os.Getenv("LAYERIMG_BENCH_MERGE_GAP"); g != "" {
			fmt.Sscan(g, &cfg.MergeGap)
		}
		cfg.Digest = "sha256:" + string(rune('a'+i%26))
		b.StartTimer()
		start := time.Now()
		var err error
		if res, err = Publish(context.Background(), raw, cfg); err != nil {
			b.Fatal(err)
		}
		b.ReportMetric(float64(res.BytesSent)/time.Since(start).Seconds()/1e6, "MB/s")
	}
	b.StopTimer()
	b.ReportMetric(float64(res.BytesSent)/float64(data), "sent/nonzero_sectors")
	b.ReportMetric(float64(res.BytesSent)/float64(blocks), "sent/nonzero_4KiB")
	b.ReportMetric(float64(res.RangesSent), "writes")
	b.ReportMetric(float64(data)/(1<<20), "nonzero_MiB")
}
