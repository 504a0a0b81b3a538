package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestExitCodes runs the binary on each kind of usage error, which exits 2
// having printed nothing on stdout, and on a failure (1) and successes (0).
func TestExitCodes(t *testing.T) {
	good := writeRecipe(t, goodRecipe)
	missing := filepath.Join(t.TempDir(), "missing.yaml")
	cache := t.TempDir()
	cliCases(t, []cliCase{
		{"unknown command", []string{"foo"}, 2, `unknown command "foo" for "layerimg"`, ""},
		{"unknown cache subcommand", []string{"cache", "lss"}, 2, "Did you mean this?\n\tls", ""},
		{"unknown publish target", []string{"publish", "gcp"}, 2, `unknown command "gcp" for "layerimg publish"`, ""},
		{"cache without subcommand", []string{"cache"}, 2, "layerimg cache needs a subcommand: du, ls, prune, verify", ""},
		{"publish without target", []string{"publish"}, 2, "layerimg publish needs a subcommand: aws, azure, vsphere", ""},
		{"completion without shell", []string{"completion"}, 2, "layerimg completion needs a subcommand", ""},
		{"unknown shell", []string{"completion", "fish2"}, 2, `unknown command "fish2" for "layerimg completion"`, ""},
		{"argument to completion bash", []string{"completion", "bash", "extra"}, 2, `unexpected argument "extra"`, ""},
		{"argument to cache ls", []string{"cache", "ls", "extra"}, 2, `unexpected argument "extra": layerimg cache ls takes none`, ""},
		{"no recipe", []string{"validate"}, 2, "expected one recipe file, got 0 arguments", ""},
		{"two recipes", []string{"plan", good, good}, 2, "expected one recipe file, got 2 arguments", ""},
		{"no disk source", []string{"disk"}, 2, "expected one image or rootfs tar", ""},
		{"two raw disks", []string{"convert", "a.raw", "b.raw", "--to", "vmdk"}, 2, "expected one raw disk", ""},
		{"no disk to boot", []string{"boot"}, 2, "expected one disk", ""},
		{"no disk to publish", []string{"publish", "aws"}, 2, "expected one disk", ""},
		{"unknown flag", []string{"cache", "ls", "--nope"}, 2, "unknown flag: --nope", ""},
		{"unknown shorthand", []string{"validate", "-x", good}, 2, "unknown shorthand flag: 'x'", ""},
		{"malformed flag", []string{"cache", "prune", "--keep-days", "soon"}, 2, `invalid argument "soon" for "--keep-days"`, ""},
		{"flag without value", []string{"build", good, "--format"}, 2, "flag needs an argument: --format", ""},
		{"bad flag value", []string{"cache", "prune", "--keep-days", "-1"}, 2, "--keep-days must be 0 or more", ""},
		// The command line is checked before the recipe is read.
		{"bad format, missing recipe", []string{"build", "--format", "gif", missing}, 2, `--format "gif"`, ""},
		{"missing recipe", []string{"validate", missing}, 1, missing, ""},
		{"valid recipe", []string{"validate", good}, 0, "", ""},
		{"cache du", []string{"cache", "du", "--cache-dir", cache}, 0, "", ""},
		{"bare layerimg prints help", nil, 0, "", ""},
		{"group help", []string{"publish", "--help"}, 0, "", ""},
	})
}

// TestErrorsSayWhatFailed checks that a failing command says what it was
// doing and on what, ahead of the cause.
func TestErrorsSayWhatFailed(t *testing.T) {
	dir := t.TempDir()
	notDir := filepath.Join(dir, "file")
	os.WriteFile(notDir, nil, 0o644)
	// Nothing listens on port 1: resolving the base fails at once.
	unreachable := writeRecipe(t, "name: x\nfrom: localhost:1/nothing:latest\nsteps:\n  - copy: {src: hello.txt, dst: /hello.txt}\n")
	cache := t.TempDir()
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"cache ls", []string{"cache", "ls", "--cache-dir", notDir}, "opening cache " + notDir + ": "},
		{"cache prune", []string{"cache", "prune", "--cache-dir", notDir}, "opening cache " + notDir + ": "},
		{"plan", []string{"plan", "--cache-dir", cache, unreachable}, "planning " + unreachable + ": pulling base localhost:1/nothing:latest: "},
		{"build", []string{"build", "--cache-dir", cache, unreachable}, "building " + unreachable + ": pulling base localhost:1/nothing:latest: "},
		{"disk", []string{"disk", "--cache-dir", cache, "-o", dir, filepath.Join(dir, "missing.tar")}, "making disks from " + filepath.Join(dir, "missing.tar") + ": "},
		{"boot", []string{"boot", filepath.Join(dir, "missing.raw")}, "booting " + filepath.Join(dir, "missing.raw") + ": "},
		{"convert", []string{"convert", filepath.Join(dir, "missing.raw"), "--to", "vhd"}, "converting " + filepath.Join(dir, "missing.raw") + ": "},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, errOut, code := cli(t, tc.args...)
			if code != 1 || !strings.HasPrefix(errOut, "layerimg: "+tc.want) {
				t.Errorf("layerimg %s: exit %d (want 1)\nstderr: %s\nwant it to start with %q", strings.Join(tc.args, " "), code, errOut, "layerimg: "+tc.want)
			}
		})
	}
}
