package layerimg

import (
	"slices"
	"testing"
)

// debian-cloud.yaml builds for both architectures with --platform alone;
// on amd64 it asks for exactly the packages it did before TARGETARCH.
func TestDebianCloudBothArches(t *testing.T) {
	for arch, want := range map[string][]string{
		"":      {"linux-image-cloud-amd64", "grub-efi-amd64-signed"},
		"amd64": {"linux-image-cloud-amd64", "grub-efi-amd64-signed"},
		"arm64": {"linux-image-cloud-arm64", "grub-efi-arm64-signed"},
	} {
		platform := ""
		if arch != "" {
			platform = "linux/" + arch
		}
		r, err := LoadRecipe("recipes/examples/debian-cloud.yaml", nil, platform)
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range want {
			if !slices.Contains(r.From.Bootstrap.Packages, p) {
				t.Errorf("%q: packages %v lack %s", platform, r.From.Bootstrap.Packages, p)
			}
		}
		if got := platformArch(r.Platform); arch != "" && got != arch {
			t.Errorf("%q: the disk stage would make a %s disk", platform, got)
		}
	}
}
