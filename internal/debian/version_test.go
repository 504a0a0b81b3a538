package debian

import (
	"os/exec"
	"testing"
)

func sign(n int) int {
	switch {
	case n < 0:
		return -1
	case n > 0:
		return 1
	}
	return 0
}

// Cases from dpkg's own tests (lib/dpkg/t/t-version.c and
// src/t/dpkg_compare-versions) and Debian policy's examples.
var versionCases = []struct {
	a, b string
	want int
}{
	{"0", "0", 0}, {"0", "00", 0}, {"1", "01", 0},
	{"1.0", "1.0", 0}, {"1.0", "1.1", -1}, {"1.1", "1.0", 1},
	{"1:0", "0:0", 1}, {"0:1", "1", 0}, {"1:0.1", "2.0", 1}, {"1:1.0", "2:0.1", -1},
	{"1.0~rc1", "1.0", -1}, {"1.0~rc1", "1.0~rc2", -1}, {"1.0~~", "1.0~", -1}, {"1.0~", "1.0", -1},
	{"~~", "~~a", -1}, {"~~a", "~", -1}, {"~", "", -1}, {"", "a", -1},
	{"1.0", "1.0-0", 0}, {"1.0-1", "1.0-2", -1}, {"1.0-1", "1.0-1ubuntu1", -1}, {"1.0-1+b1", "1.0-1", 1},
	{"1.0a", "1.0", 1}, {"1.0a", "1.0b", -1}, {"1.0+dfsg", "1.0", 1}, {"1.0.1", "1.0", 1},
	{"1.0-1.1", "1.0-1", 1}, {"2.30-1", "2.4-1", 1}, {"1.2.3-a", "1.2.3-1", 1},
	{"3.0.20-1~deb12u2", "3.0.22-1~deb12u2", -1}, {"3.0.17-1~deb12u2", "3.0.17-1~deb12u1", 1},
	{"252.39-1~deb12u1", "252.38-1~deb12u1", 1}, {"6.1.0-41", "6.1.0-9", 1},
	{"1.0-A", "1.0-a", -1}, {"1.0-+", "1.0-a", 1}, {"1.0.", "1.0", 1},
	{"2:1.0-1", "1:9.9-9", 1}, {"0.9.9~git20200101", "0.9.9", -1},
}

func TestCompareVersions(t *testing.T) {
	for _, tc := range versionCases {
		if got := sign(CompareVersions(tc.a, tc.b)); got != tc.want {
			t.Errorf("CompareVersions(%q, %q) = %d, want %d", tc.a, tc.b, got, tc.want)
		}
		if got := sign(CompareVersions(tc.b, tc.a)); got != -tc.want {
			t.Errorf("CompareVersions(%q, %q) = %d, want %d", tc.b, tc.a, got, -tc.want)
		}
	}
}

// dpkg itself is the oracle where the host has it.
func TestCompareVersionsAgreesWithDpkg(t *testing.T) {
	if _, err := exec.LookPath("dpkg"); err != nil {
		t.Skip("no dpkg on this host")
	}
	for _, tc := range versionCases {
		if tc.a == "" || tc.b == "" || tc.a[0] == '~' && tc.b == "" {
			continue // dpkg refuses empty versions
		}
		for _, op := range []struct {
			name string
			ok   bool
		}{{"lt", CompareVersions(tc.a, tc.b) < 0}, {"eq", CompareVersions(tc.a, tc.b) == 0}, {"gt", CompareVersions(tc.a, tc.b) > 0}} {
			err := exec.Command("dpkg", "--compare-versions", tc.a, op.name, tc.b).Run()
			if (err == nil) != op.ok {
				t.Errorf("dpkg --compare-versions %q %s %q: dpkg says %v, we say %v", tc.a, op.name, tc.b, err == nil, op.ok)
			}
		}
	}
}
