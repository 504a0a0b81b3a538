package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// BenchmarkNoopRebuild10Steps times a whole layerimg process (start, parse,
// key every step, look each up, write the manifest, exit) rebuilding a
// 10-step recipe whose every step is cached. Target: under 1 s.
func BenchmarkNoopRebuild10Steps(b *testing.B) {
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
	recipe := filepath.Join(dir, "recipe.yaml")
	os.WriteFile(recipe, []byte(r.String()), 0o644)
	cache := b.TempDir()
	run := func() {
		cmd := exec.Command(os.Args[0], "build", "--cache-dir", cache, "--manifest", filepath.Join(dir, "m.json"), recipe)
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
