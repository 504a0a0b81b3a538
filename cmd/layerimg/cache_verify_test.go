package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// cache verify names every bad item and why, keeps them without --repair,
// drops them with it, and then verifies clean.
func TestCacheVerifyReportsAndRepairs(t *testing.T) {
	good := writeRecipe(t, "name: x\nfrom: scratch\nsteps:\n  - copy: {src: hello.txt, dst: /hello.txt}\n")
	cache := t.TempDir()
	if _, errOut, code := cli(t, "build", "--cache-dir", cache, good); code != 0 {
		t.Fatalf("build: %s", errOut)
	}
	keys, _ := filepath.Glob(filepath.Join(cache, "keys", "*.json"))
	if len(keys) != 1 {
		t.Fatalf("keys: %v", keys)
	}
	data, _ := os.ReadFile(keys[0])
	os.WriteFile(keys[0], []byte(strings.Replace(string(data), `"step": "step-1"`, `"step": "step-2"`, 1)), 0o644)
	os.MkdirAll(filepath.Join(cache, "publish"), 0o755)
	record := filepath.Join(cache, "publish", "ebs-eu-west-1-0011223344556677.json")
	os.WriteFile(record, []byte(`{"snapshot_id":"snap-1","region":"eu-west-1","volume_gib":1,"blocks":{}}`), 0o644)

	out, _, code := cli(t, "cache", "verify", "--cache-dir", cache)
	key := filepath.Join("keys", filepath.Base(keys[0]))
	for _, want := range []string{
		"corrupt: " + key + ": its content has checksum",
		"corrupt: publish/ebs-eu-west-1-0011223344556677.json: it has no checksum",
		"cache verify --repair drops it",
		"2 corrupt",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("verify output lacks %q:\n%s", want, out)
		}
	}
	if code != 1 {
		t.Errorf("verify exit %d", code)
	}
	if _, err := os.Stat(keys[0]); err != nil {
		t.Error("verify without --repair dropped the key file")
	}
	out, _, code = cli(t, "cache", "verify", "--repair", "--cache-dir", cache)
	if code != 1 || !strings.Contains(out, "dropped; the next build makes it again") {
		t.Errorf("verify --repair: exit %d\n%s", code, out)
	}
	if out, errOut, code := cli(t, "cache", "verify", "--cache-dir", cache); code != 0 || !strings.Contains(out, " 0 corrupt") {
		t.Errorf("verify after --repair: exit %d\n%s%s", code, out, errOut)
	}
}
