// Package cosigntest finds and runs the real cosign CLI for tests that use
// it as the oracle of signatures: LAYERIMG_COSIGN, else .tools/bin/cosign
// in the repository, else cosign on PATH. In CI (CI=true) a missing cosign
// fails the test; elsewhere it skips it.
package cosigntest

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// Find returns the cosign binary's path.
func Find(t testing.TB) string {
	t.Helper()
	if p := os.Getenv("LAYERIMG_COSIGN"); p != "" {
		if _, err := os.Stat(p); err != nil {
			t.Fatalf("LAYERIMG_COSIGN=%s: %v", p, err)
		}
		return p
	}
	if root := repoRoot(); root != "" {
		p := filepath.Join(root, ".tools", "bin", "cosign")
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	if p, err := exec.LookPath("cosign"); err == nil {
		return p
	}
	msg := "cosign not found (LAYERIMG_COSIGN, .tools/bin/cosign, PATH): make test-deps builds it with go install github.com/sigstore/cosign/v2/cmd/cosign@v2.6.5"
	if os.Getenv("CI") == "true" {
		t.Fatal(msg)
	}
	t.Skip(msg)
	return ""
}

// repoRoot is the directory holding go.mod, above the working directory.
func repoRoot() string {
	d, err := os.Getwd()
	if err != nil {
		return ""
	}
	for {
		if _, err := os.Stat(filepath.Join(d, "go.mod")); err == nil {
			return d
		}
		if filepath.Dir(d) == d {
			return ""
		}
		d = filepath.Dir(d)
	}
}

// Cosign runs one cosign binary with a private environment: no network
// lookups of its own (TUF root in a temp dir), the key password set.
type Cosign struct {
	Bin      string
	Dir      string // working directory: cosign.key and cosign.pub
	Password string
}

// New finds cosign and makes a key pair with `cosign generate-key-pair`
// in a temp dir: Dir/cosign.key, Dir/cosign.pub.
func New(t testing.TB) *Cosign {
	t.Helper()
	c := &Cosign{Bin: Find(t), Dir: t.TempDir(), Password: "correct horse battery staple"}
	if out, err := c.Run("generate-key-pair"); err != nil {
		t.Fatalf("cosign generate-key-pair: %v\n%s", err, out)
	}
	return c
}

// Key and Pub are the key pair's files.
func (c *Cosign) Key() string { return filepath.Join(c.Dir, "cosign.key") }
func (c *Cosign) Pub() string { return filepath.Join(c.Dir, "cosign.pub") }

// Run runs cosign with args and returns its combined output.
func (c *Cosign) Run(args ...string) (string, error) {
	cmd := exec.Command(c.Bin, args...)
	cmd.Dir = c.Dir
	cmd.Env = append(os.Environ(), "COSIGN_PASSWORD="+c.Password, "TUF_ROOT="+filepath.Join(c.Dir, "tuf"),
		"COSIGN_EXPERIMENTAL=0", "HOME="+c.Dir)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	return strings.TrimSpace(out.String()), err
}
