package layers

import (
	"context"
	"io"
	"math/rand"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/layerimg/layerimg/rootfs"
)

var (
	benchTreeOnce sync.Once
	benchTree     string
	benchBytes    int64
)

// makeBenchTree makes a tree shaped like a rootfs: many small text files,
// some larger binaries (half random, half repetitive), about 128 MiB in all.
// It is seeded, so every run and machine gets the same tree.
func makeBenchTree(b *testing.B) (string, int64) {
	benchTreeOnce.Do(func() {
		dir, err := os.MkdirTemp("", "layerimg-bench-tree-")
		if err != nil {
			b.Fatal(err)
		}
		rng := rand.New(rand.NewSource(1))
		words := strings.Fields("the quick brown fox jumps over lazy dog config value true false port host path usr lib share doc")
		var total int64
		for i := 0; i < 4000; i++ {
			p := filepath.Join(dir, "etc", string(rune('a'+i%26)), "f"+string(rune('a'+i%7))+string(rune('0'+i%10))+"-"+itoa(i))
			os.MkdirAll(filepath.Dir(p), 0o755)
			var sb strings.Builder
			for sb.Len() < 2000+rng.Intn(8000) {
				sb.WriteString(words[rng.Intn(len(words))])
				sb.WriteByte(' ')
			}
			os.WriteFile(p, []byte(sb.String()), 0o644)
			total += int64(sb.Len())
		}
		for i := 0; i < 24; i++ {
			buf := make([]byte, 4<<20)
			if i%2 == 0 {
				rng.Read(buf)
			} else {
				for j := range buf {
					buf[j] = byte(j % 251 / 16)
				}
			}
			p := filepath.Join(dir, "usr/lib", "bin"+itoa(i))
			os.MkdirAll(filepath.Dir(p), 0o755)
			os.WriteFile(p, buf, 0o755)
			total += int64(len(buf))
		}
		benchTree, benchBytes = dir, total
	})
	return benchTree, benchBytes
}

func itoa(i int) string {
	const digits = "0123456789"
	if i < 10 {
		return digits[i : i+1]
	}
	return itoa(i/10) + digits[i%10:i%10+1]
}

// BenchmarkLayerCreate: directory -> deterministic tar -> parallel gzip ->
// blob in the cache, as a run step's upper dir becomes a layer.
func BenchmarkLayerCreate(b *testing.B) {
	dir, n := makeBenchTree(b)
	c, err := OpenCache(b.TempDir(), false, nil)
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	for _, comp := range []Compression{Gzip, Zstd} {
		b.Run(string(comp), func(b *testing.B) {
			b.SetBytes(n)
			var out int64
			for i := 0; i < b.N; i++ {
				d, err := c.WriteLayer(comp, func(w io.Writer) error {
					return rootfs.WriteTar(context.Background(), w, dir, rootfs.TarOptions{})
				})
				if err != nil {
					b.Fatal(err)
				}
				out = d.Size
			}
			b.ReportMetric(float64(out)/(1<<20), "MiB-out")
		})
	}
}

// BenchmarkTarGzipPipeline is the baseline on the same tree: what a shell
// script does, `tar -c | gzip` (default level, one core) into a file.
func BenchmarkTarGzipPipeline(b *testing.B) {
	dir, n := makeBenchTree(b)
	out := filepath.Join(b.TempDir(), "layer.tar.gz")
	b.SetBytes(n)
	for i := 0; i < b.N; i++ {
		cmd := exec.Command("sh", "-c", `tar --sort=name --numeric-owner -cf - -C "$1" . | gzip > "$2"`, "sh", dir, out)
		if outp, err := cmd.CombinedOutput(); err != nil {
			b.Fatalf("%v: %s", err, outp)
		}
	}
	if fi, err := os.Stat(out); err == nil {
		b.ReportMetric(float64(fi.Size())/(1<<20), "MiB-out")
	}
}

func TestMain(m *testing.M) {
	code := m.Run()
	if benchTree != "" {
		os.RemoveAll(benchTree)
	}
	os.Exit(code)
}

// BenchmarkUnpackedCheck weighs the two ways to trust an unpacked lower:
// check its recorded tree digest (what Unpacked does), or extract it again
// from its verified blob every time.
func BenchmarkUnpackedCheck(b *testing.B) {
	dir, n := makeBenchTree(b)
	c, err := OpenCache(b.TempDir(), false, nil)
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	d, err := c.WriteLayer(Zstd, func(w io.Writer) error {
		return rootfs.WriteTar(context.Background(), w, dir, rootfs.TarOptions{})
	})
	if err != nil {
		b.Fatal(err)
	}
	b.Run("tree-digest", func(b *testing.B) {
		b.SetBytes(n)
		for i := 0; i < b.N; i++ {
			if _, err := TreeDigest(dir); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("re-extract", func(b *testing.B) {
		b.SetBytes(n)
		for i := 0; i < b.N; i++ {
			dst := filepath.Join(c.TempDir(), "x")
			os.Mkdir(dst, 0o755)
			rc, err := c.OpenLayer(d)
			if err != nil {
				b.Fatal(err)
			}
			err = rootfs.Apply(context.Background(), dst, rc, rootfs.ApplyOptions{Layer: "bench", Overlay: true})
			rc.Close()
			if err != nil {
				b.Fatal(err)
			}
			b.StopTimer()
			os.RemoveAll(dst)
			b.StartTimer()
		}
	})
}
