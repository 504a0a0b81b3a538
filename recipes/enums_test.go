package recipes

import (
	"slices"
	"testing"
)

// TestSchemaEnums keeps the enums in schema.json equal to the Go lists the
// parser and the publishers check against, defaults first.
func TestSchemaEnums(t *testing.T) {
	type prop struct {
		Enum    []string `json:"enum"`
		Default any      `json:"default"`
	}
	var s struct {
		Defs map[string]struct {
			Properties map[string]prop `json:"properties"`
		} `json:"$defs"`
	}
	readSchema(t, &s)
	for _, tc := range []struct {
		def, key string
		want     []string
		defaults bool
	}{
		{"aws", "boot_mode", AWSBootModes(), true},
		{"aws", "architecture", AWSArchitectures(), true},
		{"aws", "imds_support", AWSIMDSSupport(), true},
		{"aws", "tpm_support", AWSTPMSupport(), false},
		{"aws", "volume_type", AWSVolumeTypes(), true},
		{"aws", "method", AWSMethods(), true},
		{"azure", "cloud", AzureClouds(), true},
		{"azure", "hyper_v_generation", AzureHyperVGenerations(), true},
		{"azure", "security_type", AzureSecurityTypes(), true},
		{"azure", "os_type", AzureOSTypes(), true},
	} {
		p, ok := s.Defs[tc.def].Properties[tc.key]
		if !ok {
			t.Errorf("schema.json: no %s.%s", tc.def, tc.key)
			continue
		}
		a, b := slices.Clone(p.Enum), slices.Clone(tc.want)
		slices.Sort(a)
		slices.Sort(b)
		if !slices.Equal(a, b) {
			t.Errorf("%s.%s: schema.json says %v, Go says %v", tc.def, tc.key, p.Enum, tc.want)
		}
		if tc.defaults && p.Default != tc.want[0] {
			t.Errorf("%s.%s: schema.json's default %v, Go's %s", tc.def, tc.key, p.Default, tc.want[0])
		}
	}
}
