package diskset

import (
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
// made. A set written to through a handed-out link is reported and not
// returned: the caller makes it again.
func (c *Cache) Lookup(key string, fs []string) (*Set, bool) {
	s, ok := readSet(c.Dir(key))
	if !ok || !s.has(fs) {
		return nil, false
	}
	if f := s.changed(fs); f != "" {
		c.log.Warn("a cached disk changed since it was made (written to through a link?); making it again", "format", f)
		return nil, false
	}
	return s, true
}

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
