package layerimg

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"log/slog"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/layerimg/layerimg/export/sign"
	"github.com/layerimg/layerimg/internal/sbom"
	"github.com/layerimg/layerimg/rootfs"
)

// SBOMInfo records the build's SPDX 2.3 JSON SBOM (--sbom).
type SBOMInfo struct {
	Path   string `json:"path"`
	Digest string `json:"digest"`   // sha256:... of the document's bytes
	Format string `json:"format"`   // "spdx-json" (SPDX 2.3)
	Count  int    `json:"packages"` // dpkg packages listed
	// Attached lists the pushed manifests the SBOM was attached to
	// (cosign's sha256-HEX.sbom tags).
	Attached []string `json:"attached,omitempty"`
	// Document is the SBOM itself, for what follows the build in the
	// same process (attaching and signing it next to the pushed image).
	Document []byte `json:"-"`
}

// SBOMMediaType is the SPDX JSON media type, as registries and cosign
// know it.
const SBOMMediaType = "application/spdx+json"

// makeSBOM makes the SBOM of img's final tree: the dpkg packages it
// holds and its layers, named as the build names them (names[i] for the
// layer i; the base's first nBase). The tree is indexed from the cache's
// headers and the files it needs read in one pass per layer.
func makeSBOM(ctx context.Context, log *slog.Logger, img v1.Image, hc rootfs.HeaderCache, info sbom.Image, names []string, nBase int, epoch int64) (*SBOMInfo, error) {
	began := time.Now()
	tree, err := rootfs.Index(ctx, img, hc)
	if err != nil {
		return nil, fmt.Errorf("sbom: %w", err)
	}
	d, err := img.Digest()
	if err != nil {
		return nil, err
	}
	info.Digest = d.String()
	ls, err := img.Layers()
	if err != nil {
		return nil, err
	}
	for i, l := range ls {
		dg, err := l.Digest()
		if err != nil {
			return nil, err
		}
		id, err := l.DiffID()
		if err != nil {
			return nil, err
		}
		size, err := l.Size()
		if err != nil {
			return nil, err
		}
		name := fmt.Sprintf("layer %d", i+1)
		if i < len(names) {
			name = names[i]
		} else if i == len(names) && len(names) > 0 {
			name = "disk (the files the disk stage adds)"
		}
		info.Layers = append(info.Layers, sbom.Layer{Name: name, Digest: dg.String(), DiffID: id.String(), Size: size, Base: i < nBase})
	}
	var fsys sbom.FS = tree
	if cc, ok := hc.(rootfs.ContentCache); ok {
		fsys = cachedTree{tree, cc}
	}
	res, err := sbom.Generate(ctx, fsys, info, sbom.Options{Created: time.Unix(epoch, 0)})
	if err != nil {
		return nil, err
	}
	sum := sha256.Sum256(res.JSON)
	out := &SBOMInfo{Digest: "sha256:" + hex.EncodeToString(sum[:]), Format: "spdx-json", Count: res.Packages, Document: res.JSON}
	log.Info("made the SBOM", "packages", res.Packages, "digest", out.Digest, "elapsed", time.Since(began).Round(time.Millisecond))
	return out, nil
}

// write writes the document to path (written beside it and renamed).
func (s *SBOMInfo) write(path string) error {
	if err := writeFile(path, s.Document); err != nil {
		return fmt.Errorf("writing SBOM %s: %w", path, err)
	}
	s.Path = path
	return nil
}

// writeSBOM makes the SBOM of the build's final image when --sbom asks
// for it and whenever the image leaves the machine (pushed, published,
// signed or attested), and writes it to --sbom; publishers tag what they
// make with its digest, and pushes carry it. It reads the image's files,
// so a local build that reuses disks from a registry cache (and so pulls
// no layer) makes none unless asked.
func (b *buildRun) writeSBOM(ctx context.Context, img v1.Image) error {
	o := b.o
	path := o.SBOM
	if path == "" && o.Push == "" && o.pushImage == nil && o.PushDisk == "" && o.DiskArtifact == "" &&
		len(o.Publish) == 0 && o.Signer == nil && o.Provenance == "" {
		return nil
	}
	info := sbom.Image{Name: b.r.Name, BaseRef: b.base.Ref, BaseDigest: b.base.Digest}
	s, err := makeSBOM(ctx, b.o.Log, img, b.c, info, b.names, b.nBase, b.o.Epoch)
	if err != nil {
		return err
	}
	if path != "" {
		if err := s.write(path); err != nil {
			return err
		}
	}
	b.res.SBOM, b.sbom = s, s.Digest
	return nil
}

// attachSBOM attaches the SBOM to every manifest the build pushed, with
// cosign's tag scheme (Debian's docker-registry, like many, has no
// referrers API).
func (b *buildRun) attachSBOM(ctx context.Context) error {
	if b.res.SBOM == nil {
		return nil
	}
	r := sign.Remote{Options: b.reg.Options(ctx)}
	for _, p := range b.pushedManifests() {
		ref, err := b.reg.ParseRef(p.ref)
		if err != nil {
			return fmt.Errorf("attaching the SBOM to %s: %w", p.ref, err)
		}
		d := ref.Context().Digest(p.digest)
		if err := sign.AttachSBOM(ctx, d, b.res.SBOM.Document, sign.SPDXJSONAttachment, r); err != nil {
			return fmt.Errorf("attaching the SBOM to %s: %w", p.ref, err)
		}
		b.res.SBOM.Attached = append(b.res.SBOM.Attached, d.String())
	}
	return nil
}

// diskSBOM writes --sbom for `layerimg disk`: the image the disk was made
// of, with the disk's generated layer.
func diskSBOM(ctx context.Context, o Options, hc rootfs.HeaderCache, img v1.Image, source string) error {
	s, err := makeSBOM(ctx, o.Log, img, hc, sbom.Image{Name: source, BaseRef: source}, nil, 0, o.Epoch)
	if err != nil {
		return err
	}
	return s.write(o.SBOM)
}

// cachedTree reads the SBOM's files through the cache's kept contents.
type cachedTree struct {
	*rootfs.Tree
	cc rootfs.ContentCache
}

func (t cachedTree) ReadFiles(ctx context.Context, names []string, fn func(name string, data []byte) error) error {
	return t.ReadFilesCached(ctx, names, t.cc, fn)
}
