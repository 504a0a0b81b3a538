package e2e_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"

	"github.com/layerimg/layerimg"
	"github.com/layerimg/layerimg/export/azure"
	"github.com/layerimg/layerimg/internal/armfake"
)

type fakeToken struct{}

func (fakeToken) GetToken(context.Context, policy.TokenRequestOptions) (azcore.AccessToken, error) {
	return azcore.AccessToken{Token: armfake.Token, ExpiresOn: time.Now().Add(time.Hour)}, nil
}

// TestBuildPublishAzure runs build --publish azure with the raw output
// only: the disk is streamed as a fixed VHD into a managed disk whose blob
// lives in Azurite, a managed image is made from it, and the manifest-bound
// result names it. A second build finds the image and uploads nothing.
func TestBuildPublishAzure(t *testing.T) {
	needRoot(t)
	const sub = "00000000-1111-2222-3333-444444444444"
	s := armfake.WithAzurite(t, sub)
	t.Setenv("AZURE_SUBSCRIPTION_ID", sub) // the subscription stays out of the recipe
	recipe := fixture(t, "story.yaml") + `publish:
  azure:
    resource_group: images
    location: westeurope
    image_name: story-${LAST}
    tags: {team: platform}
`
	dir := busyboxContext(t, recipe, map[string]string{"conf/motd": "hello\n"})
	o := layerimg.Options{CacheDir: t.TempDir(), DiskDir: t.TempDir(), Formats: []string{"raw"}, Publish: []string{"azure"},
		AzureConnect: func(c *azure.Config) {
			c.Credential, c.Endpoint, c.HTTPClient, c.PollInterval = fakeToken{}, s.URL, s.Client(), 10*time.Millisecond
		}}
	res := build(t, load(t, dir, nil), o)
	r, ok := res.Published["azure"].(*azure.Result)
	if !ok || r.Existing || filepath.Base(r.ImageID) != "story-one" {
		t.Fatalf("published %+v", res.Published)
	}
	im := s.Images()[0]
	if im.Tags[azure.DigestTag] != contentDigest(t, res) || im.Tags[azure.RecipeTag] != "story" || im.Tags["team"] != "platform" {
		t.Fatalf("image tags %v", im.Tags)
	}
	d := s.Disks()[0]
	if !d.Deleted {
		t.Fatal("the upload disk was kept")
	}
	pb, _ := s.BlobClient(d)
	blob := filepath.Join(t.TempDir(), "blob.vhd")
	f, _ := os.Create(blob)
	_, err := pb.DownloadFile(context.Background(), f, nil)
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("qemu-img", "compare", "-f", "raw", "-F", "vpc", res.Disk.Files["raw"].Path, blob).CombinedOutput(); err != nil {
		t.Fatalf("qemu-img compare disk.raw and the uploaded VHD: %s", out)
	}

	res = build(t, load(t, dir, nil), o)
	if r2 := res.Published["azure"].(*azure.Result); !r2.Existing || r2.ImageID != r.ImageID || len(s.Disks()) != 1 {
		t.Errorf("second publish %+v", r2)
	}
}
