package e2e_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/package-url/packageurl-go"
	"github.com/santhosh-tekuri/jsonschema/v6"
)

// TestDebianCloudSBOM checks the debian-cloud build's SBOM against an
// independent tool: the host's dpkg-query, reading the dpkg database of the
// image unpacked by rootfs.Apply, must list exactly the packages the SBOM
// lists (name, version, architecture). The SBOM validates against the SPDX
// 2.3 schema, and the manifest records its digest and count.
func TestDebianCloudSBOM(t *testing.T) {
	fx := debianCloud(t)
	if _, err := exec.LookPath("dpkg-query"); err != nil {
		t.Fatal("dpkg-query not found: the SBOM's oracle is Debian's dpkg")
	}
	s := fx.Res.SBOM
	if s == nil {
		t.Fatal("the manifest has no SBOM, though the build asked for one")
	}
	doc, err := os.ReadFile(fx.Opts.SBOM)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(doc)
	if s.Path != fx.Opts.SBOM || s.Digest != "sha256:"+hex.EncodeToString(sum[:]) || !bytes.Equal(s.Document, doc) {
		t.Errorf("manifest's SBOM %s %s does not describe the file written (%x)", s.Path, s.Digest, sum)
	}
	validateSPDX(t, doc)

	// The SBOM's dpkg packages, from their purls.
	var d struct {
		Packages []struct {
			Name    string `json:"name"`
			Version string `json:"versionInfo"`
			Refs    []struct {
				Type    string `json:"referenceType"`
				Locator string `json:"referenceLocator"`
			} `json:"externalRefs"`
		} `json:"packages"`
	}
	if err := json.Unmarshal(doc, &d); err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, p := range d.Packages {
		for _, r := range p.Refs {
			if r.Type != "purl" {
				continue
			}
			u, err := packageurl.FromString(r.Locator)
			if err != nil {
				t.Fatalf("%s: %v", r.Locator, err)
			}
			if u.Type != "deb" || u.Name != p.Name || u.Version != p.Version || u.Qualifiers.Map()["distro"] != "debian-12" {
				t.Errorf("package %s %s: purl %s disagrees", p.Name, p.Version, r.Locator)
			}
			got = append(got, p.Name+" "+p.Version+" "+u.Qualifiers.Map()["arch"])
		}
	}
	if len(got) != s.Count {
		t.Errorf("manifest counts %d packages, the SBOM lists %d", s.Count, len(got))
	}

	// The oracle: dpkg-query on the unpacked image.
	root := filepath.Join(t.TempDir(), "rootfs")
	if err := os.Mkdir(root, 0o755); err != nil {
		t.Fatal(err)
	}
	applyAll(t, layoutImage(t, fx.Opts.OCILayout), root)
	out, err := exec.Command("dpkg-query", "--admindir="+filepath.Join(root, "var/lib/dpkg"), "-W",
		"-f", "${db:Status-Status} ${Package} ${Version} ${Architecture}\n").Output()
	if err != nil {
		t.Fatalf("dpkg-query: %v", err)
	}
	var want []string
	for line := range strings.SplitSeq(strings.TrimSpace(string(out)), "\n") {
		if rest, ok := strings.CutPrefix(line, "installed "); ok {
			want = append(want, rest)
		}
	}
	slices.Sort(got)
	slices.Sort(want)
	if len(want) < 100 {
		t.Fatalf("dpkg-query lists only %d installed packages: %q", len(want), out)
	}
	if !slices.Equal(got, want) {
		for _, w := range want {
			if !slices.Contains(got, w) {
				t.Errorf("dpkg-query lists %q, the SBOM does not", w)
			}
		}
		for _, g := range got {
			if !slices.Contains(want, g) {
				t.Errorf("the SBOM lists %q, dpkg-query does not", g)
			}
		}
	}
	t.Logf("%d packages agree with dpkg-query", len(got))
}

// validateSPDX checks doc against the SPDX 2.3 JSON schema kept with the
// SBOM package.
func validateSPDX(t *testing.T, doc []byte) {
	t.Helper()
	sch, err := jsonschema.NewCompiler().Compile("../internal/sbom/testdata/spdx-schema-2.3.json")
	if err != nil {
		t.Fatal(err)
	}
	v, err := jsonschema.UnmarshalJSON(bytes.NewReader(doc))
	if err != nil {
		t.Fatal(err)
	}
	if err := sch.Validate(v); err != nil {
		t.Errorf("the SBOM does not validate against the SPDX 2.3 schema: %v", err)
	}
}
