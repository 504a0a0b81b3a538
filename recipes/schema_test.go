package recipes

import (
	"encoding/json"
	"os"
	"reflect"
	"sort"
	"testing"
)

// TestSchemaMatchesTypes keeps recipes/schema.json, the Go types and the keys
// the parser accepts in step: a field added to one must be added to all.
func TestSchemaMatchesTypes(t *testing.T) {
	var s struct {
		Properties map[string]json.RawMessage `json:"properties"`
		Defs       map[string]struct {
			Properties map[string]json.RawMessage `json:"properties"`
		} `json:"$defs"`
	}
	readSchema(t, &s)
	for _, tc := range []struct {
		def    string
		props  map[string]json.RawMessage
		typ    any
		parser []string
	}{
		{"recipe", s.Properties, Recipe{}, recipeKeys},
		{"bootstrap", s.Defs["bootstrap"].Properties, Bootstrap{}, bootstrapKeys},
		{"step", s.Defs["step"].Properties, Step{}, stepKeys},
		{"secret", s.Defs["secret"].Properties, Secret{}, secretKeys},
		{"copy", s.Defs["copy"].Properties, Copy{}, copyKeys},
		{"ansible", s.Defs["ansible"].Properties, Ansible{}, ansibleKeys},
		{"disk", s.Defs["disk"].Properties, Disk{}, diskKeys},
		{"bootTest", s.Defs["bootTest"].Properties, BootTest{}, bootTestKeys},
		{"publish", s.Defs["publish"].Properties, Publish{}, publishKeys},
		{"vsphere", s.Defs["vsphere"].Properties, VSphere{}, vsphereKeys},
		{"aws", s.Defs["aws"].Properties, AWS{}, awsKeys},
		{"azure", s.Defs["azure"].Properties, Azure{}, azureKeys},
	} {
		schema := keys(tc.props)
		fromType := yamlFields(reflect.TypeOf(tc.typ))
		parser := append([]string(nil), tc.parser...)
		sort.Strings(parser)
		if !reflect.DeepEqual(schema, fromType) || !reflect.DeepEqual(schema, parser) {
			t.Errorf("%s: schema.json has %v, Go type has %v, parser accepts %v", tc.def, schema, fromType, parser)
		}
	}
	if tp := keys(s.Defs["test"].Properties); len(tp) != 0 {
		t.Errorf("test def should nest its properties in oneOf, got %v", tp)
	}
}

func keys(m map[string]json.RawMessage) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func yamlFields(t reflect.Type) []string {
	var out []string
	for i := 0; i < t.NumField(); i++ {
		tag := t.Field(i).Tag.Get("yaml")
		if tag != "" && tag != "-" {
			out = append(out, tag)
		}
	}
	if t == reflect.TypeOf(Recipe{}) {
		out = append(out, "from") // Base is decoded by hand
	}
	sort.Strings(out)
	return dedupe(out)
}

func dedupe(s []string) []string {
	var out []string
	for i, x := range s {
		if i == 0 || s[i-1] != x {
			out = append(out, x)
		}
	}
	return out
}

// readSchema decodes recipes/schema.json into v, the parts of it a test
// checks.
func readSchema(t *testing.T, v any) {
	t.Helper()
	data, err := os.ReadFile("schema.json")
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(data, v); err != nil {
		t.Fatalf("schema.json: %v", err)
	}
}
