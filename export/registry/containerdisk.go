package registry

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/layerimg/layerimg/disk/format"
	"github.com/layerimg/layerimg/export"
	"github.com/layerimg/layerimg/layers"
)

// ContainerDiskTarget names the containerDisk push in manifests.
const ContainerDiskTarget = "containerdisk"

// Pushed is what a registry push made: the reference and the manifest
// digest it points at.
type Pushed struct {
	Ref    string `json:"ref"`
	Digest string `json:"digest"`
}

// Target implements export.Result.
func (*Pushed) Target() string { return ContainerDiskTarget }

// ContainerDiskPublisher pushes a qcow2 disk as a KubeVirt containerDisk:
// an image whose one layer holds /disk/disk.qcow2.
type ContainerDiskPublisher struct {
	Ref      string
	Registry layers.Registry
	// Created is the image's creation time and the layer's mtimes.
	Created time.Time
	// Layer stores the layer that write produces, compressed as the
	// build's other layers, so that the same disk gives the same digest.
	Layer func(write func(io.Writer) error) (v1.Layer, error)
	Log   *slog.Logger
}

// Formats: a containerDisk holds a qcow2 file.
func (p *ContainerDiskPublisher) Formats() []format.Format { return []format.Format{format.QCOW2} }

// Publish pushes d as a containerDisk for d's platform.
func (p *ContainerDiskPublisher) Publish(ctx context.Context, d export.Disk) (export.Result, error) {
	pl, err := v1.ParsePlatform(d.Platform)
	if err != nil {
		return nil, fmt.Errorf("platform %q: %w", d.Platform, err)
	}
	layer, err := p.Layer(func(w io.Writer) error { return WriteContainerDiskTar(w, d.Path, p.Created) })
	if err != nil {
		return nil, fmt.Errorf("packing %s: %w", d.Path, err)
	}
	img, err := ContainerDisk(layer, pl, p.Created)
	if err != nil {
		return nil, err
	}
	digest, err := PushImage(ctx, p.Ref, img, p.Registry)
	if err != nil {
		return nil, err
	}
	if p.Log != nil {
		p.Log.Info("pushed containerDisk", "ref", p.Ref, "digest", digest)
	}
	return &Pushed{Ref: p.Ref, Digest: digest}, nil
}
