package sbom

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/github/go-spdx/v2/spdxexp"
	"github.com/santhosh-tekuri/jsonschema/v6"
	spdxjson "github.com/spdx/tools-golang/json"
	"github.com/spdx/tools-golang/spdxlib"
)

// Schema is the SPDX 2.3 JSON schema kept in testdata (see its .md for
// where it comes from).
func Schema(t testing.TB) *jsonschema.Schema {
	t.Helper()
	_, file, _, _ := runtime.Caller(0)
	c := jsonschema.NewCompiler()
	sch, err := c.Compile(filepath.Join(filepath.Dir(file), "testdata", "spdx-schema-2.3.json"))
	if err != nil {
		t.Fatal(err)
	}
	return sch
}

// Validate fails t unless doc is valid SPDX 2.3 JSON.
func Validate(t testing.TB, doc []byte) {
	t.Helper()
	v, err := jsonschema.UnmarshalJSON(bytes.NewReader(doc))
	if err != nil {
		t.Fatalf("the SBOM is not JSON: %v", err)
	}
	if err := Schema(t).Validate(v); err != nil {
		t.Errorf("the SBOM does not validate against the SPDX 2.3 schema: %v", err)
	}
	checkLicenses(t, doc)
	// The SPDX library reads it back, every relationship names an element
	// of the document, and no SPDX id is given twice.
	d, err := spdxjson.Read(bytes.NewReader(doc))
	if err != nil {
		t.Fatalf("tools-golang cannot read the SBOM back: %v", err)
	}
	if err := spdxlib.ValidateDocument(d); err != nil {
		t.Error(err)
	}
	seen := map[string]bool{}
	for _, p := range d.Packages {
		if id := string(p.PackageSPDXIdentifier); seen[id] {
			t.Errorf("SPDX id %s given twice", id)
		} else {
			seen[id] = true
		}
	}
}

// checkLicenses checks what the schema leaves as strings: every license
// expression parses as SPDX (GitHub's go-spdx parser, with the SPDX
// license list), and every LicenseRef used is declared with its text.
func checkLicenses(t testing.TB, doc []byte) {
	t.Helper()
	var d struct {
		Packages []struct {
			Name     string `json:"name"`
			Declared string `json:"licenseDeclared"`
		} `json:"packages"`
		Extracted []struct {
			ID string `json:"licenseId"`
		} `json:"hasExtractedLicensingInfos"`
	}
	if err := json.Unmarshal(doc, &d); err != nil {
		t.Fatal(err)
	}
	declared := map[string]bool{}
	for _, e := range d.Extracted {
		declared[e.ID] = true
	}
	for _, p := range d.Packages {
		if p.Declared == "" || p.Declared == "NOASSERTION" || p.Declared == "NONE" {
			continue
		}
		if ok, bad := spdxexp.ValidateLicenses([]string{p.Declared}); !ok {
			t.Errorf("%s: license %q is not a valid SPDX expression: %v", p.Name, p.Declared, bad)
		}
		for _, f := range strings.FieldsFunc(p.Declared, func(r rune) bool { return r == ' ' || r == '(' || r == ')' }) {
			if strings.HasPrefix(f, "LicenseRef-") && !declared[f] {
				t.Errorf("%s: %s is used but not in hasExtractedLicensingInfos", p.Name, f)
			}
		}
	}
}

// TestValidateFile validates the SBOM file LAYERIMG_SBOM_FILE names: a
// check for a document a build wrote.
func TestValidateFile(t *testing.T) {
	p := os.Getenv("LAYERIMG_SBOM_FILE")
	if p == "" {
		t.Skip("set LAYERIMG_SBOM_FILE to an SBOM to validate")
	}
	doc, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	Validate(t, doc)
}

// TestLicenseCheckRejects keeps checkLicenses from being vacuous.
func TestLicenseCheckRejects(t *testing.T) {
	for _, e := range []string{"GPL-2+", "MIT AND", "Expat", "(MIT OR GPL-2.0-only"} {
		if ok, _ := spdxexp.ValidateLicenses([]string{e}); ok {
			t.Errorf("go-spdx accepts %q", e)
		}
	}
}
