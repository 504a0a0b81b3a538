package main

import (
	"regexp"
	"strings"
	"testing"
)

// plan --explain shows which steps check their idempotency; plain plan
// keeps its columns. Planning runs nothing, so no root is needed.
func TestPlanExplainShowsChecks(t *testing.T) {
	recipe := writeRecipe(t, `name: x
from: scratch
steps:
  - name: hello
    copy: {src: hello.txt, dst: /hello.txt}
  - name: twice
    check_idempotent: true
    run: echo hi > /hi
`)
	cache := t.TempDir()
	out, stderr, code := cli(t, "plan", "--cache-dir", cache, "--explain", recipe)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	if !strings.Contains(out, "CHECKS") || !regexp.MustCompile(`(?m)^2\s+twice\s+run\s+\S+\s+MISS\s+idempotent \(runs twice\)`).MatchString(out) ||
		!regexp.MustCompile(`(?m)^1\s+hello\s+copy\s+\S+\s+MISS\s+-\s`).MatchString(out) {
		t.Errorf("plan --explain:\n%s", out)
	}
	out, _, _ = cli(t, "plan", "--cache-dir", cache, recipe)
	if strings.Contains(out, "CHECKS") || strings.Contains(out, "runs twice") {
		t.Errorf("plain plan shows the checks:\n%s", out)
	}
}

// plan --platform plans for another platform than the recipe's: each
// platform's steps have their own keys, and TARGETARCH follows it.
func TestPlanPlatform(t *testing.T) {
	recipe := writeRecipe(t, `name: x
from: scratch
args:
  TARGETARCH: amd64
steps:
  - name: hello
    copy:
      src: hello.txt
      dst: /hello-${TARGETARCH}.txt
`)
	cache := t.TempDir()
	keys := map[string]string{}
	for _, p := range []string{"", "linux/amd64", "linux/arm64"} {
		args := []string{"plan", "--cache-dir", cache, "--json", recipe}
		if p != "" {
			args = append(args, "--platform", p)
		}
		out, stderr, code := cli(t, args...)
		if code != 0 {
			t.Fatalf("plan --platform %q: exit %d: %s", p, code, stderr)
		}
		m := regexp.MustCompile(`"key": "(sha256:[0-9a-f]+)"`).FindStringSubmatch(out)
		if m == nil {
			t.Fatalf("plan --platform %q printed no key:\n%s", p, out)
		}
		keys[p] = m[1]
	}
	if keys[""] != keys["linux/amd64"] || keys["linux/amd64"] == keys["linux/arm64"] {
		t.Errorf("keys: recipe's %s, amd64 %s, arm64 %s", keys[""], keys["linux/amd64"], keys["linux/arm64"])
	}
	if _, stderr, code := cli(t, "plan", "--cache-dir", cache, "--platform", "linux/amd64,linux/arm64", recipe); code != 2 || !strings.Contains(stderr, "one platform") {
		t.Errorf("two platforms: exit %d: %s", code, stderr)
	}
}
