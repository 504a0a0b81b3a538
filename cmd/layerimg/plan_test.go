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
