package debian

import (
	"bytes"
	"compress/gzip"
	"context"
	"fmt"
	"io"
	"sort"
	"strings"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ulikunitz/xz"

	"github.com/layerimg/layerimg/recipes"
)

// Fetch GETs a URL, no more than limit bytes of it.
type Fetch func(ctx context.Context, url string, limit int64) ([]byte, error)

// Index is what one suite offers for one architecture: each package's
// newest version.
type Index struct {
	Source recipes.AptSource
	Arch   string
	// InRelease is the sha256 of the InRelease the index was read through.
	InRelease string
	// Signer is the key that signed the InRelease; empty when no keyring
	// was given and the signature was not checked.
	Signer   string
	Packages map[string]string // name -> newest version
}

// Security says whether the suite carries security updates.
func (ix *Index) Security() bool {
	return ix.Source.Archive == "debian-security" || strings.HasSuffix(ix.Source.Suite, "-security")
}

const maxPackages = 512 << 20

// LoadIndex reads src's main/binary-ARCH Packages index through its
// InRelease: the index must have the size and SHA256 the InRelease lists,
// and, with a keyring, the InRelease must be signed by one of its keys.
func LoadIndex(ctx context.Context, fetch Fetch, src recipes.AptSource, arch string, keyring openpgp.EntityList) (*Index, error) {
	data, err := fetch(ctx, src.InRelease(), 16<<20)
	if err != nil {
		return nil, err
	}
	rel, err := ParseInRelease(data, keyring)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", src.InRelease(), err)
	}
	if err := rel.CheckFor(src.Suite, src.Snapshot, time.Now()); err != nil {
		return nil, fmt.Errorf("%s: %w", src.InRelease(), err)
	}
	ix := &Index{Source: src, Arch: arch, Signer: rel.Signer, InRelease: sha256Hex(data), Packages: map[string]string{}}
	base := "main/binary-" + arch + "/Packages"
	var name string
	for _, ext := range []string{".xz", ".gz", ""} {
		if _, ok := rel.Files[base+ext]; ok {
			name = base + ext
			break
		}
	}
	if name == "" {
		return nil, fmt.Errorf("%s lists no %s index", src.InRelease(), base)
	}
	url := strings.TrimSuffix(src.URL, "/") + "/dists/" + src.Suite + "/" + name
	raw, err := fetch(ctx, url, maxPackages)
	if err != nil {
		return nil, err
	}
	if err := rel.Check(name, raw); err != nil {
		return nil, fmt.Errorf("%s: %w", url, err)
	}
	var r io.Reader = bytes.NewReader(raw)
	switch {
	case strings.HasSuffix(name, ".xz"):
		if r, err = xz.NewReader(r); err != nil {
			return nil, fmt.Errorf("%s: %w", url, err)
		}
	case strings.HasSuffix(name, ".gz"):
		if r, err = gzip.NewReader(r); err != nil {
			return nil, fmt.Errorf("%s: %w", url, err)
		}
	}
	err = EachParagraph(r, func(p Paragraph) error {
		if a := p["Architecture"]; a != arch && a != "all" {
			return nil
		}
		n, v := p["Package"], p["Version"]
		if old, ok := ix.Packages[n]; !ok || CompareVersions(v, old) > 0 {
			ix.Packages[n] = v
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("%s: %w", url, err)
	}
	return ix, nil
}

// Update is an installed package some suite has a newer version of.
type Update struct {
	Name      string `json:"name"`
	Arch      string `json:"arch"`
	Installed string `json:"installed"`
	Candidate string `json:"candidate"`
	Archive   string `json:"archive"`
	Suite     string `json:"suite"`
	Security  bool   `json:"security"`
}

// Pending lists the installed packages that have a newer version in one
// of idx, as apt with equal priorities would pick it (the newest wins),
// security updates first, then by name.
func Pending(installed []Installed, idx []*Index) []Update {
	var out []Update
	for _, p := range installed {
		best := Update{Name: p.Name, Arch: p.Arch, Installed: p.Version, Candidate: p.Version}
		for _, ix := range idx {
			v, ok := ix.Packages[p.Name]
			if !ok || CompareVersions(v, best.Candidate) <= 0 {
				continue
			}
			best.Candidate, best.Archive, best.Suite, best.Security = v, ix.Source.Archive, ix.Source.Suite, ix.Security()
		}
		if best.Candidate != p.Version {
			out = append(out, best)
		}
	}
	sort.SliceStable(out, func(i, j int) bool {
		if out[i].Security != out[j].Security {
			return out[i].Security
		}
		return out[i].Name < out[j].Name
	})
	return out
}
