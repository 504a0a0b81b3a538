package aws

import (
	"bytes"
	"context"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// A block-hash record that was changed is not trusted: CheckRecord names
// why, and the next upload sends every block rather than starting from a
// snapshot the record may misdescribe.
func TestCorruptPublishRecord(t *testing.T) {
	for _, how := range []string{"byte flipped", "truncated", "checksum dropped"} {
		t.Run(how, func(t *testing.T) {
			s := fake(t)
			state := t.TempDir()
			raw := sparseDisk(t)
			cfg := testConfig(s, io.Discard)
			cfg.StateDir = state
			if _, err := Publish(context.Background(), raw, cfg); err != nil {
				t.Fatal(err)
			}
			recs, _ := filepath.Glob(filepath.Join(state, "*"))
			if len(recs) != 1 || !IsRecord(filepath.Base(recs[0])) {
				t.Fatalf("records: %v", recs)
			}
			if err := CheckRecord(recs[0]); err != nil {
				t.Fatalf("a clean record fails: %v", err)
			}
			data, _ := os.ReadFile(recs[0])
			switch how {
			case "byte flipped":
				i := bytes.Index(data, []byte(`"snap-`)) + 7
				data[i] ^= 1
			case "truncated":
				data = data[:len(data)/2]
			case "checksum dropped":
				data = append(bytes.Split(data, []byte(`,"sum"`))[0], '}')
			}
			os.WriteFile(recs[0], data, 0o644)
			err := CheckRecord(recs[0])
			if err == nil {
				t.Fatal("a changed record passes")
			}
			t.Logf("check: %v", err)
			if how != "byte flipped" {
				return // the same path as below; a publish takes seconds
			}
			cfg.Digest = "sha256:" + strings.Repeat("01", 32) // a new disk, not the same one again
			again, err := Publish(context.Background(), raw, cfg)
			if err != nil {
				t.Fatal(err)
			}
			if again.Parent != "" || again.BlocksSent != int64(len(nonZeroBlocks(t, raw))) {
				t.Fatalf("publish after the record changed: parent %q, %d blocks sent", again.Parent, again.BlocksSent)
			}
		})
	}
}
