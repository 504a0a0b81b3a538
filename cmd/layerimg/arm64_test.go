package main

import (
	"path/filepath"
	"testing"
)

// boot --arch is checked before the disk is looked at.
func TestBootArchFlag(t *testing.T) {
	disk := filepath.Join(t.TempDir(), "disk.raw")
	cliCases(t, []cliCase{
		{"bad arch", []string{"boot", "--arch", "sparc", disk}, 2, `--arch "sparc": expected one of amd64, arm64`, ""},
		{"missing disk", []string{"boot", "--arch", "arm64", disk}, 1, "booting " + disk, ""},
	})
}
