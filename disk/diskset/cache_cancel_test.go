package diskset

import (
	"context"
	"testing"
)

// An interrupted content check is a miss, not a corrupt set: the set stays.
func TestLookupCancelledKeepsSet(t *testing.T) {
	c := openCache(t)
	const key = "sha256:cancel"
	putSet(t, c, key)
	fs := allFormats
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, ok := c.Lookup(ctx, key, fs); ok {
		t.Fatal("a cancelled lookup handed the set out")
	}
	if _, ok := c.Lookup(context.Background(), key, fs); !ok {
		t.Fatal("a cancelled lookup dropped a good set")
	}
}
