package registry

import (
	"context"
	"io"
	"log"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/layerimg/layerimg/layers"
)

func platformImage(t *testing.T, arch string) v1.Image {
	t.Helper()
	img, err := random.Image(300, 1)
	if err != nil {
		t.Fatal(err)
	}
	img = mutate.MediaType(img, types.OCIManifestSchema1)
	cf, _ := img.ConfigFile()
	cf.OS, cf.Architecture = "linux", arch
	if img, err = mutate.ConfigFile(img, cf); err != nil {
		t.Fatal(err)
	}
	return img
}

// PushIndex merges two runners' single-platform images (one in another
// repository) into an index whose entries carry their platforms, and
// refuses two images for one platform or one that names none, writing
// nothing.
func TestPushIndex(t *testing.T) {
	srv := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	defer srv.Close()
	host := strings.TrimPrefix(srv.URL, "http://")
	reg := layers.Registry{Insecure: []string{host}}
	ctx := context.Background()
	put := func(ref string, img v1.Image) v1.Hash {
		r, _ := name.ParseReference(ref, name.Insecure)
		if err := remote.Write(r, img); err != nil {
			t.Fatal(err)
		}
		d, _ := img.Digest()
		return d
	}
	amd, arm := platformImage(t, "amd64"), platformImage(t, "arm64")
	amdD := put(host+"/golden:1-amd64", amd)
	armD := put(host+"/elsewhere/golden:1-arm64", arm)

	got, err := PushIndex(ctx, host+"/golden:1", []string{host + "/golden:1-amd64", host + "/elsewhere/golden:1-arm64"}, reg)
	if err != nil {
		t.Fatal(err)
	}
	r, _ := name.ParseReference(host+"/golden:1", name.Insecure)
	desc, err := remote.Get(r)
	if err != nil {
		t.Fatal(err)
	}
	if desc.MediaType != types.OCIImageIndex || desc.Digest.String() != got {
		t.Fatalf("pushed %s %s, PushIndex said %s", desc.MediaType, desc.Digest, got)
	}
	idx, _ := desc.ImageIndex()
	im, _ := idx.IndexManifest()
	want := map[string]v1.Hash{"linux/amd64": amdD, "linux/arm64": armD}
	if len(im.Manifests) != 2 {
		t.Fatalf("%d manifests, want 2", len(im.Manifests))
	}
	for _, m := range im.Manifests {
		if m.Platform == nil || want[m.Platform.String()] != m.Digest {
			t.Errorf("entry %s for %v; want %v", m.Digest, m.Platform, want)
		}
		// The arm64 image was copied into golden's repository.
		if _, err := remote.Image(r.Context().Digest(m.Digest.String())); err != nil {
			t.Errorf("%s not in %s: %v", m.Digest, r.Context(), err)
		}
	}
	// remote.WithPlatform picks from the index as docker pull would.
	pick, err := remote.Image(r, remote.WithPlatform(v1.Platform{OS: "linux", Architecture: "arm64"}))
	if err != nil {
		t.Fatal(err)
	}
	if d, _ := pick.Digest(); d != armD {
		t.Errorf("arm64 pull got %s, want %s", d, armD)
	}

	// An index as a source: its entries are taken, and a platform twice is refused.
	if _, err := PushIndex(ctx, host+"/golden:2", []string{host + "/golden:1", host + "/elsewhere/golden:1-arm64"}, reg); err == nil ||
		!strings.Contains(err.Error(), "both hold an image for linux/arm64") {
		t.Errorf("duplicate platform: %v", err)
	}
	noPlatform, _ := random.Image(100, 1)
	put(host+"/bare:1", noPlatform)
	if _, err := PushIndex(ctx, host+"/golden:2", []string{host + "/golden:1-amd64", host + "/bare:1"}, reg); err == nil ||
		!strings.Contains(err.Error(), host+"/bare:1 names no platform") {
		t.Errorf("image without platform: %v", err)
	}
	if _, err := PushIndex(ctx, host+"/golden:2", []string{host + "/golden:missing"}, reg); err == nil || !strings.Contains(err.Error(), "golden:missing") {
		t.Errorf("missing source: %v", err)
	}
	r2, _ := name.ParseReference(host+"/golden:2", name.Insecure)
	if _, err := remote.Head(r2); err == nil {
		t.Error("a refused index was written")
	}
	// A buildx-style index with an attestation (unknown/unknown) for each
	// platform: the attestations are left out, so two such indexes merge.
	att, _ := random.Image(50, 1)
	withAtt := func(img v1.Image, arch string) v1.ImageIndex {
		d, _ := img.Digest()
		return mutate.AppendManifests(mutate.IndexMediaType(empty.Index, types.OCIImageIndex),
			mutate.IndexAddendum{Add: img, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: arch}}},
			mutate.IndexAddendum{Add: att, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "unknown", Architecture: "unknown"},
				Annotations: map[string]string{"vnd.docker.reference.type": "attestation-manifest", "vnd.docker.reference.digest": d.String()}}})
	}
	for arch, img := range map[string]v1.Image{"amd64": amd, "arm64": arm} {
		r, _ := name.ParseReference(host+"/buildx:"+arch, name.Insecure)
		if err := remote.WriteIndex(r, withAtt(img, arch)); err != nil {
			t.Fatal(err)
		}
	}
	if d, err := PushIndex(ctx, host+"/buildx:all", []string{host + "/buildx:amd64", host + "/buildx:arm64"}, reg); err != nil || d != got {
		t.Errorf("merging buildx indexes: %s, %v; want the same index %s", d, err, got)
	}
	// Re-merging the index with nothing new gives the same index.
	again, err := PushIndex(ctx, host+"/golden:3", []string{host + "/golden:1"}, reg)
	if err != nil || again != got {
		t.Errorf("re-merged index %s (%v), want %s", again, err, got)
	}
}
