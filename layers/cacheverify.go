package layers

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// Problem is one bad item that a check of the cache found.
type Problem struct {
	Item string // the item's path, relative to the cache
	Why  string
}

func (p Problem) String() string { return p.Item + ": " + p.Why }

// Checker checks one part of the cache that another package keeps beside
// the layers (disk sets, publish records), for `cache verify`.
type Checker interface {
	// Check returns how many items it checked and the bad ones; with
	// repair it also drops the bad ones.
	Check(ctx context.Context, repair bool) (checked int, bad []Problem, err error)
}

// Verify checks everything the layer cache holds: every key file against
// its checksum and its layer, every blob against its digest, every
// unpacked tree against its recorded tree digest. With repair, bad items
// are dropped (and what is made from them: an entry whose blob is bad, a
// tree without a digest).
func (c *Cache) Verify(ctx context.Context, repair bool) (checked int, bad []Problem, err error) {
	report := func(b *badItem) {
		bad = append(bad, Problem{b.path, b.why.Error()})
		if repair {
			b.drop()
		}
	}
	sound := map[string]bool{} // blobs already verified through an entry
	keys, err := filepath.Glob(filepath.Join(c.dir, "keys", "*.json"))
	if err != nil {
		return 0, nil, err
	}
	for _, kp := range keys {
		if err := ctx.Err(); err != nil {
			return checked, bad, err
		}
		checked++
		key := "sha256:" + strings.TrimSuffix(filepath.Base(kp), ".json")
		e, err := c.checkEntry(key, true)
		var b *badItem
		switch {
		case errors.As(err, &b):
			report(b)
		case err != nil:
			report(&badItem{c.rel(kp), err, func() { os.Remove(kp) }})
		default:
			sound[e.Layer.Digest.Hex] = true
		}
	}
	blobs, err := os.ReadDir(filepath.Join(c.dir, "blobs", "sha256"))
	if err != nil {
		return checked, bad, err
	}
	for _, d := range blobs {
		if err := ctx.Err(); err != nil {
			return checked, bad, err
		}
		p := filepath.Join(c.dir, "blobs", "sha256", d.Name())
		if strings.HasPrefix(d.Name(), ".tmp-") {
			report(&badItem{c.rel(p), errors.New("a temporary file left by an older layerimg"), func() { os.Remove(p) }})
			continue
		}
		if sound[d.Name()] {
			continue
		}
		checked++
		if err := c.VerifyBlob(v1.Hash{Algorithm: "sha256", Hex: d.Name()}); err != nil {
			report(&badItem{c.rel(p), err, func() { os.Remove(p) }})
		}
	}
	n, tb, err := c.verifyTrees(ctx)
	checked += n
	for _, b := range tb {
		report(b)
	}
	return checked, bad, err
}

// verifyTrees checks every unpacked tree of this cache's mode against its
// tree digest: the other mode's trees show other owners from here.
func (c *Cache) verifyTrees(ctx context.Context) (checked int, bad []*badItem, err error) {
	dir := c.unpackedDir()
	ents, err := os.ReadDir(dir)
	if err != nil {
		return 0, nil, err
	}
	for _, d := range ents {
		if err := ctx.Err(); err != nil {
			return checked, bad, err
		}
		p := filepath.Join(dir, d.Name())
		if !d.IsDir() {
			if tree, ok := strings.CutSuffix(p, ".tree"); ok {
				if _, err := os.Stat(tree); errors.Is(err, os.ErrNotExist) {
					bad = append(bad, &badItem{c.rel(p), errors.New("a tree digest without its tree"), func() { os.Remove(p) }})
				}
			}
			continue
		}
		checked++
		if err := checkTree(p); err != nil {
			bad = append(bad, &badItem{c.rel(p), err, func() { c.dropTree(p) }})
		}
	}
	return checked, bad, nil
}
