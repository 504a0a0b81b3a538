package diskset

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/layerimg/layerimg/layers"
)

// Check checks every cached set: its meta.json against its checksum, and
// each file against its recorded size and content digest. With repair, a
// bad set is dropped whole. It is the disk sets' part of `cache verify`.
func (c *Cache) Check(ctx context.Context, repair bool) (checked int, bad []layers.Problem, err error) {
	ents, err := os.ReadDir(c.dir)
	if err != nil {
		return 0, nil, err
	}
	for _, d := range ents {
		if strings.HasPrefix(d.Name(), ".") {
			continue
		}
		if err := ctx.Err(); err != nil {
			return checked, bad, err
		}
		dir := filepath.Join(c.dir, d.Name())
		checked++
		item, why := c.checkSet(ctx, dir)
		if err := ctx.Err(); err != nil {
			return checked, bad, err // interrupted: the set is not known bad
		}
		if why == nil {
			continue
		}
		bad = append(bad, layers.Problem{Item: c.rel(item), Why: why.Error()})
		if repair {
			c.drop(dir)
		}
	}
	return checked, bad, nil
}

// checkSet returns the first bad item of the set in dir and why.
func (c *Cache) checkSet(ctx context.Context, dir string) (string, error) {
	meta := filepath.Join(dir, "meta.json")
	s, err := readSet(dir)
	if errors.Is(err, os.ErrNotExist) {
		return meta, errors.New("missing (an unfinished set)")
	}
	if err != nil {
		return meta, err
	}
	fs := make([]string, 0, len(s.Files))
	for f := range s.Files {
		fs = append(fs, f)
	}
	sort.Strings(fs)
	for _, f := range fs {
		if err := s.check(ctx, f); err != nil {
			return s.Path(f), err
		}
	}
	return "", nil
}
