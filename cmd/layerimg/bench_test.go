package main

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/creack/pty"
)

// BenchmarkNoopRebuild10Steps times a whole layerimg process (start, parse,
// key every step, look each up, write the manifest, exit) rebuilding a
// 10-step recipe whose every step is cached. Target: under 1 s.
func BenchmarkNoopRebuild10Steps(b *testing.B) {
	recipe, manifest := tenStepRecipe(b)
	cache := b.TempDir()
	run := func() {
		cmd := exec.Command(os.Args[0], "build", "--cache-dir", cache, "--manifest", manifest, recipe)
		cmd.Env = append(os.Environ(), "LAYERIMG_TEST_CLI=1")
		if out, err := cmd.CombinedOutput(); err != nil {
			b.Fatalf("%v: %s", err, out)
		}
	}
	run() // cold
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		run()
	}
}

// BenchmarkNoopRebuildProgress is the same no-op rebuild with each
// --progress mode, each on a pseudo-terminal of 120x40 whose output is read
// (and dropped) as it comes, so that only the mode differs: a pty costs
// its own time, whatever is drawn on it. Issue 17's target: the display
// costs no measurable time (under 50 ms a rebuild with --progress tty).
func BenchmarkNoopRebuildProgress(b *testing.B) {
	recipe, manifest := tenStepRecipe(b)
	cache := b.TempDir()
	build := func(b *testing.B, mode string) {
		cmd := exec.Command(os.Args[0], "build", "--progress", mode, "--cache-dir", cache, "--manifest", manifest, recipe)
		cmd.Env = append(os.Environ(), "LAYERIMG_TEST_CLI=1")
		ptmx, err := pty.StartWithSize(cmd, &pty.Winsize{Cols: 120, Rows: 40})
		if err != nil {
			b.Fatal(err)
		}
		defer ptmx.Close()
		var screen bytes.Buffer
		io.Copy(&screen, ptmx) // until the child has gone (EIO)
		if err := cmd.Wait(); err != nil {
			b.Fatalf("%v: %s", err, screen.String())
		}
		if mode == "tty" && !strings.Contains(screen.String(), "0 steps run, 10 cached") {
			b.Fatalf("not a no-op rebuild:\n%s", screen.String())
		}
	}
	build(b, "plain") // cold
	for _, mode := range []string{"plain", "json", "tty"} {
		b.Run(mode, func(b *testing.B) {
			for b.Loop() {
				build(b, mode)
			}
		})
	}
}

// tenStepRecipe writes a 10-step recipe over a scratch base with busybox:
// 5 copy steps and 4 run steps (and the busybox copy).
func tenStepRecipe(b *testing.B) (recipe, manifest string) {
	dir := busyboxBin(b, "sh")
	os.MkdirAll(filepath.Join(dir, "files"), 0o755)
	var r strings.Builder
	r.WriteString("name: ten\nfrom: scratch\nsteps:\n  - copy: {src: bin, dst: /bin}\n")
	for i := 2; i <= 10; i++ {
		if i%2 == 0 {
			os.WriteFile(filepath.Join(dir, "files", fmt.Sprint(i)), []byte(strings.Repeat("x", 100000*i)), 0o644)
			fmt.Fprintf(&r, "  - copy: {src: files/%d, dst: /opt/%d}\n", i, i)
		} else {
			fmt.Fprintf(&r, "  - run: /bin/busybox mkdir -p /data/%d && /bin/busybox dd if=/dev/urandom of=/data/%d/blob bs=1M count=2 2>/dev/null\n", i, i)
		}
	}
	recipe = filepath.Join(dir, "recipe.yaml")
	os.WriteFile(recipe, []byte(r.String()), 0o644)
	return recipe, filepath.Join(dir, "m.json")
}
