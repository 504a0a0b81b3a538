package layerimg

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"

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
		rd, blobs, err := diskExport(res.Disk)
		if err != nil {
			return fmt.Errorf("--cache-to: packing disks: %w", err)
		}
		if rd != nil {
			exp.Disks, exp.Blobs = []layers.RemoteDisk{*rd}, blobs
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
		switch target {
		case "vsphere":
			r, err := p.publishVSphere(ctx, res)
			if err != nil {
				return fmt.Errorf("--publish vsphere: %w", err)
			}
			if res.Published == nil {
				res.Published = map[string]any{}
			}
			res.Published["vsphere"] = r
		default:
			return fmt.Errorf("--publish %s: not supported yet (vsphere is)", target)
		}
	}
	if o.DiskArtifact != "" {
		if res.Disk == nil {
			return fmt.Errorf("--disk-artifact needs disks: add -o DIR")
		}
		rd, blobs, err := diskExport(res.Disk)
		if err != nil || rd == nil {
			return fmt.Errorf("--disk-artifact: packing disks: %v", err)
		}
		var titles []string
		for _, f := range sortedFormats(res.Disk.Files) {
			titles = append(titles, "disk."+diskExt[f]+".zst")
		}
		d, err := registry.PushArtifact(ctx, o.DiskArtifact, blobs, titles, p.reg)
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
	cfg.Digest, cfg.BootMode, cfg.Log = res.Disk.key, res.Disk.Boot, p.o.Log
	if cfg.TemplateName == "" {
		cfg.TemplateName = p.r.Name
	}
	return vsphere.Publish(ctx, vmdkPath, cfg.FromEnv())
}

// VSphereConfig is the recipe's publish.vsphere section as publisher config.
func VSphereConfig(pub *recipes.Publish) vsphere.Config {
	if pub == nil || pub.VSphere == nil {
		return vsphere.Config{}
	}
	v := pub.VSphere
	return vsphere.Config{
		URL: v.URL, Username: v.Username, Password: v.Password, Insecure: v.Insecure, Thumbprint: v.Thumbprint,
		Datacenter: v.Datacenter, Datastore: v.Datastore, Cluster: v.Cluster, Host: v.Host, ResourcePool: v.ResourcePool,
		Folder: v.Folder, Network: v.Network, TemplateName: v.TemplateName, CPUs: v.CPUs, MemoryMB: v.MemoryMB,
		HardwareVersion: v.HardwareVersion, GuestID: v.GuestID, Firmware: v.Firmware, SecureBoot: v.SecureBoot,
		DiskController: v.DiskController, Annotation: v.Annotation, ReplaceExisting: v.ReplaceExisting, ContentLibrary: v.ContentLibrary,
	}
}
