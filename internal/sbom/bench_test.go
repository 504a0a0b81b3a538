package sbom

import (
	"archive/tar"
	"context"
	"os"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"

	"github.com/layerimg/layerimg/rootfs"
)

// headerMap is a HeaderCache in memory, as the build's cache is on disk.
type headerMap map[v1.Hash][]*tar.Header

func (h headerMap) Headers(id v1.Hash) ([]*tar.Header, bool) { hs, ok := h[id]; return hs, ok }
func (h headerMap) PutHeaders(id v1.Hash, hs []*tar.Header) error {
	h[id] = hs
	return nil
}

// knownImage is an image whose layers take their diff_ids from its
// config, as the cache's layers do (a layout's layers hash themselves).
type knownImage struct {
	v1.Image
	ls []v1.Layer
}

func (k knownImage) Layers() ([]v1.Layer, error) { return k.ls, nil }

type knownLayer struct {
	v1.Layer
	id v1.Hash
}

func (k knownLayer) DiffID() (v1.Hash, error) { return k.id, nil }

func knownDiffIDs(b *testing.B, img v1.Image) v1.Image {
	cf, err := img.ConfigFile()
	if err != nil {
		b.Fatal(err)
	}
	ls, err := img.Layers()
	if err != nil {
		b.Fatal(err)
	}
	k := knownImage{Image: img}
	for i, l := range ls {
		k.ls = append(k.ls, knownLayer{l, cf.RootFS.DiffIDs[i]})
	}
	return k
}

// BenchmarkGenerate times the SBOM of a real image with no file kept from
// an earlier SBOM (a base's first SBOM): the tree indexed from headers in
// memory, then Generate, which reads the layers holding its files. A
// layout's layers decompress with Go's gzip, slower than the cache's.
// LAYERIMG_BENCH_OCI=DIR names an OCI layout holding one image (the
// debian-cloud build's --oci-layout).
func BenchmarkGenerate(b *testing.B) {
	dir := os.Getenv("LAYERIMG_BENCH_OCI")
	if dir == "" {
		b.Skip("set LAYERIMG_BENCH_OCI to an OCI layout")
	}
	p, err := layout.FromPath(dir)
	if err != nil {
		b.Fatal(err)
	}
	idx, err := p.ImageIndex()
	if err != nil {
		b.Fatal(err)
	}
	m, err := idx.IndexManifest()
	if err != nil {
		b.Fatal(err)
	}
	layoutImg, err := idx.Image(m.Manifests[0].Digest)
	if err != nil {
		b.Fatal(err)
	}
	img := knownDiffIDs(b, layoutImg)
	ctx := context.Background()
	hc := headerMap{}
	if _, err := rootfs.Index(ctx, img, hc); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for b.Loop() {
		began := time.Now()
		tree, err := rootfs.Index(ctx, img, hc)
		if err != nil {
			b.Fatal(err)
		}
		indexed := time.Since(began)
		res, err := Generate(ctx, tree, Image{Name: "bench", Digest: m.Manifests[0].Digest.String()}, Options{})
		if err != nil {
			b.Fatal(err)
		}
		b.ReportMetric(float64(res.Packages), "packages")
		b.ReportMetric(float64(indexed.Milliseconds()), "index-ms")
		b.ReportMetric(float64(len(res.JSON)), "bytes")
	}
}
