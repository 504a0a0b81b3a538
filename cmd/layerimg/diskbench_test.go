package main

import (
	"archive/tar"
	"bufio"
	"fmt"
	"math/rand"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Disk benchmarks, side by side with the tools other builders run, on the
// same input in one run. Inputs: LAYERIMG_BENCH_ROOTFS (a rootfs tar) and
// LAYERIMG_BENCH_DISK (a raw disk); without them a seeded synthetic rootfs
// of about 300 MiB is made, and a disk from it.

var (
	benchOnce   sync.Once
	benchRootfs string
	benchDisk   string
	benchErr    error
)

func benchInputs(b *testing.B) (rootfsTar, raw string) {
	b.Helper()
	if os.Geteuid() != 0 {
		b.Skip("needs root")
	}
	benchOnce.Do(func() {
		benchRootfs, benchDisk = os.Getenv("LAYERIMG_BENCH_ROOTFS"), os.Getenv("LAYERIMG_BENCH_DISK")
		dir, err := os.MkdirTemp("", "layerimg-diskbench-")
		if err != nil {
			benchErr = err
			return
		}
		if benchRootfs == "" {
			tree := filepath.Join(dir, "tree")
			synthTree(tree)
			benchRootfs = filepath.Join(dir, "rootfs.tar")
			if out, err := exec.Command("tar", "--numeric-owner", "-cf", benchRootfs, "-C", tree, ".").CombinedOutput(); err != nil {
				benchErr = fmt.Errorf("tar: %v %s", err, out)
				return
			}
			os.RemoveAll(tree)
		}
		if benchDisk == "" {
			out := filepath.Join(dir, "disk")
			if _, err := runCLI("disk", "--cache-dir", filepath.Join(dir, "cache"), "--boot", "none", "-o", out, benchRootfs); err != nil {
				benchErr = err
				return
			}
			benchDisk = filepath.Join(out, "disk.raw")
		}
	})
	if benchErr != nil {
		b.Fatal(benchErr)
	}
	return benchRootfs, benchDisk
}

// synthTree writes a seeded tree shaped like a rootfs: many small text files,
// some binaries that compress like executables, and a few random blobs.
func synthTree(dir string) {
	rng := rand.New(rand.NewSource(42))
	words := strings.Fields("usr lib share doc config value true false port host path the and for with static int return void")
	for i := 0; i < 15000; i++ {
		p := filepath.Join(dir, "usr/share", fmt.Sprintf("d%02d/f%05d.txt", i%97, i))
		os.MkdirAll(filepath.Dir(p), 0o755)
		var sb strings.Builder
		for sb.Len() < 500+rng.Intn(12000) {
			sb.WriteString(words[rng.Intn(len(words))])
			sb.WriteByte(' ')
		}
		os.WriteFile(p, []byte(sb.String()), 0o644)
	}
	for i := 0; i < 60; i++ {
		buf := make([]byte, 2<<20)
		for j := range buf { // low-entropy, like machine code
			buf[j] = byte(rng.Intn(16) * rng.Intn(16))
		}
		p := filepath.Join(dir, "usr/lib", fmt.Sprintf("lib%02d.so", i))
		os.MkdirAll(filepath.Dir(p), 0o755)
		os.WriteFile(p, buf, 0o755)
	}
	for i := 0; i < 8; i++ {
		buf := make([]byte, 4<<20)
		rng.Read(buf)
		os.WriteFile(filepath.Join(dir, "usr/lib", fmt.Sprintf("blob%d.gz", i)), buf, 0o644)
	}
}

// runCLI runs this binary as layerimg and returns its peak RSS in bytes.
func runCLI(args ...string) (int64, error) {
	cmd := exec.Command(os.Args[0], args...)
	cmd.Env = append(os.Environ(), "LAYERIMG_TEST_CLI=1")
	if out, err := cmd.CombinedOutput(); err != nil {
		return 0, fmt.Errorf("layerimg %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return cmd.ProcessState.SysUsage().(*syscall.Rusage).Maxrss * 1024, nil
}

func runTool(name string, args ...string) (int64, error) {
	cmd := exec.Command(name, args...)
	if out, err := cmd.CombinedOutput(); err != nil {
		return 0, fmt.Errorf("%s: %v\n%s", name, err, out)
	}
	return cmd.ProcessState.SysUsage().(*syscall.Rusage).Maxrss * 1024, nil
}

// settle removes the previous output and flushes dirty pages outside the
// timer, so that one run's writeback is not charged to the next.
func settle(b *testing.B, out string) {
	b.StopTimer()
	if out != "" {
		os.Remove(out)
	}
	exec.Command("sync").Run()
	b.StartTimer()
}

func report(b *testing.B, rss int64, out string) {
	b.ReportMetric(float64(rss)/(1<<20), "MiB-peak-rss")
	if fi, err := os.Stat(out); err == nil {
		b.ReportMetric(float64(fi.Size())/(1<<20), "MiB-out")
	}
}

func BenchmarkConvert(b *testing.B) {
	_, raw := benchInputs(b)
	fi, _ := os.Stat(raw)
	for _, tc := range []struct{ name, ext, qemuFmt string }{
		{"vmdk", ".vmdk", "vmdk"}, {"qcow2", ".qcow2", "qcow2"}, {"vhd", ".vhd", "vpc"},
	} {
		out := filepath.Join(b.TempDir(), "out"+tc.ext)
		b.Run(tc.name+"/layerimg", func(b *testing.B) {
			b.SetBytes(fi.Size())
			runCLI("convert", raw, "--to", tc.name, "-o", out) // warm-up, untimed
			b.ResetTimer()
			var rss int64
			for i := 0; i < b.N; i++ {
				settle(b, out)
				var err error
				if rss, err = runCLI("convert", raw, "--to", tc.name, "-o", out); err != nil {
					b.Fatal(err)
				}
			}
			report(b, rss, out)
		})
		b.Run(tc.name+"/qemu-img", func(b *testing.B) {
			args := []string{"convert", "-f", "raw", "-O", tc.qemuFmt}
			switch tc.name {
			case "vmdk":
				args = append(args, "-o", "subformat=streamOptimized")
			case "vhd":
				args = append(args, "-o", "subformat=fixed,force_size=on")
			}
			args = append(args, raw, out)
			b.SetBytes(fi.Size())
			os.Remove(out)
			runTool("qemu-img", args...) // warm-up, untimed
			b.ResetTimer()
			var rss int64
			for i := 0; i < b.N; i++ {
				settle(b, out)
				var err error
				if rss, err = runTool("qemu-img", args...); err != nil {
					b.Fatal(err)
				}
			}
			report(b, rss, out)
		})
	}
}

// BenchmarkDiskAssembly: rootfs tar -> GPT disk with an ESP and an ext4 root.
// layerimg's time includes reading the tar; the pipeline's includes
// unpacking it.
func BenchmarkDiskAssembly(b *testing.B) {
	rootfsTar, _ := benchInputs(b)
	benchAssembly(b, rootfsTar, 4)
}

// BenchmarkDiskAssembly100k: the same on a synthetic tree of 100,000
// entries (1,000 directories of 99 small files), into an 8 GiB disk.
func BenchmarkDiskAssembly100k(b *testing.B) {
	if os.Geteuid() != 0 {
		b.Skip("the shell pipeline needs root")
	}
	p := filepath.Join(b.TempDir(), "100k.tar")
	if err := synthTar(p, 1000, 99); err != nil {
		b.Fatal(err)
	}
	benchAssembly(b, p, 8)
}

func benchAssembly(b *testing.B, rootfsTar string, gib int) {
	b.Run("layerimg", func(b *testing.B) {
		var rss int64
		for i := 0; i < b.N; i++ {
			dir := b.TempDir()
			settle(b, "")
			var err error
			// A fresh cache each time: nothing may be reused.
			if rss, err = runCLI("disk", "--cache-dir", filepath.Join(dir, "cache"), "--boot", "none", "--size", fmt.Sprintf("%dGiB", gib), "-o", dir, rootfsTar); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(rss)/(1<<20), "MiB-peak-rss")
	})
	b.Run("shell-pipeline", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			dir := b.TempDir()
			settle(b, "")
			script := `set -e
cd "$1"
mkdir tree && tar -xpf "$2" -C tree
truncate -s "$3"G disk.raw
sgdisk -q -n 1:2048:+256M -t 1:EF00 -n 2:526336:0 -t 2:8304 disk.raw
truncate -s 256M esp.img && mkfs.vfat -F 32 -s 1 esp.img >/dev/null
mkdir -p tree/boot/efi && echo x > esp-file && MTOOLS_SKIP_CHECK=1 mcopy -i esp.img esp-file ::/
root_bytes=$(( $(stat -c %s disk.raw) - 526336*512 - 1024*1024 ))
truncate -s $root_bytes root.img && mkfs.ext4 -q -d tree root.img
dd if=esp.img of=disk.raw bs=1M seek=1 conv=sparse,notrunc status=none
dd if=root.img of=disk.raw bs=1M seek=257 conv=sparse,notrunc status=none
`
			if out, err := exec.Command("bash", "-c", script, "bash", dir, rootfsTar, fmt.Sprint(gib)).CombinedOutput(); err != nil {
				b.Fatalf("%v\n%s", err, out)
			}
		}
	})
}

// synthTar writes a seeded rootfs tar of dirs directories holding files
// small text files each (0 to 4 KiB).
func synthTar(p string, dirs, files int) error {
	f, err := os.Create(p)
	if err != nil {
		return err
	}
	defer f.Close()
	bw := bufio.NewWriterSize(f, 1<<20)
	tw := tar.NewWriter(bw)
	rng := rand.New(rand.NewSource(7))
	mt := time.Unix(1700000000, 0)
	buf := make([]byte, 4096)
	for d := 0; d < dirs; d++ {
		dir := fmt.Sprintf("usr/share/d%04d/", d)
		if err := tw.WriteHeader(&tar.Header{Name: dir, Typeflag: tar.TypeDir, Mode: 0o755, ModTime: mt}); err != nil {
			return err
		}
		for i := 0; i < files; i++ {
			n := rng.Intn(len(buf))
			for k := range buf[:n] {
				buf[k] = 'a' + byte(rng.Intn(26))
			}
			h := &tar.Header{Name: fmt.Sprintf("%sfile-%05d.txt", dir, i), Typeflag: tar.TypeReg, Mode: 0o644, Size: int64(n), ModTime: mt}
			if err := tw.WriteHeader(h); err != nil {
				return err
			}
			if _, err := tw.Write(buf[:n]); err != nil {
				return err
			}
		}
	}
	if err := tw.Close(); err != nil {
		return err
	}
	return bw.Flush()
}
