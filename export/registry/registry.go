package registry

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/layerimg/layerimg/layers"
)

// PushImage pushes img to ref and returns the pushed manifest's digest.
func PushImage(ctx context.Context, ref string, img v1.Image, reg layers.Registry) (string, error) {
	r, err := reg.ParseRef(ref)
	if err != nil {
		return "", fmt.Errorf("push %s: %w", ref, err)
	}
	popts, wait := layers.PushProgress(ctx, "pushing image to "+ref)
	err = remote.Write(r, img, append(reg.Options(ctx), popts...)...)
	wait()
	if err != nil {
		return "", fmt.Errorf("pushing image to %s: %w", ref, err)
	}
	d, err := img.Digest()
	return d.String(), err
}

// QEMUUID owns the disk in a containerDisk: KubeVirt runs qemu as 107.
const QEMUUID = 107

// WriteContainerDiskTar writes the layer of a KubeVirt containerDisk: the
// qcow2 at /disk/disk.qcow2, owned by 107:107.
func WriteContainerDiskTar(w io.Writer, qcow2 string, mtime time.Time) error {
	f, err := os.Open(qcow2)
	if err != nil {
		return err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	tw := tar.NewWriter(w)
	for _, h := range []*tar.Header{
		{Name: "disk/", Typeflag: tar.TypeDir, Mode: 0o555, Uid: QEMUUID, Gid: QEMUUID, ModTime: mtime, Format: tar.FormatPAX},
		{Name: "disk/disk.qcow2", Typeflag: tar.TypeReg, Mode: 0o440, Uid: QEMUUID, Gid: QEMUUID, Size: fi.Size(), ModTime: mtime, Format: tar.FormatPAX},
	} {
		if err := tw.WriteHeader(h); err != nil {
			return err
		}
	}
	if _, err := io.CopyN(tw, f, fi.Size()); err != nil {
		return err
	}
	return tw.Close()
}

// ContainerDisk is an image FROM scratch holding layer (made by
// WriteContainerDiskTar).
func ContainerDisk(layer v1.Layer, platform *v1.Platform, created time.Time) (v1.Image, error) {
	img := mutate.MediaType(empty.Image, types.OCIManifestSchema1)
	img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
	img, err := mutate.Append(img, mutate.Addendum{Layer: layer, MediaType: types.OCILayer})
	if err != nil {
		return nil, err
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture, cf.Variant = platform.OS, platform.Architecture, platform.Variant
	cf.Created = v1.Time{Time: created}
	return mutate.ConfigFile(img, cf)
}

// ArtifactType is the artifactType of a disk artifact.
const ArtifactType = "application/vnd.layerimg.disk.v1"

// PushArtifact pushes blobs (disk files, each with its media type and a
// title annotation) as an OCI artifact manifest at ref.
func PushArtifact(ctx context.Context, ref string, blobs []v1.Layer, titles []string, reg layers.Registry) (string, error) {
	r, err := reg.ParseRef(ref)
	if err != nil {
		return "", err
	}
	opts := reg.Options(ctx)
	m := map[string]any{"schemaVersion": 2, "mediaType": types.OCIManifestSchema1, "artifactType": ArtifactType}
	var descs []v1.Descriptor
	for i, b := range blobs {
		popts, wait := layers.PushProgress(ctx, "pushing "+titles[i])
		err := remote.WriteLayer(r.Context(), b, append(opts, popts...)...)
		wait()
		if err != nil {
			return "", fmt.Errorf("pushing %s to %s: %w", titles[i], r.Context(), err)
		}
		d, _ := b.Digest()
		size, _ := b.Size()
		mt, _ := b.MediaType()
		descs = append(descs, v1.Descriptor{MediaType: mt, Digest: d, Size: size, Annotations: map[string]string{"org.opencontainers.image.title": titles[i]}})
	}
	// The OCI empty config, as artifacts without a config use.
	cfg := static.NewLayer([]byte("{}"), "application/vnd.oci.empty.v1+json")
	if err := remote.WriteLayer(r.Context(), cfg, opts...); err != nil {
		return "", err
	}
	cd, _ := cfg.Digest()
	m["config"] = v1.Descriptor{MediaType: "application/vnd.oci.empty.v1+json", Digest: cd, Size: 2}
	m["layers"] = descs
	raw, err := json.Marshal(m)
	if err != nil {
		return "", err
	}
	if err := remote.Put(r, rawManifest(raw), opts...); err != nil {
		return "", fmt.Errorf("pushing artifact manifest %s: %w", ref, err)
	}
	h, _, err := v1.SHA256(bytes.NewReader(raw))
	return h.String(), err
}

type rawManifest []byte

func (m rawManifest) RawManifest() ([]byte, error)        { return m, nil }
func (m rawManifest) MediaType() (types.MediaType, error) { return types.OCIManifestSchema1, nil }
