package e2e_test

import (
	"bytes"
	"context"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/layerimg/layerimg"
	"github.com/layerimg/layerimg/internal/tartest"
)

// A hostile --arg value reaches the step as data: the shell expands it from
// the environment, so the quotes in it never close the script's own.
func TestArgInjectionIsData(t *testing.T) {
	needRoot(t)
	const recipe = `name: bb
args: {GREETING: hello}
from: scratch
steps:
  - name: busybox
    copy: {src: bin, dst: /bin}
  - name: greet
    run: echo "${GREETING}" > /greeting
  - name: plain
    run: echo plain > /plain
tests:
  - run: test -s /greeting
`
	dir := busyboxContext(t, recipe, nil)
	cache, out := t.TempDir(), t.TempDir()
	hostile := `x"; echo INJECTED > /injected; echo "`
	o := layerimg.Options{CacheDir: cache, RootfsTar: filepath.Join(out, "rootfs.tar")}
	build(t, load(t, dir, map[string]string{"GREETING": hostile}), o)
	rt, err := os.ReadFile(o.RootfsTar)
	if err != nil {
		t.Fatal(err)
	}
	entries := tartest.Summary(t, io.NopCloser(bytes.NewReader(rt)))
	var greeting string
	for _, e := range entries {
		if strings.HasPrefix(e, "injected") {
			t.Errorf("the arg's value ran as a command: %s", e)
		}
		if g, ok := strings.CutPrefix(e, "greeting f 0644 "); ok {
			greeting = g
		}
	}
	if greeting != hostile+"\n" {
		t.Errorf("/greeting = %q, want the arg's value as written", greeting)
	}

	// The arg's value is in the key of the step that names it, and of no
	// other: changing it misses greet (and what follows) only.
	plan, err := layerimg.Plan(context.Background(), load(t, dir, map[string]string{"GREETING": "other"}), layerimg.Options{CacheDir: cache})
	if err != nil {
		t.Fatal(err)
	}
	if got := statuses(plan); got != "busybox=HIT greet=MISS plain=MISS" {
		t.Errorf("plan after an arg change: %s", got)
	}
}
