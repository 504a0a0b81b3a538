package registry

import (
	"context"
	"fmt"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/layerimg/layerimg/layers"
)

// PushIndex pushes to ref an image index of every platform's image in
// sources: each a single-platform image (its config names the platform) or
// an index (its entries' platforms are taken as they are). Two sources for
// the same platform, or an image whose config names none, are refused
// before anything is written. The images are copied into ref's repository
// when they live elsewhere. It returns the index's digest.
func PushIndex(ctx context.Context, ref string, sources []string, reg layers.Registry) (string, error) {
	if len(sources) == 0 {
		return "", fmt.Errorf("index %s: no images to put in it", ref)
	}
	dst, err := reg.ParseRef(ref)
	if err != nil {
		return "", fmt.Errorf("index %s: %w", ref, err)
	}
	opts := reg.Options(ctx)
	var adds []mutate.IndexAddendum
	seen := map[string]string{} // platform -> the source that had it
	add := func(src string, img v1.Image, pl *v1.Platform) error {
		key := pl.String()
		if prev, ok := seen[key]; ok {
			return fmt.Errorf("index %s: %s and %s both hold an image for %s", ref, prev, src, key)
		}
		seen[key] = src
		adds = append(adds, mutate.IndexAddendum{Add: img, Descriptor: v1.Descriptor{Platform: pl}})
		return nil
	}
	mt := types.OCIImageIndex
	for i, src := range sources {
		r, err := reg.ParseRef(src)
		if err != nil {
			return "", fmt.Errorf("index %s: --from %s: %w", ref, src, err)
		}
		desc, err := remote.Get(r, opts...)
		if err != nil {
			return "", fmt.Errorf("index %s: reading %s: %w", ref, src, err)
		}
		if desc.MediaType.IsIndex() {
			idx, err := desc.ImageIndex()
			if err != nil {
				return "", fmt.Errorf("index %s: reading %s: %w", ref, src, err)
			}
			im, err := idx.IndexManifest()
			if err != nil {
				return "", fmt.Errorf("index %s: reading %s: %w", ref, src, err)
			}
			if i == 0 && desc.MediaType == types.DockerManifestList {
				mt = desc.MediaType
			}
			for _, d := range im.Manifests {
				// Attestations (buildx lists them as unknown/unknown) and
				// the like are not images for a platform.
				if d.Platform == nil || !d.MediaType.IsImage() || d.Platform.OS == "unknown" || d.Annotations["vnd.docker.reference.type"] != "" {
					continue
				}
				img, err := idx.Image(d.Digest)
				if err != nil {
					return "", fmt.Errorf("index %s: reading %s's %s image: %w", ref, src, d.Platform, err)
				}
				if err := add(src, img, d.Platform); err != nil {
					return "", err
				}
			}
			continue
		}
		img, err := desc.Image()
		if err != nil {
			return "", fmt.Errorf("index %s: reading %s: %w", ref, src, err)
		}
		cf, err := img.ConfigFile()
		if err != nil {
			return "", fmt.Errorf("index %s: reading %s's config: %w", ref, src, err)
		}
		if cf.OS == "" || cf.Architecture == "" {
			return "", fmt.Errorf("index %s: %s names no platform in its config (os %q, architecture %q)", ref, src, cf.OS, cf.Architecture)
		}
		if i == 0 && desc.MediaType == types.DockerManifestSchema2 {
			mt = types.DockerManifestList
		}
		if err := add(src, img, &v1.Platform{OS: cf.OS, Architecture: cf.Architecture, Variant: cf.Variant, OSVersion: cf.OSVersion}); err != nil {
			return "", err
		}
	}
	idx := mutate.AppendManifests(mutate.IndexMediaType(empty.Index, mt), adds...)
	popts, wait := layers.PushProgress(ctx, "pushing image index to "+ref)
	err = remote.WriteIndex(dst, idx, append(opts, popts...)...)
	wait()
	if err != nil {
		return "", fmt.Errorf("pushing image index to %s: %w", ref, err)
	}
	d, err := idx.Digest()
	return d.String(), err
}
