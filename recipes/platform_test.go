package recipes

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// TARGETARCH and its siblings follow the platform, whether the recipe sets
// it or --platform (LoadFor) does, and reach the bootstrap's packages and,
// as environment, the scripts that name them.
func TestPlatformArgs(t *testing.T) {
	const recipe = `name: x
args: {SUITE: bookworm}
from:
  bootstrap:
    distro: debian
    suite: ${SUITE}
    packages:
      - linux-image-cloud-${TARGETARCH}
      - grub-efi-${TARGETARCH}-signed
steps:
  - run: echo ${TARGETOS}/${TARGETARCH}${TARGETVARIANT}
`
	path := filepath.Join(t.TempDir(), "r.yaml")
	if err := os.WriteFile(path, []byte(recipe), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		platform, wantPlatform, wantArch, wantVariant string
	}{
		{"", "linux/amd64", "amd64", ""},
		{"linux/arm64", "linux/arm64", "arm64", ""},
		{"linux/arm64/v8", "linux/arm64/v8", "arm64", "v8"},
	} {
		r, err := LoadFor(path, nil, tc.platform)
		if err != nil {
			t.Fatalf("%q: %v", tc.platform, err)
		}
		want := []string{"linux-image-cloud-" + tc.wantArch, "grub-efi-" + tc.wantArch + "-signed"}
		if r.Platform != tc.wantPlatform || !slices.Equal(r.From.Bootstrap.Packages, want) {
			t.Errorf("%q: platform %s, packages %v", tc.platform, r.Platform, r.From.Bootstrap.Packages)
		}
		env := []string{"TARGETARCH=" + tc.wantArch, "TARGETOS=linux", "TARGETVARIANT=" + tc.wantVariant}
		if !slices.Equal(r.Steps[0].Run.ArgEnv, env) {
			t.Errorf("%q: the step's env %v, want %v", tc.platform, r.Steps[0].Run.ArgEnv, env)
		}
		if _, ok := r.Args["TARGETARCH"]; ok || len(r.Args) != 1 {
			t.Errorf("%q: the built-ins leaked into the recipe's args: %v", tc.platform, r.Args)
		}
	}
}

func TestPlatformArgsErrors(t *testing.T) {
	dir := t.TempDir()
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		os.WriteFile(p, []byte(body), 0o644)
		return p
	}
	plain := write("plain.yaml", "name: x\nfrom: scratch\n")
	declared := write("declared.yaml", "name: x\nargs: {TARGETARCH: amd64}\nfrom: scratch\n")
	for _, tc := range []struct {
		path, platform string
		args           map[string]string
		want           string
	}{
		{plain, "linux/sparc", nil, `--platform "linux/sparc" is not a linux platform`},
		{plain, "arm64", nil, `--platform "arm64" is not a linux platform`},
		{plain, "", map[string]string{"TARGETARCH": "arm64"}, "--arg TARGETARCH: it is built in"},
		{declared, "", nil, "args: TARGETARCH is built in, taken from the platform (linux/amd64)"},
	} {
		_, err := LoadFor(tc.path, tc.args, tc.platform)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s %q %v: err = %v, want %q", filepath.Base(tc.path), tc.platform, tc.args, err, tc.want)
		}
	}
}

// The example builds for both architectures with --platform alone; on
// amd64 it asks for exactly the packages it did before TARGETARCH.
func TestDebianCloudBothArches(t *testing.T) {
	for arch, want := range map[string][]string{
		"amd64": {"linux-image-cloud-amd64", "grub-efi-amd64-signed"},
		"arm64": {"linux-image-cloud-arm64", "grub-efi-arm64-signed"},
	} {
		r, err := LoadFor("examples/debian-cloud.yaml", nil, "linux/"+arch)
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range want {
			if !slices.Contains(r.From.Bootstrap.Packages, p) {
				t.Errorf("%s: packages %v lack %s", arch, r.From.Bootstrap.Packages, p)
			}
		}
	}
}
