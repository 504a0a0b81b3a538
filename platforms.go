package layerimg

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/layerimg/layerimg/export/registry"
	"github.com/layerimg/layerimg/export/sign"
	"github.com/layerimg/layerimg/layers"
	"github.com/layerimg/layerimg/recipes"
)

// TargetArchArg is the arg a recipe may declare to learn the architecture
// it is built for (amd64, arm64), as Docker's TARGETARCH: unless --arg sets
// it, each platform's build gives it the platform's architecture.
const TargetArchArg = "TARGETARCH"

// ParsePlatforms splits a --platform value (linux/amd64,linux/arm64) and
// checks each; an empty value is no platform (the recipe's own).
func ParsePlatforms(s string) ([]string, error) {
	if s == "" {
		return nil, nil
	}
	var out []string
	for _, p := range strings.Split(s, ",") {
		p = strings.TrimSpace(p)
		pl, err := v1.ParsePlatform(p)
		if err != nil || pl.OS != "linux" || pl.Architecture == "" {
			return nil, fmt.Errorf("--platform %q: expected linux/ARCH such as linux/amd64 or linux/arm64, comma separated", p)
		}
		if slices.Contains(out, p) {
			return nil, fmt.Errorf("--platform: %s is listed twice", p)
		}
		out = append(out, p)
	}
	return out, nil
}

// LoadRecipe loads the recipe at path with the --arg overrides for
// platform (empty: the recipe's own platform). A recipe that declares
// TARGETARCH gets the platform's architecture in it unless args set it.
func LoadRecipe(path string, args map[string]string, platform string) (*recipes.Recipe, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading recipe: %w", err)
	}
	r, err := recipes.Parse(path, data)
	if err != nil {
		return nil, err
	}
	if platform != "" {
		r.Platform = platform
	}
	if _, declared := r.Args[TargetArchArg]; declared {
		if _, set := args[TargetArchArg]; !set {
			pl, err := v1.ParsePlatform(r.Platform)
			if err != nil {
				return nil, fmt.Errorf("%s: platform %q: %w", path, r.Platform, err)
			}
			args = mapWith(args, TargetArchArg, pl.Architecture)
		}
	}
	if err := r.Expand(args); err != nil {
		return nil, err
	}
	return r, nil
}

func mapWith(m map[string]string, k, v string) map[string]string {
	out := map[string]string{k: v}
	for mk, mv := range m {
		if mk != k {
			out[mk] = mv
		}
	}
	return out
}

// PlatformResult is one platform's build of a multi-platform build.
type PlatformResult struct {
	Platform string
	*Result
}

// BuildPlatforms builds the recipe at path once per platform, one after
// the other. Each platform's steps are keyed by its platform, so they share
// a cache without mixing. With more than one platform, what would collide
// is split per platform (PlatformDir names the part):
//   - -o DIR and --oci-layout DIR get a subdirectory each (DIR/linux-arm64);
//   - --rootfs-tar, --manifest, --provenance and --sbom files get the part
//     before the extension;
//   - --cache-to REF and every --cache-from REF get it after the tag
//     (cache:main-linux-arm64);
//   - --push REF gets an OCI image index of the platforms' images, each
//     pushed to REF's repository by digest.
//
// --push-disk and --disk-artifact name one artifact and are refused with
// several platforms: build each platform on its own for those.
func BuildPlatforms(ctx context.Context, path string, args map[string]string, platforms []string, o Options) ([]PlatformResult, string, error) {
	if len(platforms) <= 1 {
		p := ""
		if len(platforms) == 1 {
			p = platforms[0]
		}
		r, err := LoadRecipe(path, args, p)
		if err != nil {
			return nil, "", err
		}
		res, err := Build(ctx, r, o)
		if err != nil {
			return nil, "", err
		}
		return []PlatformResult{{r.Platform, res}}, res.Image, nil
	}
	if o.PushDisk != "" || o.DiskArtifact != "" {
		return nil, "", fmt.Errorf("--push-disk and --disk-artifact push one disk: with several platforms, build each platform on its own")
	}
	var out []PlatformResult
	var pushed []string
	for _, platform := range platforms {
		r, err := LoadRecipe(path, args, platform)
		if err != nil {
			return out, "", fmt.Errorf("%s: %w", platform, err)
		}
		po, err := o.forPlatform(platform)
		if err != nil {
			return out, "", err
		}
		var ref string
		if o.Push != "" {
			// Each image goes to the repository untagged, by digest; the
			// index made at the end takes the tag.
			po.Push, po.pushImage = "", func(ctx context.Context, reg layers.Registry, img v1.Image) (string, error) {
				d, err := img.Digest()
				if err != nil {
					return "", err
				}
				r, err := reg.ParseRef(o.Push)
				if err != nil {
					return "", fmt.Errorf("--push %s: %w", o.Push, err)
				}
				ref = r.Context().Digest(d.String()).String()
				if _, err := registry.PushImage(ctx, ref, img, reg); err != nil {
					return "", fmt.Errorf("--push: %w", err)
				}
				return ref, nil
			}
		}
		res, err := Build(ctx, r, po)
		if err != nil {
			return out, "", fmt.Errorf("building for %s: %w", platform, err)
		}
		out = append(out, PlatformResult{platform, res})
		if ref != "" {
			pushed = append(pushed, ref)
		}
	}
	if o.Push == "" {
		return out, "", nil
	}
	if err := o.defaults(); err != nil {
		return out, "", err
	}
	d, err := registry.PushIndex(ctx, o.Push, pushed, layers.Registry{Insecure: o.InsecureRegistries, Log: o.Log})
	if err != nil {
		return out, "", fmt.Errorf("--push: %w", err)
	}
	o.Log.Info("pushed image index", "ref", o.Push, "digest", d, "platforms", strings.Join(platforms, ","))
	if o.Signer != nil {
		// Each platform's image was signed by its build; the index is what
		// the tag names, so `verify REF` checks it first.
		reg := layers.Registry{Insecure: o.InsecureRegistries, Log: o.Log}
		ref, err := reg.ParseRef(o.Push)
		if err != nil {
			return out, d, fmt.Errorf("--push %s: %w", o.Push, err)
		}
		if err := sign.SignImage(ctx, o.Signer, ref.Context().Digest(d), sign.Remote{Options: reg.Options(ctx)}); err != nil {
			return out, d, fmt.Errorf("signing the index %s: %w", o.Push, err)
		}
	}
	return out, d, nil
}

// PlatformDir is the name of platform's part of a multi-platform build's
// outputs: linux/arm64 is linux-arm64, linux/arm/v7 linux-arm-v7.
func PlatformDir(platform string) string {
	return strings.ReplaceAll(platform, "/", "-")
}

// forPlatform is o for one platform of several: see BuildPlatforms.
func (o Options) forPlatform(platform string) (Options, error) {
	part := PlatformDir(platform)
	if o.DiskDir != "" {
		o.DiskDir = filepath.Join(o.DiskDir, part)
	}
	if o.OCILayout != "" {
		o.OCILayout = filepath.Join(o.OCILayout, part)
	}
	o.RootfsTar, o.Manifest = withPart(o.RootfsTar, part), withPart(o.Manifest, part)
	o.Provenance, o.SBOM = withPart(o.Provenance, part), withPart(o.SBOM, part)
	var err error
	if o.CacheTo, err = tagWithPart(o.CacheTo, part); err != nil {
		return o, fmt.Errorf("--cache-to: %w", err)
	}
	from := make([]string, len(o.CacheFrom))
	for i, ref := range o.CacheFrom {
		if from[i], err = tagWithPart(ref, part); err != nil {
			return o, fmt.Errorf("--cache-from: %w", err)
		}
	}
	o.CacheFrom = from
	return o, nil
}

// withPart puts part before file's extension: build.json, build-linux-arm64.json.
func withPart(file, part string) string {
	if file == "" {
		return ""
	}
	ext := filepath.Ext(file)
	return strings.TrimSuffix(file, ext) + "-" + part + ext
}

// tagWithPart appends part to ref's tag (latest when it has none).
func tagWithPart(ref, part string) (string, error) {
	if ref == "" {
		return "", nil
	}
	if strings.Contains(ref, "@") {
		return "", fmt.Errorf("%s: a digest names one platform's cache; give a tag", ref)
	}
	repo, tag := ref, "latest"
	if i := strings.LastIndex(ref, ":"); i > strings.LastIndex(ref, "/") {
		repo, tag = ref[:i], ref[i+1:]
	}
	return repo + ":" + tag + "-" + part, nil
}

// PushIndex pushes to ref an image index of the platforms' images in
// sources (single-platform images or indexes): layerimg index.
func PushIndex(ctx context.Context, ref string, sources []string, reg layers.Registry) (string, error) {
	return registry.PushIndex(ctx, ref, sources, reg)
}
