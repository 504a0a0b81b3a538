package main

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/layerimg/layerimg/internal/userns"
	"github.com/layerimg/layerimg/rootfs"
)

// The test binary doubles as the layerimg binary: with LAYERIMG_TEST_CLI set
// it runs main's logic, so tests can run it as a separate process and kill it.
func TestMain(m *testing.M) {
	rootfs.SandboxMain()
	userns.Main()
	if os.Getenv("LAYERIMG_TEST_CLI") == "1" {
		// As main: Ctrl-C and SIGTERM cancel the build.
		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
		code := run(ctx, os.Args[1:])
		stop()
		os.Exit(code)
	}
	os.Exit(m.Run())
}

func cli(t *testing.T, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	cmd := exec.Command(os.Args[0], args...)
	cmd.Env = append(os.Environ(), "LAYERIMG_TEST_CLI=1")
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	err := cmd.Run()
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return o.String(), e.String(), code
}

func writeRecipe(t *testing.T, body string) string {
	t.Helper()
	dir := t.TempDir()
	p := filepath.Join(dir, "recipe.yaml")
	os.WriteFile(p, []byte(body), 0o644)
	os.WriteFile(filepath.Join(dir, "hello.txt"), []byte("hello\n"), 0o644)
	return p
}

// goodRecipe builds in a moment, with no root: it copies hello.txt, which
// writeRecipe puts beside it.
const goodRecipe = "name: x\nfrom: scratch\nsteps:\n  - copy: {src: hello.txt, dst: /hello.txt}\n"

// cliCase is one run of the binary: the exit code it should end with, and
// what its stderr and stdout should contain.
type cliCase struct {
	name           string
	args           []string
	code           int
	stderr, stdout string
}

// cliCases runs each case as a subtest. A usage error (exit 2) must also
// print nothing on stdout.
func cliCases(t *testing.T, cases []cliCase) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			out, errOut, code := cli(t, tc.args...)
			if code != tc.code || !strings.Contains(errOut, tc.stderr) || !strings.Contains(out, tc.stdout) {
				t.Errorf("layerimg %s: exit %d (want %d)\nstdout: %s\nstderr: %s\nwant stderr to contain %q, stdout %q",
					strings.Join(tc.args, " "), code, tc.code, out, errOut, tc.stderr, tc.stdout)
			}
			if code == 2 && out != "" {
				t.Errorf("a usage error printed on stdout: %s", out)
			}
		})
	}
}

func TestExitCodesAndErrors(t *testing.T) {
	bad := writeRecipe(t, "name: x\nfrom: scratch\nsteps:\n  - rn: echo\n")
	good := writeRecipe(t, goodRecipe)
	cache := t.TempDir()
	cliCases(t, []cliCase{
		{"validate ok", []string{"validate", good}, 0, "", "ok (1 steps, 0 tests)"},
		{"validate bad", []string{"validate", bad}, 1, bad + `:4:5: unknown key "rn" in steps[0] (did you mean "run"?)`, ""},
		{"missing recipe", []string{"validate", "/nonexistent/recipe.yaml"}, 1, "/nonexistent/recipe.yaml", ""},
		{"no args", []string{"build"}, 2, "expected one recipe file", ""},
		{"unknown flag", []string{"build", "--nope", good}, 2, "unknown flag: --nope", ""},
		{"bad arg flag", []string{"plan", "--arg", "novalue", good}, 2, `--arg "novalue": expected NAME=VALUE`, ""},
		{"bad compression", []string{"plan", "--compression", "lz4", "--cache-dir", cache, good}, 2, `unknown compression "lz4"`, ""},
		{"plan", []string{"plan", "--cache-dir", cache, good}, 0, "", "MISS"},
		{"build", []string{"build", "--progress", "json", "--cache-dir", cache, good}, 0, `"status":"MISS"`, "sha256:"},
		{"plan hit", []string{"plan", "--cache-dir", cache, good}, 0, "", "HIT"},
		{"cache ls", []string{"cache", "ls", "--cache-dir", cache}, 0, "", "step-1"},
		{"cache verify", []string{"cache", "verify", "--cache-dir", cache}, 0, "", "1 entries checked, 0 corrupt"},
		{"cache du", []string{"cache", "du", "--cache-dir", cache}, 0, "", "total"},
		{"cache prune", []string{"cache", "prune", "--keep-days", "1", "--cache-dir", cache}, 0, "", "removed 0 entries"},
		{"help", []string{"build", "--help"}, 0, "", "--oci-layout"},
		{"completion", []string{"completion", "bash"}, 0, "", "__layerimg"},
	})
}

// busyboxBin makes a directory whose bin/ holds the host's busybox and
// links to it for applets, for recipes whose steps run. It skips unless
// the test runs as root, as run steps need.
func busyboxBin(tb testing.TB, applets ...string) string {
	tb.Helper()
	if os.Geteuid() != 0 {
		tb.Skip("run steps need root; CI runs as root")
	}
	bb, err := exec.LookPath("busybox")
	if err != nil {
		tb.Fatal("busybox not found: apt-get install busybox-static")
	}
	data, err := os.ReadFile(bb)
	if err != nil {
		tb.Fatal(err)
	}
	dir := tb.TempDir()
	os.MkdirAll(filepath.Join(dir, "bin"), 0o755)
	if err := os.WriteFile(filepath.Join(dir, "bin/busybox"), data, 0o755); err != nil {
		tb.Fatal(err)
	}
	for _, l := range applets {
		os.Symlink("busybox", filepath.Join(dir, "bin", l))
	}
	return dir
}

// TestSIGKILLMidBuild kills the process while a step runs, then builds again
// on the same cache: the rebuild succeeds, and the cache verifies clean.
func TestSIGKILLMidBuild(t *testing.T) {
	dir := busyboxBin(t, "sh", "sleep", "echo")
	recipe := filepath.Join(dir, "recipe.yaml")
	os.WriteFile(recipe, []byte("name: k\nargs: {SLEEP: \"0\"}\nfrom: scratch\nsteps:\n  - copy: {src: bin, dst: /bin}\n  - name: slow\n    run: sleep ${SLEEP}; echo done > /done\n"), 0o644)
	cache := t.TempDir()

	cmd := exec.Command(os.Args[0], "build", "--cache-dir", cache, "--arg", "SLEEP=60", recipe)
	cmd.Env = append(os.Environ(), "LAYERIMG_TEST_CLI=1")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(60 * time.Second)
	for !strings.Contains(stderr.String(), "step=slow") && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
	}
	time.Sleep(500 * time.Millisecond)
	cmd.Process.Signal(syscall.SIGKILL)
	cmd.Wait()

	if _, errOut, code := cli(t, "build", "--cache-dir", cache, recipe); code != 0 {
		t.Fatalf("rebuild after SIGKILL failed: %s", errOut)
	}
	if out, errOut, code := cli(t, "cache", "verify", "--cache-dir", cache); code != 0 || !strings.Contains(out, "0 corrupt") {
		t.Fatalf("verify: %s %s", out, errOut)
	}
	if ents, _ := os.ReadDir(filepath.Join(cache, "tmp")); len(ents) != 0 {
		t.Errorf("scratch of the killed build left behind: %d entries", len(ents))
	}
}

// A relative --cache-dir works for run steps too: the sandbox mounts the
// cache's lower dirs after leaving the working directory.
func TestRelativeCacheDir(t *testing.T) {
	dir := busyboxBin(t, "sh", "echo")
	recipe := filepath.Join(dir, "recipe.yaml")
	if err := os.WriteFile(recipe, []byte("name: rel\nfrom: scratch\nsteps:\n  - copy: {src: bin, dst: /bin}\n  - run: echo hi > /hi\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(os.Args[0], "build", "--progress", "plain", "--cache-dir", "cache", recipe)
	cmd.Dir = t.TempDir()
	cmd.Env = append(os.Environ(), "LAYERIMG_TEST_CLI=1")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build with --cache-dir cache: %v\n%s", err, out)
	}
	if _, err := os.Stat(filepath.Join(cmd.Dir, "cache", "oci-layout")); err != nil {
		t.Errorf("the cache is not where it was asked for: %v", err)
	}
}
