package diskset

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"

	"github.com/layerimg/layerimg/layers"
)

// Cache holds finished disk sets under <layer cache>/disks/<key hex>. The
// layer cache's lock covers it, and its prune drops a set with the entry of
// the generated layer that has the same key.
type Cache struct {
	layers *layers.Cache
	dir    string
	log    *slog.Logger
}

// Open opens the disk-set cache beside c.
func Open(c *layers.Cache, log *slog.Logger) (*Cache, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	dir, err := c.KeyedDir("disks")
	if err != nil {
		return nil, err
	}
	return &Cache{layers: c, dir: dir, log: log}, nil
}

// Dir is the folder of the set with key.
func (c *Cache) Dir(key string) string {
	return filepath.Join(c.dir, strings.TrimPrefix(key, "sha256:"))
}

// Lookup finds the set with key holding every format of fs, as it was
// made. Its meta.json must match its checksum, and each file its size and
// content digest; a set that fails is dropped with a warning naming the
// file, and the caller makes it again. A set written to through a
// handed-out link is reported the same way.
func (c *Cache) Lookup(ctx context.Context, key string, fs []string) (*Set, bool) {
	dir := c.Dir(key)
	s, err := readSet(dir)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return nil, false
	case errors.Is(err, errLegacy):
		c.log.Info("the cached disks have no checksums (made by an older layerimg); making them again", "dir", c.rel(dir))
		c.drop(dir)
		return nil, false
	case err != nil:
		c.log.Warn("dropping corrupt cached disks; making them again", "file", c.rel(filepath.Join(dir, "meta.json")), "why", err)
		c.drop(dir)
		return nil, false
	}
	if !s.has(fs) {
		return nil, false
	}
	if f := s.changed(fs); f != "" {
		c.log.Warn("a cached disk changed since it was made (written to through a link?); making it again", "format", f, "file", c.rel(s.Path(f)))
		c.drop(dir)
		return nil, false
	}
	for _, f := range fs {
		err := s.check(ctx, f)
		if errors.Is(err, errLegacy) {
			c.log.Info("the cached disks have no content digest this version checks; making them again", "file", c.rel(s.Path(f)))
			c.drop(dir)
			return nil, false
		}
		if ctx.Err() != nil {
			return nil, false // interrupted, not corrupt: keep the set
		}
		if err != nil {
			c.log.Warn("dropping corrupt cached disks; making them again", "file", c.rel(s.Path(f)), "why", err)
			c.drop(dir)
			return nil, false
		}
	}
	return s, true
}

// rel is p relative to the layer cache, for messages.
func (c *Cache) rel(p string) string {
	if r, err := filepath.Rel(c.layers.Dir(), p); err == nil {
		return r
	}
	return p
}

// drop removes the set in dir. Files handed out by hardlink keep their
// own names.
func (c *Cache) drop(dir string) { os.RemoveAll(dir) }

// Scratch is a new empty folder on the cache's filesystem in which to make
// a set for Put; the caller removes it if Put is not called.
func (c *Cache) Scratch() (string, error) {
	return os.MkdirTemp(c.layers.TempDir(), "disks-")
}

// Put describes the disk files of formats fs in dir (made there by the
// caller) and moves dir into the cache as the set for key, replacing an
// incomplete or older one. With key "" (disks with random ids, never
// cached) the set stays in dir, which the caller removes after use.
func (c *Cache) Put(key, dir, boot string, fs []string) (*Set, error) {
	s := &Set{Boot: boot, Files: map[string]File{}}
	for _, f := range fs {
		df, err := Describe(filepath.Join(dir, FileName(f)))
		if err != nil {
			return nil, err
		}
		s.Files[f] = df
	}
	if err := s.writeMeta(dir); err != nil {
		return nil, err
	}
	if key == "" {
		s.Dir = dir
		return s, nil
	}
	return s, c.install(key, dir, s)
}

// install renames dir into place as the set for key.
func (c *Cache) install(key, dir string, s *Set) error {
	dst := c.Dir(key)
	if err := os.RemoveAll(dst); err != nil {
		return fmt.Errorf("replacing disk set %s: %w", dst, err)
	}
	if err := os.Rename(dir, dst); err != nil {
		return fmt.Errorf("caching disk set: %w", err)
	}
	s.Dir = dst
	return nil
}
