package layerimg

import (
	"archive/tar"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/layerimg/layerimg/internal/debian"
	"github.com/layerimg/layerimg/layers"
	"github.com/layerimg/layerimg/recipes"
)

// OutdatedOptions controls Outdated.
type OutdatedOptions struct {
	// Keyrings verify each InRelease's signature. Empty means the host's
	// /usr/share/keyrings/debian-archive-keyring.gpg when it exists, and
	// otherwise no signature check (the Packages indexes are still checked
	// against the InRelease's digests).
	Keyrings []string
	// Timeout bounds each download; 0 means 5 minutes.
	Timeout time.Duration
	// Image, when set, is the image to read instead of the cache's last
	// build: a registry reference or oci-layout:DIR, as from: takes, for
	// a runner that has the pushed image but not the build's cache.
	Image string
}

// DefaultKeyring is Debian's archive keyring as debian-archive-keyring
// installs it.
const DefaultKeyring = "/usr/share/keyrings/debian-archive-keyring.gpg"

// OutdatedReport is what Outdated found.
type OutdatedReport struct {
	Recipe string `json:"recipe"`
	// Image is what was read: "image" (every step of the last build was
	// in the cache) or "base" (only the bootstrap base was).
	Image     string           `json:"image"`
	Key       string           `json:"key"` // the cache key of the layer read
	Installed int              `json:"installed"`
	Sources   []OutdatedSource `json:"sources"`
	Updates   []debian.Update  `json:"updates"`
	Verified  string           `json:"verified"`
}

// OutdatedSource is one suite as read now.
type OutdatedSource struct {
	Archive   string `json:"archive"`
	Suite     string `json:"suite"`
	URL       string `json:"url"`
	InRelease string `json:"inrelease"`
	// Built is the InRelease digest the base was built from, when recorded.
	Built  string `json:"built,omitempty"`
	Signer string `json:"signer,omitempty"`
}

// Security counts the security updates.
func (r *OutdatedReport) Security() int {
	n := 0
	for _, u := range r.Updates {
		if u.Security {
			n++
		}
	}
	return n
}

// Outdated lists the packages of the recipe's last build (its final image
// if every step is still cached, else its bootstrap base) that the base's
// suites now have newer versions of, without building anything.
func Outdated(ctx context.Context, r *recipes.Recipe, o Options, oo OutdatedOptions) (*OutdatedReport, error) {
	if r.From.Bootstrap == nil {
		return nil, fmt.Errorf("outdated reads a Debian bootstrap base's suites; %s's base is %s", r.Name, r.From.Ref)
	}
	if err := o.defaults(); err != nil {
		return nil, err
	}
	if oo.Timeout <= 0 {
		oo.Timeout = 5 * time.Minute
	}
	c, err := layers.OpenCache(o.CacheDir, false, o.Log)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	var (
		rep   *OutdatedReport
		stack []v1.Layer
		bs    recipes.Bootstrap
		bin   layers.KeyInput
	)
	if oo.Image != "" {
		rep, stack, err = outdatedImage(ctx, c, r, o, oo.Image)
		bs, bin.Platform = *r.From.Bootstrap, r.Platform
	} else {
		rep, stack, bs, bin, err = outdatedBuild(c, r)
	}
	if err != nil {
		return nil, err
	}
	status, err := dpkgStatus(stack)
	if err != nil {
		return nil, fmt.Errorf("%s of %s: %w", rep.Image, r.Name, err)
	}
	installed, err := debian.ReadStatus(strings.NewReader(status))
	if err != nil {
		return nil, fmt.Errorf("%s of %s: %w", rep.Image, r.Name, err)
	}
	rep.Installed = len(installed)

	if bs.Snapshot != "" {
		// A snapshot never moves: what is pending is what today's
		// archives have over it.
		bs.Snapshot, bs.Mirror, bs.SecurityMirror = "", "", ""
	}
	srcs, err := bs.Sources()
	if err != nil {
		return nil, err
	}
	arch := layers.DebianArch(bin.Platform)
	if arch == "" {
		return nil, fmt.Errorf("platform %s has no Debian architecture", bin.Platform)
	}
	keyrings := oo.Keyrings
	if len(keyrings) == 0 {
		if _, err := os.Stat(DefaultKeyring); err == nil {
			keyrings = []string{DefaultKeyring}
		}
	}
	if len(keyrings) == 0 {
		// Unchecked indexes could hide pending security updates, and then
		// a nightly job would skip its rebuild: no keyring, no answer.
		return nil, fmt.Errorf("no keyring to check the mirrors' InRelease signatures with: apt-get install debian-archive-keyring (for %s), or pass --keyring FILE", DefaultKeyring)
	}
	kr, err := debian.ReadKeyring(keyrings...)
	if err != nil {
		return nil, err
	}
	rep.Verified = "InRelease signatures by " + strings.Join(keyrings, ", ") + "; each InRelease's suite and Valid-Until; Packages indexes by the InRelease's SHA256"
	built := map[string]string{}
	for _, m := range bin.Mirrors {
		built[m.Name()] = m.InRelease
	}
	fetch := func(ctx context.Context, url string, limit int64) ([]byte, error) {
		return layers.FetchMirrorFile(ctx, url, oo.Timeout, limit)
	}
	var idx []*debian.Index
	for _, s := range srcs {
		ix, err := debian.LoadIndex(ctx, fetch, s, arch, kr)
		if err != nil {
			return nil, fmt.Errorf("reading %s %s: %w", s.Archive, s.Suite, err)
		}
		idx = append(idx, ix)
		rep.Sources = append(rep.Sources, OutdatedSource{Archive: s.Archive, Suite: s.Suite, URL: s.URL, InRelease: ix.InRelease,
			Built: built[layers.MirrorState{Archive: s.Archive, Suite: s.Suite}.Name()], Signer: ix.Signer})
	}
	rep.Updates = debian.Pending(installed, idx)
	if rep.Updates == nil {
		rep.Updates = []debian.Update{}
	}
	return rep, nil
}

// outdatedImage reads the image ref names.
func outdatedImage(ctx context.Context, c *layers.Cache, r *recipes.Recipe, o Options, ref string) (*OutdatedReport, []v1.Layer, error) {
	b, err := layers.ResolveBase(ctx, c, recipes.Base{Ref: ref}, layers.BaseOptions{Platform: r.Platform, InsecureRegistries: o.InsecureRegistries, Logger: o.Log, Dir: r.Dir})
	if err != nil {
		return nil, nil, err
	}
	ls, err := b.Image.Layers()
	if err != nil {
		return nil, nil, fmt.Errorf("image %s: %w", ref, err)
	}
	return &OutdatedReport{Recipe: r.Name, Image: ref, Key: b.ID}, ls, nil
}

// outdatedBuild finds the last build of r in the cache: its final image if
// every step's layer is still there, else its bootstrap base.
func outdatedBuild(c *layers.Cache, r *recipes.Recipe) (*OutdatedReport, []v1.Layer, recipes.Bootstrap, layers.KeyInput, error) {
	var bs recipes.Bootstrap
	rec := readRecord(c, r.Name, r.Platform)
	bin, ok := rec["bootstrap"]
	if !ok {
		return nil, nil, bs, bin, fmt.Errorf("no build of %s is recorded in the cache %s: build it first, or name the built image with --image (outdated reads the built image's packages)", r.Name, c.Dir())
	}
	// The spec as built, defaults and all, says which suites the image has.
	if data, err := json.Marshal(bin.Spec); err != nil || json.Unmarshal(data, &bs) != nil {
		return nil, nil, bs, bin, fmt.Errorf("the recorded bootstrap of %s does not read back; build again", r.Name)
	}
	e, err := c.Lookup(bin.Key())
	if err != nil {
		return nil, nil, bs, bin, err
	}
	if e == nil {
		return nil, nil, bs, bin, fmt.Errorf("the last built base of %s (%s) is no longer in the cache: build again", r.Name, short(bin.Key()))
	}
	rep := &OutdatedReport{Recipe: r.Name, Image: "image", Key: e.Key}
	stack := []v1.Layer{c.Layer(e.Layer)}
	for i := range r.Steps {
		st := &r.Steps[i]
		if st.Kind() == "env" {
			continue
		}
		se, err := func() (*layers.Entry, error) {
			in, ok := rec[st.Name]
			if !ok {
				return nil, nil
			}
			return c.Lookup(in.Key())
		}()
		if err != nil || se == nil {
			// A step of the last build is gone: read its base alone.
			rep.Image, rep.Key = "base", e.Key
			return rep, stack[:1], bs, bin, nil
		}
		stack = append(stack, c.Layer(se.Layer))
		rep.Key = se.Key
	}
	return rep, stack, bs, bin, nil
}

// dpkgStatus is /var/lib/dpkg/status as the topmost layer that has it
// holds it.
func dpkgStatus(stack []v1.Layer) (string, error) {
	for i := len(stack) - 1; i >= 0; i-- {
		data, found, err := fileInLayer(stack[i], "var/lib/dpkg/status")
		if err != nil {
			return "", err
		}
		if found {
			return string(data), nil
		}
	}
	return "", errors.New("no /var/lib/dpkg/status: not a Debian image")
}

func fileInLayer(l v1.Layer, name string) ([]byte, bool, error) {
	rc, err := l.Uncompressed()
	if err != nil {
		return nil, false, err
	}
	defer rc.Close()
	tr := tar.NewReader(rc)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return nil, false, nil
		}
		if err != nil {
			return nil, false, err
		}
		if strings.TrimPrefix(h.Name, "./") == name && h.Typeflag == tar.TypeReg {
			data, err := io.ReadAll(io.LimitReader(tr, 256<<20))
			return data, true, err
		}
	}
}
