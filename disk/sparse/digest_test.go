package sparse

import (
	"crypto/sha256"
	"fmt"
	"os"
	"path/filepath"
	"testing"
)

// DigestFile hashes holes without reading them; the sum must still be the
// plain sha256 of the file's bytes.
func TestDigestFileMatchesPlainSHA256(t *testing.T) {
	p := filepath.Join(t.TempDir(), "sparse")
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	f.Truncate(5<<20 + 123)
	f.WriteAt([]byte("data in the middle"), 2<<20)
	f.WriteAt([]byte("tail"), 5<<20+100)
	f.Close()
	data, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	got, err := DigestFile(p)
	if err != nil {
		t.Fatal(err)
	}
	if want := fmt.Sprintf("%x", sha256.Sum256(data)); got != want {
		t.Fatalf("DigestFile = %s, want %s", got, want)
	}
}
