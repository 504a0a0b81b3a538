package layerimg

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/layerimg/layerimg/disk"
	"github.com/layerimg/layerimg/disk/format"
	"github.com/layerimg/layerimg/export"
	"github.com/layerimg/layerimg/export/aws"
	"github.com/layerimg/layerimg/export/azure"
	"github.com/layerimg/layerimg/export/registry"
	"github.com/layerimg/layerimg/export/vsphere"
	"github.com/layerimg/layerimg/layers"
	"github.com/layerimg/layerimg/recipes"
)

// publish does what the registry flags ask after a build: --cache-to,
// --push, --push-disk, --disk-artifact. A registry that fails here fails the
// build, with the reference named.
func (p *planner) publish(ctx context.Context, img v1.Image, res *Result, entries []layers.Entry, ls []v1.Layer) error {
	o := p.o
	if o.CacheTo != "" {
		exp := layers.CacheExport{Recipe: p.r.Name, Entries: entries, Layers: ls}
		pk, err := diskExport(res.Disk)
		if err != nil {
			return fmt.Errorf("--cache-to: packing disks: %w", err)
		}
		if pk != nil {
			if err := pk.AddTo(&exp); err != nil {
				return fmt.Errorf("--cache-to: packing disks: %w", err)
			}
		}
		if err := layers.PushCache(ctx, o.CacheTo, exp, p.reg); err != nil {
			return fmt.Errorf("--cache-to: %w", err)
		}
	}
	if o.Push != "" {
		d, err := registry.PushImage(ctx, o.Push, img, p.reg)
		if err != nil {
			return fmt.Errorf("--push: %w", err)
		}
		o.Log.Info("pushed image", "ref", o.Push, "digest", d)
	}
	if o.PushDisk != "" {
		if res.Disk == nil {
			return fmt.Errorf("--push-disk needs disks: add -o DIR")
		}
		if err := p.publishTo(ctx, registry.ContainerDiskTarget, res); err != nil {
			return fmt.Errorf("--push-disk: %w", err)
		}
	}
	for _, target := range o.Publish {
		if target == registry.ContainerDiskTarget {
			return fmt.Errorf("--publish %s: unknown target; --push-disk REF pushes a containerDisk", target)
		}
		if err := p.publishTo(ctx, target, res); err != nil {
			return fmt.Errorf("--publish %s: %w", target, err)
		}
	}
	if o.DiskArtifact != "" {
		if res.Disk == nil {
			return fmt.Errorf("--disk-artifact needs disks: add -o DIR")
		}
		pk, err := diskExport(res.Disk)
		if err != nil || pk == nil {
			return fmt.Errorf("--disk-artifact: packing disks: %v", err)
		}
		d, err := registry.PushArtifact(ctx, o.DiskArtifact, pk.Blobs, pk.Titles, p.reg)
		if err != nil {
			return fmt.Errorf("--disk-artifact: %w", err)
		}
		o.Log.Info("pushed disk artifact", "ref", o.DiskArtifact, "digest", d)
		res.DiskArtifactDigest = d
	}
	return nil
}

// publisher is the Publisher for a --publish target, set up from the
// recipe's publish section and the environment. A new target is one case.
func (p *planner) publisher(target string) (export.Publisher, error) {
	switch target {
	case aws.Target:
		cfg := AWSConfig(p.r.Publish, p.r.Platform)
		cfg.Recipe, cfg.Args, cfg.Log = p.r.Name, p.r.Args, p.o.Log
		cfg.SBOM = p.sbom
		cfg.StateDir = filepath.Join(p.c.Dir(), "publish") // block hashes for the next upload
		return aws.New(cfg), nil
	case azure.Target:
		cfg := AzureConfig(p.r.Publish)
		cfg.Recipe, cfg.Log = p.r.Name, p.o.Log
		cfg.SBOM = p.sbom
		if p.o.AzureConnect != nil {
			p.o.AzureConnect(&cfg)
		}
		return azure.New(cfg), nil
	case vsphere.Target:
		cfg := VSphereConfig(p.r.Publish)
		cfg.Log = p.o.Log
		cfg.SBOM = p.sbom
		if cfg.TemplateName == "" {
			cfg.TemplateName = p.r.Name
		}
		return vsphere.New(cfg.FromEnv()), nil
	case registry.ContainerDiskTarget: // --push-disk, not a --publish target
		return &registry.ContainerDiskPublisher{
			Ref: p.o.PushDisk, Registry: p.reg, Created: time.Unix(p.o.Epoch, 0).UTC(), Log: p.o.Log,
			Layer: func(write func(io.Writer) error) (v1.Layer, error) {
				desc, err := p.c.WriteLayer(p.o.Compression, write)
				if err != nil {
					return nil, err
				}
				return p.c.Layer(desc), nil
			},
		}, nil
	}
	return nil, fmt.Errorf("unknown target (%s, %s, %s)", aws.Target, azure.Target, vsphere.Target)
}

// publishTo publishes the build's disk to target and records what it made
// in the manifest, also when it made part of it and failed (an AMI made, a
// copy failed): the log says what exists, as the manifest is not written.
func (p *planner) publishTo(ctx context.Context, target string, res *Result) error {
	if res.Disk == nil {
		return fmt.Errorf("needs disks: add -o DIR")
	}
	pub, err := p.publisher(target)
	if err != nil {
		return err
	}
	d, cleanup, err := p.diskFor(ctx, pub, res)
	if err != nil {
		return err
	}
	defer cleanup()
	r, err := pub.Publish(ctx, d)
	if r != nil {
		if res.Published == nil {
			res.Published = map[string]any{}
		}
		res.Published[target] = r
	}
	if err != nil {
		if r != nil {
			p.o.Log.Error("published in part", "target", target, "result", r)
		}
		return fmt.Errorf("publishing %s: %w", d.Path, err)
	}
	return nil
}

// diskFor picks, of the build's disk files, the one pub takes best, or
// converts the raw disk to pub's first choice in a scratch dir that cleanup
// removes. The disk is named by its content, as `layerimg publish` names
// it, so a disk published by either route is found again by the other.
func (p *planner) diskFor(ctx context.Context, pub export.Publisher, res *Result) (export.Disk, func(), error) {
	cleanup := func() {}
	files := map[format.Format]string{}
	for f, df := range res.Disk.Files {
		files[format.Format(f)] = df.Path
	}
	f, path, ok := export.Pick(pub, files)
	if !ok {
		raw, ok := files[format.Raw]
		if !ok {
			return export.Disk{}, cleanup, fmt.Errorf("needs the %s output, or raw to convert", pub.Formats()[0])
		}
		tmp, err := os.MkdirTemp(p.c.TempDir(), "publish-")
		if err != nil {
			return export.Disk{}, cleanup, err
		}
		cleanup = func() { os.RemoveAll(tmp) }
		f = pub.Formats()[0]
		path = filepath.Join(tmp, "disk."+f.Ext())
		if err := Convert(ctx, raw, string(f), path, false); err != nil {
			return export.Disk{}, cleanup, fmt.Errorf("converting %s to %s: %w", raw, f, err)
		}
	}
	digest, err := disk.ContentDigest(path)
	if err != nil {
		return export.Disk{}, cleanup, err
	}
	return export.Disk{Path: path, Format: f, Boot: res.Disk.Boot, Platform: p.r.Platform, Digest: digest}, cleanup, nil
}

// AzureConfig is the recipe's publish.azure section as publisher config,
// with the subscription and endpoints the environment sets.
func AzureConfig(pub *recipes.Publish) azure.Config {
	var a *recipes.Azure
	if pub != nil {
		a = pub.Azure
	}
	return azure.FromRecipe(a).FromEnv()
}

// AWSConfig is the recipe's publish.aws section as publisher config; the
// architecture follows the recipe's platform unless the section says.
func AWSConfig(pub *recipes.Publish, platform string) aws.Config {
	var a *recipes.AWS
	if pub != nil {
		a = pub.AWS
	}
	c := aws.FromRecipe(a).FromEnv()
	if c.Architecture == "" && strings.HasSuffix(platform, "/arm64") {
		c.Architecture = "arm64"
	}
	return c
}

// VSphereConfig is the recipe's publish.vsphere section as publisher config.
func VSphereConfig(pub *recipes.Publish) vsphere.Config {
	var v *recipes.VSphere
	if pub != nil {
		v = pub.VSphere
	}
	return vsphere.FromRecipe(v)
}
