package sbom

import (
	"bytes"
	"path/filepath"
	"runtime"
	"testing"

	"github.com/santhosh-tekuri/jsonschema/v6"
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
}
