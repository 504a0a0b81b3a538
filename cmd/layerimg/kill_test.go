package main

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"io/fs"
	"math/rand"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestKillLeavesNothing SIGKILLs `layerimg build -o DIR` at seeded random
// points of a build with a run step and a disk, and checks each time that no
// process the build started outlives it by more than a second, and that a
// rebuild on the same cache gives the same disk and leaves no temporary file
// in the cache or the output dir. LAYERIMG_KILL_SEED replays a run.
func TestKillLeavesNothing(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("run steps need root; CI runs as root")
	}
	// Orphans of the killed build are reparented to this process rather
	// than to init, so that they can be found, whatever they are.
	if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
		t.Fatal(err)
	}
	defer unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 0, 0, 0, 0)
	seed := time.Now().UnixNano()
	if s := os.Getenv("LAYERIMG_KILL_SEED"); s != "" {
		seed, _ = strconv.ParseInt(s, 10, 64)
	}
	t.Logf("seed %d (LAYERIMG_KILL_SEED replays it)", seed)
	rng := rand.New(rand.NewSource(seed))

	recipe := killContext(t)
	slowMkfs := slowMkfsDir(t)
	args := func(cache, out string) []string {
		return []string{"build", "--cache-dir", cache, "-o", out, "--arg", "SLEEP=1", recipe}
	}
	// The reference build, and its length, which the kill points span.
	start := time.Now()
	refOut := t.TempDir()
	if _, errOut, code := cli(t, args(t.TempDir(), refOut)...); code != 0 {
		t.Fatalf("reference build: exit %d %s", code, errOut)
	}
	span := time.Since(start)
	want := fileSHA256(t, filepath.Join(refOut, "disk.raw"))

	// A fresh cache each time, so that each build runs every stage; one
	// output dir for all, so that each rebuild meets what a kill left.
	out := t.TempDir()
	// Kills fall at a random time in the build, or a random few
	// milliseconds after a step's process or mkfs.vfat appears.
	triggers := []string{"", "sleep", "mkfs.vfat"}
	for i := range 6 {
		cache := t.TempDir()
		trigger := triggers[i%len(triggers)]
		at := time.Duration(rng.Int63n(int64(span)))
		if trigger != "" {
			at = time.Duration(rng.Int63n(int64(30 * time.Millisecond)))
		}
		cmd := exec.Command(os.Args[0], args(cache, out)...)
		cmd.Env = append(os.Environ(), "LAYERIMG_TEST_CLI=1")
		if trigger == "mkfs.vfat" {
			// A slow mkfs.vfat, so that a survivor would be seen.
			cmd.Env = append(cmd.Env, "PATH="+slowMkfs+":"+os.Getenv("PATH"))
		}
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		if trigger != "" && !waitForChild(trigger, 30*time.Second) {
			t.Fatalf("kill %d: no %s appeared", i, trigger)
		}
		time.Sleep(at)
		cmd.Process.Signal(syscall.SIGKILL)
		cmd.Wait()
		var left []string
		for deadline := time.Now().Add(time.Second); ; time.Sleep(20 * time.Millisecond) {
			if left = descendants(); len(left) == 0 || time.Now().After(deadline) {
				break
			}
		}
		if len(left) > 0 {
			t.Errorf("kill %d at %v after %q: still alive 1 s after the kill:\n  %s", i, at, trigger, strings.Join(left, "\n  "))
			for _, p := range left {
				pid, _ := strconv.Atoi(strings.Fields(p)[0])
				syscall.Kill(pid, syscall.SIGKILL)
			}
		}
		if _, errOut, code := cli(t, args(cache, out)...); code != 0 {
			t.Fatalf("kill %d at %v after %q: rebuild: exit %d %s", i, at, trigger, code, errOut)
		}
		if got := fileSHA256(t, filepath.Join(out, "disk.raw")); got != want {
			t.Errorf("kill %d at %v after %q: rebuilt disk.raw %s, want %s", i, at, trigger, got, want)
		}
		ents, _ := os.ReadDir(out)
		var names []string
		for _, e := range ents {
			names = append(names, e.Name())
		}
		if got := strings.Join(names, " "); got != "disk.raw" {
			t.Errorf("kill %d at %v after %q: output dir holds %s, want disk.raw alone", i, at, trigger, got)
		}
		if tmp := tempFiles(t, cache); len(tmp) > 0 {
			t.Errorf("kill %d at %v after %q: temporary files left in the cache after the rebuild:\n  %s", i, at, trigger, strings.Join(tmp, "\n  "))
		}
		t.Logf("kill %d at %v after %q (build: %v): ok", i, at.Round(time.Millisecond), trigger, span.Round(time.Millisecond))
	}
}

// killContext writes a recipe with a run step that sleeps and a data disk,
// beside a static busybox.
func killContext(t *testing.T) string {
	t.Helper()
	bb, err := exec.LookPath("busybox")
	if err != nil {
		t.Fatal("busybox not found: apt-get install busybox-static")
	}
	dir := t.TempDir()
	os.MkdirAll(filepath.Join(dir, "bin"), 0o755)
	data, _ := os.ReadFile(bb)
	os.WriteFile(filepath.Join(dir, "bin/busybox"), data, 0o755)
	for _, l := range []string{"sh", "sleep", "echo"} {
		os.Symlink("busybox", filepath.Join(dir, "bin", l))
	}
	recipe := filepath.Join(dir, "recipe.yaml")
	os.WriteFile(recipe, []byte(`name: k
args: {SLEEP: "0"}
from: scratch
steps:
  - copy: {src: bin, dst: /bin}
  - name: slow
    run: sleep ${SLEEP} & sleep ${SLEEP}; wait; echo done > /done
disk: {boot: none, size: 1GiB}
`), 0o644)
	return recipe
}

// waitForChild waits until a descendant's command line starts with name.
func waitForChild(name string, limit time.Duration) bool {
	for deadline := time.Now().Add(limit); time.Now().Before(deadline); time.Sleep(2 * time.Millisecond) {
		for _, p := range descendants() {
			// The program, or the script an interpreter runs.
			f := strings.Fields(p)
			for _, a := range f[2:min(len(f), 4)] {
				if a == name || strings.HasSuffix(a, "/"+name) {
					return true
				}
			}
		}
	}
	return false
}

// slowMkfsDir makes a mkfs.vfat that waits 2 s, in one process, before it
// runs the real one.
func slowMkfsDir(t *testing.T) string {
	t.Helper()
	real, err := exec.LookPath("mkfs.vfat")
	if err != nil {
		t.Fatal("mkfs.vfat not found: apt-get install dosfstools")
	}
	dir := t.TempDir()
	fifo := filepath.Join(dir, "fifo")
	if err := unix.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	script := fmt.Sprintf("#!/bin/bash\nread -t 2 x <> %s\nexec %s \"$@\"\n", fifo, real)
	os.WriteFile(filepath.Join(dir, "mkfs.vfat"), []byte(script), 0o755)
	return dir
}

// descendants lists the live processes descended from this one, as
// "PID PPID command line".
func descendants() []string {
	self := os.Getpid()
	parent := map[int]int{}
	line := map[int]string{}
	procs, _ := filepath.Glob("/proc/[0-9]*/stat")
	for _, p := range procs {
		b, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		// pid (comm) state ppid ...; comm may hold spaces and parentheses.
		s := string(b)
		i := strings.LastIndexByte(s, ')')
		f := strings.Fields(s[i+1:])
		if len(f) < 2 || f[0] == "Z" || f[0] == "X" {
			continue
		}
		pid, _ := strconv.Atoi(strings.Fields(s)[0])
		parent[pid], _ = strconv.Atoi(f[1])
		cl, _ := os.ReadFile(filepath.Join(filepath.Dir(p), "cmdline"))
		line[pid] = fmt.Sprintf("%d %d %s", pid, parent[pid], strings.ReplaceAll(strings.TrimRight(string(cl), "\x00"), "\x00", " "))
	}
	var out []string
	for pid := range parent {
		for q, n := parent[pid], 0; q > 0 && n < 64; q, n = parent[q], n+1 {
			if q == self {
				out = append(out, line[pid])
				break
			}
		}
	}
	return out
}

// tempFiles lists what looks temporary under dir: anything in a tmp/
// folder, and files named .tmp-*.
func tempFiles(t *testing.T, dir string) []string {
	t.Helper()
	var out []string
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return nil
		}
		rel, _ := filepath.Rel(dir, p)
		if strings.HasPrefix(d.Name(), ".tmp") || (strings.HasPrefix(rel, "tmp"+string(filepath.Separator)) && rel != "tmp") {
			out = append(out, rel)
		}
		return nil
	})
	return out
}

func fileSHA256(t *testing.T, p string) string {
	t.Helper()
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := sha256.New()
	io.Copy(h, f)
	return hex.EncodeToString(h.Sum(nil))
}
