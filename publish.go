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

	"github.com/layerimg/layerimg/disk/sparse"
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
		if err := p.pushContainerDisk(ctx, res); err != nil {
			return fmt.Errorf("--push-disk: %w", err)
		}
	}
	for _, target := range o.Publish {
		if res.Disk == nil {
			return fmt.Errorf("--publish %s needs disks: add -o DIR", target)
		}
		// A result can come back with an error (an AMI made, a copy
		// failed): the log says what exists, as the manifest is not written.
		var r any
		var err error
		switch target {
		case "vsphere":
			r, err = published(p.publishVSphere(ctx, res))
		case "aws":
			r, err = published(p.publishAWS(ctx, res))
		case "azure":
			r, err = published(p.publishAzure(ctx, res))
		default:
			return fmt.Errorf("--publish %s: unknown target (aws, azure, vsphere)", target)
		}
		if r != nil {
			if res.Published == nil {
				res.Published = map[string]any{}
			}
			res.Published[target] = r
		}
		if err != nil {
			if r != nil {
				o.Log.Error("published in part", "target", target, "result", r)
			}
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
	}
	return nil
}

// pushContainerDisk pushes the qcow2 (made from the raw disk if the outputs
// lack it) as a KubeVirt containerDisk.
func (p *planner) pushContainerDisk(ctx context.Context, res *Result) error {
	qcow2 := ""
	if f, ok := res.Disk.Files["qcow2"]; ok {
		qcow2 = f.Path
	} else if f, ok := res.Disk.Files["raw"]; ok {
		tmp, err := os.MkdirTemp(p.c.TempDir(), "containerdisk-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(tmp)
		qcow2 = filepath.Join(tmp, "disk.qcow2")
		if err := Convert(ctx, f.Path, "qcow2", qcow2, false); err != nil {
			return err
		}
	} else {
		return fmt.Errorf("needs the raw or qcow2 output")
	}
	epoch := time.Unix(p.o.Epoch, 0).UTC()
	desc, err := p.c.WriteLayer(p.o.Compression, func(w io.Writer) error {
		return registry.WriteContainerDiskTar(w, qcow2, epoch)
	})
	if err != nil {
		return err
	}
	pl, err := v1.ParsePlatform(p.r.Platform)
	if err != nil {
		return err
	}
	img, err := registry.ContainerDisk(p.c.Layer(desc), pl, epoch)
	if err != nil {
		return err
	}
	d, err := registry.PushImage(ctx, p.o.PushDisk, img, p.reg)
	if err != nil {
		return err
	}
	p.o.Log.Info("pushed containerDisk", "ref", p.o.PushDisk, "digest", d)
	return nil
}

// publishVSphere publishes the VMDK (made from the raw disk if the outputs
// lack it) with the recipe's publish.vsphere section and the GOVC_*
// variables.
func (p *planner) publishVSphere(ctx context.Context, res *Result) (*vsphere.Result, error) {
	vmdkPath := ""
	if f, ok := res.Disk.Files["vmdk"]; ok {
		vmdkPath = f.Path
	} else if f, ok := res.Disk.Files["raw"]; ok {
		tmp, err := os.MkdirTemp(p.c.TempDir(), "vsphere-")
		if err != nil {
			return nil, err
		}
		defer os.RemoveAll(tmp)
		vmdkPath = filepath.Join(tmp, "disk.vmdk")
		if err := Convert(ctx, f.Path, "vmdk", vmdkPath, false); err != nil {
			return nil, err
		}
	} else {
		return nil, fmt.Errorf("needs the raw or vmdk output")
	}
	cfg := VSphereConfig(p.r.Publish)
	cfg.Digest, cfg.BootMode, cfg.Log = res.Disk.Key, res.Disk.Boot, p.o.Log
	if cfg.TemplateName == "" {
		cfg.TemplateName = p.r.Name
	}
	return vsphere.Publish(ctx, vmdkPath, cfg.FromEnv())
}

// published keeps a typed nil result out of the manifest.
func published[T any](v *T, err error) (any, error) {
	if v == nil {
		return nil, err
	}
	return v, err
}

// diskFile is the path of the first of formats the build wrote.
func diskFile(res *Result, formats ...string) string {
	for _, f := range formats {
		if df, ok := res.Disk.Files[f]; ok {
			return df.Path
		}
	}
	return ""
}

// publishAWS publishes the raw disk (or the fixed VHD) as an AMI with the
// recipe's publish.aws section; import-snapshot takes the VMDK.
func (p *planner) publishAWS(ctx context.Context, res *Result) (*aws.Result, error) {
	cfg := AWSConfig(p.r.Publish, p.r.Platform)
	path := diskFile(res, "raw", "vhd")
	if cfg.Method == aws.ImportSnapshot {
		if path = diskFile(res, "vmdk"); path == "" {
			return nil, fmt.Errorf("method import-snapshot needs the vmdk output")
		}
	} else if path == "" {
		return nil, fmt.Errorf("needs the raw or vhd output")
	}
	digest, err := p.diskDigest(res, path)
	if err != nil {
		return nil, err
	}
	cfg.Digest, cfg.Recipe, cfg.Args, cfg.Log = digest, p.r.Name, p.r.Args, p.o.Log
	cfg.StateDir = filepath.Join(p.c.Dir(), "publish") // block hashes for the next upload
	return aws.Publish(ctx, path, cfg)
}

// publishAzure uploads the fixed VHD (or the raw disk, streamed as one)
// with the recipe's publish.azure section.
func (p *planner) publishAzure(ctx context.Context, res *Result) (*azure.Result, error) {
	path := diskFile(res, "vhd", "raw")
	if path == "" {
		return nil, fmt.Errorf("needs the vhd or raw output")
	}
	digest, err := p.diskDigest(res, path)
	if err != nil {
		return nil, err
	}
	cfg := AzureConfig(p.r.Publish)
	cfg.Digest, cfg.Recipe, cfg.BootMode, cfg.Log = digest, p.r.Name, res.Disk.Boot, p.o.Log
	if p.o.AzureConnect != nil {
		p.o.AzureConnect(&cfg)
	}
	return azure.Publish(ctx, path, cfg)
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

// diskDigest is what cloud resources are tagged with to find this disk
// again: the disk set's cache key, or with --unique-ids (no key) the file's
// sha256.
func (p *planner) diskDigest(res *Result, path string) (string, error) {
	if res.Disk.Key != "" {
		return res.Disk.Key, nil
	}
	return sparse.DigestFile(path)
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
