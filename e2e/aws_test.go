package e2e_test

import (
	"bytes"
	"encoding/json"
	"encoding/pem"
	"os"
	"path/filepath"
	"testing"

	"github.com/layerimg/layerimg"
	"github.com/layerimg/layerimg/export/aws"
	"github.com/layerimg/layerimg/internal/awsfake"
)

// TestBuildPublishAWS runs build --publish aws against the EC2/EBS fake,
// reached the way a user would point the SDK elsewhere (AWS_ENDPOINT_URL,
// AWS_CA_BUNDLE): the snapshot holds exactly disk.raw, the manifest lists
// the AMI, and a second build of the same disk uploads nothing.
func TestBuildPublishAWS(t *testing.T) {
	needRoot(t)
	s := awsfake.New()
	defer s.Close()
	s.PendingPolls = 0 // no waiting between polls in this test
	ca := filepath.Join(t.TempDir(), "ca.pem")
	os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: s.Certificate().Raw}), 0o644)
	for k, v := range map[string]string{
		"AWS_ENDPOINT_URL": s.URL, "AWS_CA_BUNDLE": ca, "AWS_ACCESS_KEY_ID": "AKIDLAYERIMG", "AWS_SECRET_ACCESS_KEY": "x",
		"AWS_SESSION_TOKEN": "", "AWS_PROFILE": "", "AWS_CONFIG_FILE": ca + ".none", "AWS_SHARED_CREDENTIALS_FILE": ca + ".none",
		"AWS_EC2_METADATA_DISABLED": "true",
	} {
		t.Setenv(k, v)
	}
	recipe := fixture(t, "story.yaml") + `publish:
  aws:
    region: eu-central-1
    name: "{{.Name}}-{{.Args.LAST}}-{{.Digest}}"
    tags: {team: platform}
`
	dir := busyboxContext(t, recipe, map[string]string{"conf/motd": "hello\n"})
	manifest := filepath.Join(t.TempDir(), "build.json")
	o := layerimg.Options{CacheDir: t.TempDir(), DiskDir: t.TempDir(), Formats: []string{"raw"}, Publish: []string{"aws"}, Manifest: manifest}
	res := build(t, load(t, dir, nil), o)
	r, ok := res.Published["aws"].(*aws.Result)
	if !ok || len(r.Images) != 1 || r.Images[0].Region != "eu-central-1" || r.Images[0].Existing {
		t.Fatalf("published %+v", res.Published)
	}
	disk, err := os.ReadFile(res.Disk.Files["raw"].Path)
	if err != nil {
		t.Fatal(err)
	}
	sn := s.Snapshots()[0]
	if !bytes.Equal(sn.Bytes(int64(len(disk))), disk) {
		t.Fatal("the snapshot is not disk.raw")
	}
	im := s.Images()[0]
	if im.Tags[aws.RecipeTag] != "story" || im.Tags[aws.DigestTag] != contentDigest(t, res) || im.Tags["team"] != "platform" {
		t.Fatalf("image tags %v", im.Tags)
	}
	var m struct {
		Published struct {
			AWS aws.Result `json:"aws"`
		} `json:"published"`
	}
	b, _ := os.ReadFile(manifest)
	if err := json.Unmarshal(b, &m); err != nil || m.Published.AWS.Images[0].ImageID != im.ID {
		t.Fatalf("manifest: %v\n%s", err, b)
	}

	res = build(t, load(t, dir, nil), o)
	if r2 := res.Published["aws"].(*aws.Result); !r2.Images[0].Existing || r2.Images[0].ImageID != im.ID || len(s.Snapshots()) != 1 {
		t.Errorf("second publish %+v", r2)
	}
}
