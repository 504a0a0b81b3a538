package aws

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"testing"
	"time"

	"github.com/layerimg/layerimg/disk/disktest"
	"github.com/layerimg/layerimg/internal/awsfake"
)

// benchDisk is a sparse 4 GiB disk with about 450 MiB of data; it returns
// the path and the data's non-zero 4 KiB pages in bytes.
func benchDisk(b *testing.B) (string, int64) {
	p := disktest.ScatteredDisk(b, 4<<30, 450<<20)
	return p, dataBytes(b, p)
}

// BenchmarkEBSDirect uploads the 4 GiB disk to the fake with 50 ms added to
// every call, as a distant region would, with the default 32 workers.
func BenchmarkEBSDirect(b *testing.B) {
	env(b)
	raw, data := benchDisk(b)
	if p := os.Getenv("LAYERIMG_BENCH_DISK"); p != "" { // a real image instead
		raw, data = p, dataBytes(b, p)
	}
	s := awsfake.New()
	defer s.Close()
	s.Latency = 50 * time.Millisecond
	s.PendingPolls = 0
	blocks := 0
	b.ResetTimer()
	for i := range b.N {
		cfg := Config{Region: "eu-west-1", Recipe: "bench", Digest: "sha256:bench", Name: "bench-" + string(rune('a'+i%26)) + "-{{.Time}}",
			Endpoint: s.URL, HTTPClient: s.Client(), PollInterval: time.Millisecond, Force: true,
			Now: time.Unix(int64(i), 0)}
		start := time.Now()
		res, err := Publish(context.Background(), raw, cfg)
		if err != nil {
			b.Fatal(err)
		}
		el := time.Since(start)
		blocks = int(res.BlocksSent)
		b.ReportMetric(float64(res.BytesSent)/el.Seconds()/1e6, "MB/s_blocks")
		b.ReportMetric(float64(res.BytesSent)/float64(data), "sent/data")
	}
	b.StopTimer()
	b.ReportMetric(float64(blocks), "blocks")
	b.ReportMetric(float64(len(nonZeroBlocksB(b, raw))), "nonzero_blocks")
	b.ReportMetric(float64(data)/(1<<20), "data_MiB")
}

// dataBytes counts the non-zero 4 KiB pages of p, in bytes.
func dataBytes(b *testing.B, p string) int64 {
	f, err := os.Open(p)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	var n int64
	buf := make([]byte, 4096)
	for {
		k, err := io.ReadFull(f, buf)
		if k > 0 && !isZero(buf[:k]) {
			n += 4096
		}
		if err != nil {
			return n
		}
	}
}

func nonZeroBlocksB(b *testing.B, p string) map[int32]bool {
	f, err := os.Open(p)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	out := map[int32]bool{}
	buf := make([]byte, BlockSize)
	for i := int32(0); ; i++ {
		n, err := io.ReadFull(f, buf)
		if n > 0 && !isZero(buf[:n]) {
			out[i] = true
		}
		if err != nil {
			return out
		}
	}
}

// BenchmarkEBSIncremental publishes the 4 GiB disk once (untimed), then
// rewrites 64 scattered 64 KiB extents (4 MiB of data, as a package update
// might) and publishes again from the first snapshot.
func BenchmarkEBSIncremental(b *testing.B) {
	env(b)
	raw, _ := benchDisk(b)
	s := awsfake.New()
	defer s.Close()
	s.Latency = 50 * time.Millisecond
	s.PendingPolls = 0
	for i := range b.N {
		b.StopTimer()
		state := b.TempDir()
		cfg := Config{Region: "eu-west-1", Recipe: "bench", Digest: fmt.Sprintf("sha256:full%d", i), Name: fmt.Sprintf("full-%d", i),
			Endpoint: s.URL, HTTPClient: s.Client(), PollInterval: time.Millisecond, StateDir: state}
		full, err := Publish(context.Background(), raw, cfg)
		if err != nil {
			b.Fatal(err)
		}
		f, _ := os.OpenFile(raw, os.O_RDWR, 0)
		rng := rand.New(rand.NewPCG(uint64(i), 3))
		for range 64 {
			f.WriteAt(bytes.Repeat([]byte{byte(rng.Uint32() | 1)}, 64<<10), rng.Int64N((4<<30-64<<10)/4096)*4096)
		}
		f.Close()
		cfg.Digest, cfg.Name = fmt.Sprintf("sha256:incr%d", i), fmt.Sprintf("incr-%d", i)
		b.StartTimer()
		start := time.Now()
		incr, err := Publish(context.Background(), raw, cfg)
		if err != nil {
			b.Fatal(err)
		}
		el := time.Since(start)
		if incr.Parent == "" {
			b.Fatal("the second upload was not incremental")
		}
		b.ReportMetric(float64(full.BlocksSent), "full_blocks")
		b.ReportMetric(float64(incr.BlocksSent), "incr_blocks")
		b.ReportMetric(el.Seconds(), "incr_s")
	}
}
