package main

import (
	"crypto/rand"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/charmbracelet/x/vt"
	"github.com/creack/pty"
	"golang.org/x/sys/unix"
)

// screen is a terminal emulator fed by layerimg's pseudo-terminal: what a
// user would see, with every frame's text kept for checks on what passed.
type screen struct {
	mu     sync.Mutex
	emu    *vt.Emulator
	frames []string
	done   chan struct{}
}

// runOnPTY starts the binary with args on a new pseudo-terminal of cols x
// rows and reads its screen until it exits.
func runOnPTY(t *testing.T, cols, rows int, args ...string) (*exec.Cmd, *os.File, *screen) {
	t.Helper()
	cmd := exec.Command(os.Args[0], args...)
	cmd.Env = append(os.Environ(), "LAYERIMG_TEST_CLI=1", "TERM=xterm")
	ptmx, err := pty.StartWithSize(cmd, &pty.Winsize{Cols: uint16(cols), Rows: uint16(rows)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ptmx.Close() })
	s := &screen{emu: vt.NewEmulator(cols, rows), done: make(chan struct{})}
	go func() {
		defer close(s.done)
		buf := make([]byte, 32<<10)
		for {
			n, err := ptmx.Read(buf)
			if n > 0 {
				s.mu.Lock()
				s.emu.Write(buf[:n])
				s.frames = append(s.frames, s.emu.String())
				s.mu.Unlock()
			}
			if err != nil { // EIO once the child has gone
				return
			}
		}
	}()
	return cmd, ptmx, s
}

// text is the screen now.
func (s *screen) text() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.emu.String()
}

// waitFor waits until the screen matches re, or fails after d.
func (s *screen) waitFor(t *testing.T, re *regexp.Regexp, d time.Duration) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !re.MatchString(s.text()) {
		if time.Now().After(deadline) {
			t.Fatalf("the screen never showed %q; it shows:\n%s", re, s.text())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// everShowed says whether some frame matched re.
func (s *screen) everShowed(re *regexp.Regexp) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, f := range s.frames {
		if re.MatchString(f) {
			return true
		}
	}
	return false
}

// wait waits for the process and the last of its output; it returns the
// exit code.
func (s *screen) wait(t *testing.T, cmd *exec.Cmd) int {
	t.Helper()
	err := cmd.Wait()
	<-s.done
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return 0
}

// progressContext writes a small recipe's context: busybox, and a 48 MiB
// file of random bytes, whose copy step lasts long enough to show its bar.
func progressContext(t *testing.T, steps string) string {
	t.Helper()
	dir := busyboxBin(t, "sh", "sleep", "seq")
	f, err := os.Create(filepath.Join(dir, "big.bin"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.CopyN(f, rand.Reader, 48<<20); err != nil {
		t.Fatal(err)
	}
	f.Close()
	recipe := filepath.Join(dir, "recipe.yaml")
	os.WriteFile(recipe, []byte("name: demo\nfrom: scratch\nsteps:\n  - copy: {src: bin, dst: /bin}\n"+steps), 0o644)
	return recipe
}

// TestProgressTTY builds a small recipe under a pseudo-terminal and reads
// the screen: a line per step with its status, a bar with a rate while the
// large copy runs, the running step's last output lines, and the summary;
// then a rebuild shows every step cached.
func TestProgressTTY(t *testing.T) {
	recipe := progressContext(t, `  - copy: {src: big.bin, dst: /big.bin}
  - run: for i in $(seq 1 8); do echo "line $i"; sleep 0.15; done
`)
	cache := t.TempDir()
	cmd, _, s := runOnPTY(t, 100, 40, "build", "--cache-dir", cache, "--manifest", filepath.Join(t.TempDir(), "m.json"), recipe)
	s.waitFor(t, regexp.MustCompile(`=> \[3/3\] step-3  [0-9.]+m?s`), time.Minute)
	s.waitFor(t, regexp.MustCompile(`│ line [3-8]`), time.Minute)
	if code := s.wait(t, cmd); code != 0 {
		t.Fatalf("exit %d; screen:\n%s", code, s.text())
	}
	if !s.everShowed(regexp.MustCompile(`copying and compressing +\[[=>-]+\] [0-9.]+ (MiB|KiB) / 48\.0 MiB  [0-9.]+ [KM]iB/s`)) {
		t.Errorf("no frame showed the copy's bar with a rate")
	}
	screen := s.text()
	for _, want := range []string{
		"✓ [1/3] step-1  ", "✓ [2/3] step-2  ", "✓ [3/3] step-3  ",
		"Built demo in ", ": 3 steps run, 0 cached", "  stages   base ", "  image    sha256:", "m.json (",
	} {
		if !strings.Contains(screen, want) {
			t.Errorf("the screen lacks %q:\n%s", want, screen)
		}
	}
	if strings.Contains(screen, "│ line") || strings.Contains(screen, "=> ") {
		t.Errorf("the output window or a running line is left on the screen:\n%s", screen)
	}

	cmd, _, s = runOnPTY(t, 100, 40, "build", "--cache-dir", cache, recipe)
	if code := s.wait(t, cmd); code != 0 {
		t.Fatalf("rebuild: exit %d; screen:\n%s", code, s.text())
	}
	for _, want := range []string{"✓ [1/3] step-1  CACHED", "✓ [3/3] step-3  CACHED", ": 0 steps run, 3 cached"} {
		if !strings.Contains(s.text(), want) {
			t.Errorf("the rebuild's screen lacks %q:\n%s", want, s.text())
		}
	}
}

// TestProgressTTYFailure checks that a failing step's whole output shows
// (not only the window's last lines), then the error.
func TestProgressTTYFailure(t *testing.T) {
	dir := busyboxBin(t, "sh", "seq")
	recipe := filepath.Join(dir, "recipe.yaml")
	os.WriteFile(recipe, []byte("name: demo\nfrom: scratch\nsteps:\n  - copy: {src: bin, dst: /bin}\n  - run: seq 1 12 | sed 's/^/out /'; exit 3\n"), 0o644)
	cmd, _, s := runOnPTY(t, 160, 40, "build", "--cache-dir", t.TempDir(), recipe)
	if code := s.wait(t, cmd); code != 1 {
		t.Fatalf("exit %d, want 1; screen:\n%s", code, s.text())
	}
	screen := s.text()
	for _, want := range []string{"✗ [2/2] step-2  FAILED after", "── output of [2/2] step-2", "out 1\n", "out 12\n", "layerimg: building " + recipe + ": step 2 (step-2): exit status 3"} {
		if !strings.Contains(screen, want) {
			t.Errorf("the screen lacks %q:\n%s", want, screen)
		}
	}
}

// TestProgressTTYInterrupt presses Ctrl-C while a step runs: the build
// exits 130, says so, and leaves the terminal as it found it: its modes,
// the cursor shown, no display left behind.
func TestProgressTTYInterrupt(t *testing.T) {
	dir := busyboxBin(t, "sh", "sleep")
	recipe := filepath.Join(dir, "recipe.yaml")
	os.WriteFile(recipe, []byte("name: demo\nfrom: scratch\nsteps:\n  - copy: {src: bin, dst: /bin}\n  - run: echo started; sleep 60\n"), 0o644)
	cmd, ptmx, s := runOnPTY(t, 100, 30, "build", "--cache-dir", t.TempDir(), recipe)
	before, err := unix.IoctlGetTermios(int(ptmx.Fd()), unix.TCGETS)
	if err != nil {
		t.Fatal(err)
	}
	s.waitFor(t, regexp.MustCompile(`│ started`), time.Minute)
	ptmx.Write([]byte{3}) // Ctrl-C: the line discipline sends SIGINT
	start := time.Now()
	code := s.wait(t, cmd)
	if code != 130 {
		t.Fatalf("exit %d, want 130; screen:\n%s", code, s.text())
	}
	if d := time.Since(start); d > 20*time.Second {
		t.Errorf("the build took %s to stop", d)
	}
	after, err := unix.IoctlGetTermios(int(ptmx.Fd()), unix.TCGETS)
	if err != nil {
		t.Fatal(err)
	}
	if *before != *after {
		t.Errorf("the terminal's modes changed: %+v, then %+v", before, after)
	}
	screen := s.text()
	for _, want := range []string{"✗ [2/2] step-2  interrupted after", "interrupted: stopped [2/2] step-2; its sandbox and partial work were removed", "layerimg: interrupted; nothing partial was kept"} {
		if !strings.Contains(screen, want) {
			t.Errorf("the screen lacks %q:\n%s", want, screen)
		}
	}
	if strings.Contains(screen, "│ started") || strings.Contains(screen, "=> ") {
		t.Errorf("the display is left on the screen:\n%s", screen)
	}
	s.mu.Lock()
	hidden, alt, pos := s.emu.CursorHidden(), s.emu.IsAltScreen(), s.emu.CursorPosition()
	s.mu.Unlock()
	if hidden || alt || pos.X != 0 {
		t.Errorf("cursor hidden %v, alternate screen %v, cursor at column %d", hidden, alt, pos.X)
	}
}

// TestProgressTTYNarrow runs on a 32-column terminal: live rows are cut to
// the width with "…" rather than wrapped, and the summary still comes.
func TestProgressTTYNarrow(t *testing.T) {
	dir := busyboxBin(t, "sh", "sleep")
	recipe := filepath.Join(dir, "recipe.yaml")
	os.WriteFile(recipe, []byte("name: demo\nfrom: scratch\nsteps:\n  - copy: {src: bin, dst: /bin}\n  - name: a-step-with-a-rather-long-name\n    run: echo "+strings.Repeat("x", 80)+"; sleep 1\n"), 0o644)
	cmd, _, s := runOnPTY(t, 32, 20, "build", "--cache-dir", t.TempDir(), recipe)
	s.waitFor(t, regexp.MustCompile(`│ x+…`), time.Minute)
	if re := regexp.MustCompile(`=> \[2/2\] a-step-with-a[a-z-]*…  [0-9.]+m?s\n`); !re.MatchString(s.text()) {
		t.Errorf("the running step's row is not cut to the width:\n%s", s.text())
	}
	if code := s.wait(t, cmd); code != 0 {
		t.Fatalf("exit %d; screen:\n%s", code, s.text())
	}
	if !strings.Contains(s.text(), "Built demo in") {
		t.Errorf("no summary:\n%s", s.text())
	}
}
