package layerimg

import (
	"archive/tar"
	"cmp"
	"context"
	"fmt"
	"path"
	"slices"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/layerimg/layerimg/recipes"
	"github.com/layerimg/layerimg/rootfs"
)

// LayerStats sums up a layer from its tar headers.
type LayerStats struct {
	// Uncompressed is the bytes of the regular files the layer holds
	// (tar headers and padding not counted).
	Uncompressed int64 `json:"uncompressed_size"`
	// Files is how many entries it adds or changes: files, directories,
	// links; whiteouts (deletions) are not counted.
	Files int `json:"files"`
}

// PathSize is one regular file a layer holds.
type PathSize struct {
	Path string `json:"path"`
	Size int64  `json:"size"`
}

// StepSizes is what `layerimg size` says of one step (or of the
// bootstrapped base, index 0).
type StepSizes struct {
	StepPlan
	// Largest are the step's largest files, largest first.
	Largest []PathSize `json:"largest,omitempty"`
	// Note says why nothing was read: not cached, cached only remotely.
	Note string `json:"note,omitempty"`
}

// layerStats reads l's headers (from the cache's headers when kept, else
// from the layer, then kept) and sums them up; top > 0 also lists the top
// largest regular files.
func layerStats(ctx context.Context, l v1.Layer, hc rootfs.HeaderCache, top int) (LayerStats, []PathSize, error) {
	hdrs, err := rootfs.LayerHeaders(ctx, l, hc)
	if err != nil {
		return LayerStats{}, nil, err
	}
	var st LayerStats
	var files []PathSize
	for _, h := range hdrs {
		if strings.HasPrefix(path.Base(h.Name), ".wh.") {
			continue
		}
		st.Files++
		if h.Typeflag == tar.TypeReg || h.Typeflag == tar.TypeRegA {
			st.Uncompressed += h.Size
			if top > 0 {
				files = append(files, PathSize{Path: "/" + strings.TrimPrefix(path.Clean("/"+h.Name), "/"), Size: h.Size})
			}
		}
	}
	slices.SortFunc(files, func(a, b PathSize) int { return cmp.Or(cmp.Compare(b.Size, a.Size), cmp.Compare(a.Path, b.Path)) })
	if len(files) > top {
		files = files[:top]
	}
	return st, files, nil
}

// withStats fills sp's uncompressed size and file count from l. Stats are
// a report: a layer that cannot be read is logged, not an error here (the
// step that uses it fails with its own words).
func (p *planner) withStats(ctx context.Context, sp *StepPlan, ls ...v1.Layer) {
	var sum StepPlan
	for _, l := range ls {
		if l == nil {
			return
		}
		if _, remote := l.(interface{ Source() v1.Layer }); remote {
			return // not fetched for a report
		}
		st, _, err := layerStats(ctx, l, p.c, 0)
		if err == nil {
			var n int64
			n, err = l.Size()
			sum.Size += n
		}
		if err != nil {
			p.o.Log.Warn("could not read a layer's sizes", "step", sp.Name, "err", err)
			return
		}
		sum.Uncompressed += st.Uncompressed
		sum.Files += st.Files
	}
	sp.Size, sp.Uncompressed, sp.Files = sum.Size, sum.Uncompressed, sum.Files
}

// Sizes reports, for the bootstrapped base and each step, the sizes of its
// cached layer and its top largest files, read from the cache without
// building anything. A step not cached is reported as such.
func Sizes(ctx context.Context, r *recipes.Recipe, o Options, top int) ([]StepSizes, error) {
	if top < 1 {
		return nil, fmt.Errorf("--top must be at least 1, not %d", top)
	}
	p, err := start(ctx, r, &o, true)
	if err != nil {
		return nil, err
	}
	defer p.c.Close()
	var out []StepSizes
	report := func(sp StepPlan, ls []v1.Layer) error {
		s := StepSizes{StepPlan: sp}
		s.Size = 0 // summed from the layers below
		switch {
		case sp.Status == Miss:
			s.Note = "not cached: build it first"
		case sp.Status == HitRemote:
			s.Note = "cached in a registry only: not fetched"
		}
		if s.Note == "" {
			for _, l := range ls {
				st, big, err := layerStats(ctx, l, p.c, top)
				if err != nil {
					return fmt.Errorf("%s: %w", sp.Name, err)
				}
				n, err := l.Size()
				if err != nil {
					return fmt.Errorf("%s: %w", sp.Name, err)
				}
				s.Size += n
				s.Uncompressed += st.Uncompressed
				s.Files += st.Files
				s.Largest = append(s.Largest, big...)
			}
			slices.SortFunc(s.Largest, func(a, b PathSize) int { return cmp.Or(cmp.Compare(b.Size, a.Size), cmp.Compare(a.Path, b.Path)) })
			if len(s.Largest) > top {
				s.Largest = s.Largest[:top]
			}
		}
		out = append(out, s)
		return nil
	}
	if r.From.Bootstrap != nil {
		sp := StepPlan{Index: 0, Name: "bootstrap", Kind: "bootstrap", Key: p.base.ID, Status: Hit}
		var ls []v1.Layer
		if p.base.Image == nil {
			sp.Status = Miss
		} else if ls, err = p.base.Image.Layers(); err != nil {
			return nil, err
		}
		if err := report(sp, ls); err != nil {
			return nil, err
		}
	}
	parent := p.base.ID
	for i := range r.Steps {
		sp, _, _, l, err := p.step(i, parent)
		if err != nil {
			return nil, err
		}
		if sp.Key == "" {
			continue // an env step has no layer
		}
		parent = sp.Key
		if err := report(sp, []v1.Layer{l}); err != nil {
			return nil, err
		}
	}
	return out, nil
}
