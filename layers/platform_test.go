package layers

import (
	"context"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/tarball"

	"github.com/layerimg/layerimg/recipes"
)

// archImage is a random image whose config says linux/arch.
func archImage(t *testing.T, arch string) v1.Image {
	t.Helper()
	img, err := random.Image(256, 1)
	if err != nil {
		t.Fatal(err)
	}
	cf, _ := img.ConfigFile()
	cf.OS, cf.Architecture = "linux", arch
	img, err = mutate.ConfigFile(img, cf)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

// A single-platform oci-layout or docker-archive base for another
// architecture is refused, naming the base and both architectures; one for
// the build's platform is taken, and an index in a layout picks its match.
func TestBasePlatformChecked(t *testing.T) {
	dir := t.TempDir()
	arm, amd := archImage(t, "arm64"), archImage(t, "amd64")
	p, err := layout.Write(filepath.Join(dir, "layout"), empty.Index)
	if err != nil {
		t.Fatal(err)
	}
	p.AppendImage(arm, layout.WithAnnotations(map[string]string{"org.opencontainers.image.ref.name": "arm"}))
	idx := mutate.AppendManifests(empty.Index,
		mutate.IndexAddendum{Add: amd, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: "amd64"}}},
		mutate.IndexAddendum{Add: arm, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: "arm64"}}})
	p.AppendIndex(idx, layout.WithAnnotations(map[string]string{"org.opencontainers.image.ref.name": "multi"}))
	archive := filepath.Join(dir, "arm.tar")
	tag, _ := name.NewTag("example/arm:1")
	if err := tarball.WriteToFile(archive, tag, arm); err != nil {
		t.Fatal(err)
	}
	c := openCache(t)
	ctx := context.Background()
	armDigest, _ := arm.Digest()
	amdDigest, _ := amd.Digest()
	for _, tc := range []struct {
		ref, platform string
		want          v1.Hash // the image picked; zero: refused
	}{
		{"oci-layout:" + dir + "/layout:arm", "linux/arm64", armDigest},
		{"oci-layout:" + dir + "/layout:arm", "linux/amd64", v1.Hash{}},
		{"docker-archive:" + archive, "linux/arm64", armDigest},
		{"docker-archive:" + archive, "linux/amd64", v1.Hash{}},
		{"oci-layout:" + dir + "/layout:multi", "linux/arm64", armDigest},
		{"oci-layout:" + dir + "/layout:multi", "linux/amd64", amdDigest},
		{"oci-layout:" + dir + "/layout:multi", "linux/riscv64", v1.Hash{}},
	} {
		b, err := ResolveBase(ctx, c, recipes.Base{Ref: tc.ref}, BaseOptions{Platform: tc.platform})
		if tc.want == (v1.Hash{}) {
			if err == nil {
				t.Errorf("%s for %s: taken", tc.ref, tc.platform)
				continue
			}
			msg := err.Error()
			if !strings.Contains(msg, tc.ref) || !strings.Contains(msg, tc.platform) ||
				(!strings.Contains(msg, "linux/arm64") && !strings.Contains(msg, "no image for platform")) {
				t.Errorf("%s for %s: error %q should name the base and both platforms", tc.ref, tc.platform, msg)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s for %s: %v", tc.ref, tc.platform, err)
			continue
		}
		got, _ := b.Image.Digest()
		if tc.ref[:3] == "oci" && got != tc.want {
			t.Errorf("%s for %s: picked %s, want %s", tc.ref, tc.platform, got, tc.want)
		}
		cf, _ := b.Image.ConfigFile()
		if want := strings.TrimPrefix(tc.platform, "linux/"); cf.Architecture != want {
			t.Errorf("%s for %s: config says %s", tc.ref, tc.platform, cf.Architecture)
		}
	}
}

// A bootstrap's key (and so every step key above it) differs by platform.
func TestBootstrapKeyHasPlatform(t *testing.T) {
	// A snapshot is immutable, so its key needs no mirror fetch.
	bs := recipes.Bootstrap{Distro: "debian", Suite: "bookworm", Snapshot: "20250520T000000Z"}
	key := func(platform string) KeyInput {
		t.Helper()
		in, _, err := BootstrapKey(context.Background(), bs, BaseOptions{Platform: platform, Compression: Gzip})
		if err != nil {
			t.Fatal(err)
		}
		return in
	}
	amd, arm := key("linux/amd64").Key(), key("linux/arm64").Key()
	if amd == arm {
		t.Fatalf("the amd64 and arm64 bootstraps share key %s", amd)
	}
	if again := key("linux/arm64").Key(); again != arm {
		t.Errorf("arm64 bootstrap key not stable: %s then %s", arm, again)
	}
	why := key("linux/arm64").Why(key("linux/amd64"))
	if !strings.Contains(why, "platform changed from linux/amd64 to linux/arm64") {
		t.Errorf("why = %q", why)
	}
}
