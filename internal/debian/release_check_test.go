package debian

import (
	"strings"
	"testing"
	"time"
)

func TestReleaseCheckFor(t *testing.T) {
	now := time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)
	rel := func(f Paragraph) *Release { return &Release{Fields: f} }
	for _, tc := range []struct {
		name     string
		fields   Paragraph
		suite    string
		snapshot bool
		err      string
	}{
		{"suite", Paragraph{"Suite": "stable-security", "Codename": "bookworm-security"}, "bookworm-security", false, ""},
		{"codename", Paragraph{"Suite": "bookworm", "Codename": "bookworm"}, "bookworm", false, ""},
		{"another suite in its place", Paragraph{"Suite": "stable", "Codename": "bookworm"}, "bookworm-security", false, `suite "stable" (codename "bookworm"), not of bookworm-security`},
		{"valid", Paragraph{"Codename": "bookworm-security", "Valid-Until": "Mon, 07 Dec 2026 20:24:46 UTC"}, "bookworm-security", false, ""},
		{"expired", Paragraph{"Codename": "bookworm-security", "Valid-Until": "Sat, 07 Nov 2026 20:24:46 UTC"}, "bookworm-security", false, "expired on"},
		{"expired snapshot", Paragraph{"Codename": "bookworm-security", "Valid-Until": "Sat, 07 Nov 2026 20:24:46 UTC"}, "bookworm-security", true, ""},
		{"bad date", Paragraph{"Codename": "bookworm", "Valid-Until": "soon"}, "bookworm", false, "Valid-Until"},
	} {
		err := rel(tc.fields).CheckFor(tc.suite, tc.snapshot, now)
		if (err == nil) != (tc.err == "") || (err != nil && !strings.Contains(err.Error(), tc.err)) {
			t.Errorf("%s: %v, want %q", tc.name, err, tc.err)
		}
	}
}
