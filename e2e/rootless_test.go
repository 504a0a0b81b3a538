package e2e_test

import (
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
	usernstest.Range(t, 500000, "nobody")
	work, err := os.MkdirTemp("", "layerimg-rootless-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(work) })
	os.Chmod(work, 0o755)
	bin := filepath.Join(work, "layerimg")
	if out, err := exec.Command("go", "build", "-o", bin, "../cmd/layerimg").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	home := filepath.Join(work, "home")
	rel := filepath.Join("recipes", "examples", filepath.Base(recipe))
	os.MkdirAll(filepath.Join(home, filepath.Dir(rel)), 0o755)
	data, err := os.ReadFile(recipe)
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(home, rel), data, 0o644)
	filepath.Walk(home, func(p string, _ os.FileInfo, err error) error {
		if err == nil {
			os.Lchown(p, nobody, nobody)
		}
		return nil
	})
	cmd := exec.Command(bin, "build", rel, "-o", "out/", "--manifest", "out/build.json", "--progress", "plain")
	cmd.Dir = home
	cmd.Env = []string{"HOME=" + home, "PATH=" + os.Getenv("PATH"), "TMPDIR=" + home}
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: nobody, Gid: nobody, Groups: []uint32{}}}
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	began := time.Now()
	if err := cmd.Run(); err != nil {
		t.Fatalf("rootless build: %v\n%s", err, tail(out.String()))
	}
	t.Logf("rootless build of %s: %s; %s", rel, time.Since(began).Round(time.Second), stageTimes(out.String()))
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

// stageTimes is the build log's "stage times" line, without its time stamp.
func stageTimes(log string) string {
	for _, l := range strings.Split(log, "\n") {
		if i := strings.Index(l, `msg="stage times"`); i >= 0 {
			return l[i:]
		}
	}
	return "no stage times logged"
}
