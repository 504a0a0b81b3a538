package main

import (
	"io"
	"log"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// layerimg index merges two images into an index and prints its digest;
// without --from it is a usage error.
func TestIndexCommand(t *testing.T) {
	srv := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	defer srv.Close()
	host := strings.TrimPrefix(srv.URL, "http://")
	for _, arch := range []string{"amd64", "arm64"} {
		img, _ := random.Image(200, 1)
		cf, _ := img.ConfigFile()
		cf.OS, cf.Architecture = "linux", arch
		img, _ = mutate.ConfigFile(img, cf)
		r, _ := name.ParseReference(host+"/img:1-"+arch, name.Insecure)
		if err := remote.Write(r, img); err != nil {
			t.Fatal(err)
		}
	}
	out, errOut, code := cli(t, "index", host+"/img:1", "--from", host+"/img:1-amd64", "--from", host+"/img:1-arm64", "--insecure-registry", host)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	r, _ := name.ParseReference(host+"/img:1", name.Insecure)
	desc, err := remote.Get(r)
	if err != nil {
		t.Fatal(err)
	}
	if strings.TrimSpace(out) != desc.Digest.String() || !desc.MediaType.IsIndex() {
		t.Errorf("printed %q; the registry has %s %s", out, desc.MediaType, desc.Digest)
	}
	cliCases(t, []cliCase{
		{"index without --from", []string{"index", host + "/img:2"}, 2, "--from", ""},
		{"index without ref", []string{"index"}, 2, "expected one image reference", ""},
		{"bad platform", []string{"build", "x.yaml", "--platform", "linux/amd64,windows/amd64"}, 2, `--platform "windows/amd64"`, ""},
	})
}
