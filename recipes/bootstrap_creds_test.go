package recipes

import (
	"strings"
	"testing"
)

// A mirror URL with credentials is refused: it would reach the key, the
// manifest, the provenance and the image's sources.list.
func TestBootstrapMirrorCredentialsRefused(t *testing.T) {
	for _, bs := range []Bootstrap{
		{Distro: "debian", Suite: "bookworm", Mirror: "https://alice:s3cret@repo.example/debian", SecurityMirror: "none", Suites: []string{"bookworm"}},
		{Distro: "debian", Suite: "bookworm", Mirror: "https://repo.example/debian", SecurityMirror: "https://bob:pw@repo.example/debian-security"},
	} {
		_, err := bs.Sources()
		if err == nil || !strings.Contains(err.Error(), "user or password") || strings.Contains(err.Error(), "s3cret") || strings.Contains(err.Error(), ":pw@") {
			t.Errorf("%s / %s: %v", bs.Mirror, bs.SecurityMirror, err)
		}
	}
	if _, err := (Bootstrap{Distro: "debian", Suite: "bookworm", Mirror: "https://repo.example/debian", SecurityMirror: "https://repo.example/debian-security"}).Sources(); err != nil {
		t.Errorf("a plain mirror: %v", err)
	}
}
