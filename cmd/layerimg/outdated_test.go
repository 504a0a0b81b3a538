package main

import (
	"testing"

	"github.com/layerimg/layerimg/internal/debian/debtest"
	"github.com/layerimg/layerimg/recipes"
)

// outdated exits 3 with updates pending (security first), 0 when up to
// date, 1 on error.
func TestOutdatedExitStatus(t *testing.T) {
	m := debtest.New(t)
	m.Suite(t, "/debian", "bookworm", "amd64", ".gz", []debtest.Pkg{debtest.P("libc6", "2.36-9+deb12u10", "amd64"), debtest.P("tzdata", "2025a-0+deb12u1", "all")})
	m.Suite(t, "/debian", "bookworm-updates", "amd64", ".gz", []debtest.Pkg{debtest.P("tzdata", "2025b-0+deb12u1", "all")})
	m.Suite(t, "/debian-security", "bookworm-security", "amd64", ".xz", []debtest.Pkg{debtest.P("libssl3", "3.0.17-1~deb12u2", "amd64")})
	body := "name: nightly\nfrom:\n  bootstrap:\n    distro: debian\n    suite: bookworm\n    mirror: " + m.URL + "/debian\n    security_mirror: " + m.URL + "/debian-security\n"
	recipe := writeRecipe(t, body)
	bs := recipes.Bootstrap{Distro: "debian", Suite: "bookworm", Mirror: m.URL + "/debian", SecurityMirror: m.URL + "/debian-security"}

	stale, fresh, other := t.TempDir(), t.TempDir(), t.TempDir()
	debtest.FakeBuild(t, stale, "nightly", bs, debtest.Status([]debtest.Pkg{
		debtest.P("tzdata", "2025a-0+deb12u1", "all"), debtest.P("libc6", "2.36-9+deb12u10", "amd64"), debtest.P("libssl3", "3.0.17-1~deb12u1", "amd64")}), nil)
	debtest.FakeBuild(t, fresh, "nightly", bs, debtest.Status([]debtest.Pkg{
		debtest.P("tzdata", "2025b-0+deb12u1", "all"), debtest.P("libc6", "2.36-9+deb12u10", "amd64"), debtest.P("libssl3", "3.0.17-1~deb12u2", "amd64")}), nil)
	kr := "--keyring=" + m.Keyring
	cliCases(t, []cliCase{
		{"pending", []string{"outdated", recipe, "--cache-dir", stale, kr}, 3, "verified: InRelease signatures by " + m.Keyring,
			"2 updates pending, 1 from security\nPACKAGE  INSTALLED         CANDIDATE         SUITE              SECURITY\nlibssl3  3.0.17-1~deb12u1  3.0.17-1~deb12u2  bookworm-security  yes\ntzdata   2025a-0+deb12u1   2025b-0+deb12u1   bookworm-updates   -\n"},
		{"pending json", []string{"outdated", recipe, "--cache-dir", stale, kr, "--json"}, 3, "", `"candidate": "3.0.17-1~deb12u2"`},
		{"up to date", []string{"outdated", recipe, "--cache-dir", fresh, kr}, 0, "", "0 updates pending, 0 from security"},
		{"never built", []string{"outdated", recipe, "--cache-dir", other, kr}, 1, "no build of nightly is recorded", ""},
		{"missing keyring", []string{"outdated", recipe, "--cache-dir", stale, "--keyring=/nonexistent.gpg"}, 1, "/nonexistent.gpg", ""},
	})
}
