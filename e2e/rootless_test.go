package e2e_test

import (
	"archive/tar"
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/layerimg/layerimg"
	"github.com/layerimg/layerimg/internal/userns/usernstest"
)

// nobody is the ordinary user rootless builds run as.
const nobody = 65534

// rootlessBuild runs `layerimg build RECIPE -o out/ --manifest
// out/build.json` as uid 65534, with a subordinate range the test adds, in
// a work dir of its own (the recipe copied to the same relative path), and
// returns the manifest. The layerimg binary is built from this tree.
func rootlessBuild(t *testing.T, recipe string) *layerimg.Result {
	t.Helper()
	bin, home := rootlessCLI(t)
	rel := filepath.Join("recipes", "examples", filepath.Base(recipe))
	os.MkdirAll(filepath.Join(home, filepath.Dir(rel)), 0o755)
	data, err := os.ReadFile(recipe)
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(home, rel), data, 0o644)
	giveToNobody(t, home)
	began := time.Now()
	out, err := asNobody(bin, home, "build", rel, "-o", "out/", "--manifest", "out/build.json", "--progress", "plain")
	if err != nil {
		t.Fatalf("rootless build: %v\n%s", err, tail(out))
	}
	t.Logf("rootless build of %s: %s; %s", rel, time.Since(began).Round(time.Second), stageTimes(out))
	var res layerimg.Result
	data, err = os.ReadFile(filepath.Join(home, "out", "build.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(data, &res); err != nil {
		t.Fatal(err)
	}
	return &res
}

// rootlessCLI adds a subordinate range for uid 65534 and builds layerimg
// into a work dir that the user can reach; home is the user's, inside it.
func rootlessCLI(t *testing.T) (bin, home string) {
	t.Helper()
	usernstest.Range(t, 500000, "nobody")
	work, err := os.MkdirTemp("", "layerimg-rootless-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(work) })
	os.Chmod(work, 0o755)
	bin = filepath.Join(work, "layerimg")
	if out, err := exec.Command("go", "build", "-o", bin, "../cmd/layerimg").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	home = filepath.Join(work, "home")
	os.MkdirAll(home, 0o755)
	giveToNobody(t, home)
	return bin, home
}

func giveToNobody(t *testing.T, dir string) {
	t.Helper()
	filepath.Walk(dir, func(p string, _ os.FileInfo, err error) error {
		if err == nil {
			os.Lchown(p, nobody, nobody)
		}
		return nil
	})
}

// asNobody runs the layerimg at bin as uid 65534 in dir, HOME and TMPDIR
// set to dir, and returns its combined output.
func asNobody(bin, dir string, args ...string) (string, error) {
	cmd := exec.Command(bin, args...)
	cmd.Dir = dir
	cmd.Env = []string{"HOME=" + dir, "PATH=" + os.Getenv("PATH"), "TMPDIR=" + dir}
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: nobody, Gid: nobody, Groups: []uint32{}}}
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	return out.String(), err
}

// TestHostileRootless: the hostile-input guarantees hold when an ordinary
// user builds: a base entry written through a symlink to a host directory
// lands inside the image when it is unpacked in the user namespace (links
// mean the image's paths), a mount point that is a
// symlink is refused, and a step that swaps a secret's mount point for a
// link to a host directory cannot make layerimg delete the host's file.
// The canary belongs to the user, so only layerimg's checks protect it.
func TestHostileRootless(t *testing.T) {
	needRoot(t)
	bb, err := os.ReadFile("/bin/busybox")
	if err != nil {
		t.Fatal("busybox not found: apt-get install busybox-static")
	}
	bin, home := rootlessCLI(t)
	c := newCanary(t)
	c.dir = filepath.Join(home, "canary")
	c.secretPath = filepath.Join(c.dir, "secret")
	os.MkdirAll(filepath.Join(c.dir, "sub"), 0o755)
	os.WriteFile(c.secretPath, c.secret, 0o600)
	os.WriteFile(filepath.Join(c.dir, "tok"), []byte("host file"), 0o600)
	giveToNobody(t, c.dir)
	time.Sleep(10 * time.Millisecond)
	c.before = c.snapshot(t)
	shell := []hostEntry{{name: "bin/", typ: tar.TypeDir}, {name: "bin/busybox", body: string(bb), mode: 0o755},
		{name: "bin/sh", typ: tar.TypeSymlink, link: "busybox"}, {name: "bin/mv", typ: tar.TypeSymlink, link: "busybox"},
		{name: "bin/ln", typ: tar.TypeSymlink, link: "busybox"}}
	for _, tc := range []struct {
		name    string
		entries []hostEntry
		step    string
		wantErr string
	}{
		{"entry through a symlink to a host dir", append(append([]hostEntry{}, shell...),
			hostEntry{name: "escape", typ: tar.TypeSymlink, link: c.dir}, hostEntry{name: "escape/pwned", body: "pwned"}),
			"run: echo hi", ""}, // resolved inside the image, as root resolves it
		{"mount point is a symlink", append(append([]hostEntry{}, shell...), hostEntry{name: "proc", typ: tar.TypeSymlink, link: c.dir}),
			"run: echo hi", "proc is a symlink in the image"},
		{"step swaps a secret's mount point", shell,
			"secrets: [{id: tok, src: token.txt}]\n    run: mv /run/secrets /run/moved && ln -s " + c.dir + " /run/secrets", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := filepath.Join(home, strings.ReplaceAll(tc.name, " ", "-"))
			ref := hostileImage(t, filepath.Join(dir, "img"), tc.entries)
			os.WriteFile(filepath.Join(dir, "token.txt"), []byte("a-secret-value\n"), 0o644)
			os.WriteFile(filepath.Join(dir, "recipe.yaml"), []byte("name: hostile\nfrom: "+ref+"\nsteps:\n  - name: s\n    "+tc.step+"\n"), 0o644)
			giveToNobody(t, dir)
			out, err := asNobody(bin, dir, "build", "--cache-dir", filepath.Join(dir, "cache"), "--rootfs-tar", filepath.Join(dir, "rootfs.tar"), "--progress", "plain", "recipe.yaml")
			switch {
			case tc.wantErr == "" && err != nil:
				t.Fatalf("%v\n%s", err, out)
			case tc.wantErr != "" && (err == nil || !strings.Contains(out, tc.wantErr)):
				t.Fatalf("want an error with %q, got %v\n%s", tc.wantErr, err, out)
			}
			c.check(t, dir)
		})
	}
}

// stageTimes is the build log's "stage times" line, without its time stamp.
func stageTimes(log string) string {
	for _, l := range strings.Split(log, "\n") {
		if i := strings.Index(l, `msg="stage times"`); i >= 0 {
			return l[i:]
		}
	}
	return "no stage times logged"
}
