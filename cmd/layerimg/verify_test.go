package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/layerimg/layerimg/internal/cosigntest"
)

func TestVerifyUsage(t *testing.T) {
	f := filepath.Join(t.TempDir(), "f")
	os.WriteFile(f, []byte("x"), 0o644)
	if _, e, code := cli(t, "verify", f); code != 2 || !strings.Contains(e, "--key") {
		t.Errorf("verify without --key: exit %d: %s", code, e)
	}
	if _, e, code := cli(t, "verify", "--key", f); code != 2 || !strings.Contains(e, "expected one image reference or file, got 0 arguments") {
		t.Errorf("verify without a target: exit %d: %s", code, e)
	}
	if _, e, code := cli(t, "verify", f, "--key", filepath.Join(t.TempDir(), "none.pub")); code != 1 || !strings.Contains(e, "public key") {
		t.Errorf("verify with a missing key: exit %d: %s", code, e)
	}
}

// TestBuildProvenanceAndSigning: a copy-only build (no root needed) with
// --provenance and --sign-key writes a provenance whose buildDefinition
// is the same bytes on a rebuild, names the CI run it is told of, and is
// signed with a bundle that verifies; a wrong password fails the build
// before anything runs, without showing the password.
func TestBuildProvenanceAndSigning(t *testing.T) {
	c := cosigntest.New(t)
	recipe := writeRecipe(t, goodRecipe)
	cache := t.TempDir()
	out := t.TempDir()

	_, e, code := cliEnv(t, []string{"COSIGN_PASSWORD=not-" + c.Password}, "build", recipe, "--cache-dir", cache,
		"--provenance", filepath.Join(out, "bad.json"), "--sign-key", c.Key())
	if code != 1 || !strings.Contains(e, "COSIGN_PASSWORD") || strings.Contains(e, c.Password) {
		t.Errorf("wrong password: exit %d: %s", code, e)
	}
	if _, err := os.Stat(filepath.Join(out, "bad.json")); err == nil {
		t.Error("a provenance was written by a build that failed")
	}

	gha := []string{"GITHUB_ACTIONS=true", "GITHUB_SERVER_URL=https://github.example", "GITHUB_REPOSITORY=org/images",
		"GITHUB_SHA=0123456789abcdef0123456789abcdef01234567", "GITHUB_REF=refs/heads/main", "GITHUB_RUN_ID=42", "GITLAB_CI="}
	var defs [2][]byte
	for i := range defs {
		prov := filepath.Join(out, "prov"+string(rune('0'+i))+".json")
		env := append([]string{"COSIGN_PASSWORD=" + c.Password}, gha...)
		if _, e, code := cliEnv(t, env, "build", recipe, "--cache-dir", cache, "--provenance", prov, "--sign-key", c.Key()); code != 0 {
			t.Fatalf("build: exit %d: %s", code, e)
		}
		data, err := os.ReadFile(prov)
		if err != nil {
			t.Fatal(err)
		}
		var st struct {
			Predicate struct {
				BuildDefinition json.RawMessage
				RunDetails      struct {
					Metadata struct{ InvocationID string }
				}
			}
		}
		if err := json.Unmarshal(data, &st); err != nil {
			t.Fatal(err)
		}
		defs[i] = st.Predicate.BuildDefinition
		for _, want := range []string{`"uri": "git+https://github.example/org/images"`, `"gitCommit": "0123456789abcdef0123456789abcdef01234567"`} {
			if !bytes.Contains(data, []byte(want)) {
				t.Errorf("the provenance lacks %s:\n%s", want, data)
			}
		}
		if got := st.Predicate.RunDetails.Metadata.InvocationID; got != "https://github.example/org/images/actions/runs/42" {
			t.Errorf("invocationId %q", got)
		}
		if o, e, code := cli(t, "verify", prov, "--key", c.Pub()); code != 0 {
			t.Errorf("verify %s: exit %d: %s%s", prov, code, o, e)
		}
		if o, err := c.Run("verify-blob", "--key", c.Pub(), "--bundle", prov+".bundle", "--insecure-ignore-tlog=true", prov); err != nil {
			t.Errorf("cosign verify-blob: %v\n%s", err, o)
		}
	}
	if !bytes.Equal(defs[0], defs[1]) {
		t.Errorf("the buildDefinition differs between two builds of the same inputs:\n%s\n%s", defs[0], defs[1])
	}
}

func cliEnv(t *testing.T, env []string, args ...string) (string, string, int) {
	t.Helper()
	for _, kv := range env {
		k, v, _ := strings.Cut(kv, "=")
		t.Setenv(k, v)
	}
	return cli(t, args...)
}
