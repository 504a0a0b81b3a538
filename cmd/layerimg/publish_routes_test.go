package main

import (
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"

	"github.com/layerimg/layerimg/disk"
	"github.com/layerimg/layerimg/export/aws"
	"github.com/layerimg/layerimg/internal/awsfake"
)

// One digest names a published disk, whichever route publishes it: a disk
// published by `build --publish aws` is found by `publish aws` on the same
// file, and uploaded once.
func TestPublishRoutesShareOneDigest(t *testing.T) {
	s := awsfake.New()
	defer s.Close()
	s.PendingPolls = 0
	awsEnv(t, s)
	recipe := writeRecipe(t, `name: routes
from: scratch
steps:
  - copy: {src: hello.txt, dst: /hello.txt}
disk: {boot: none, size: 1GiB}
publish:
  aws: {region: eu-west-1, name: "routes-{{.Digest}}"}
`)
	out, cache := t.TempDir(), t.TempDir()
	if _, errOut, code := cli(t, "build", recipe, "--cache-dir", cache, "-o", out, "--publish", "aws"); code != 0 {
		t.Fatalf("build --publish aws: exit %d\n%s", code, errOut)
	}
	if n := len(s.Snapshots()); n != 1 {
		t.Fatalf("build made %d snapshots", n)
	}
	raw := filepath.Join(out, "disk.raw")
	want, err := disk.ContentDigest(raw)
	if err != nil {
		t.Fatal(err)
	}
	if got := s.Images()[0].Tags[aws.DigestTag]; got != want {
		t.Fatalf("build tagged the AMI %q, want the disk's content digest %q", got, want)
	}

	stdout, errOut, code := cli(t, "publish", "aws", raw, "--cache-dir", cache, "--region", "eu-west-1", "--name", "routes-{{.Digest}}")
	if code != 0 {
		t.Fatalf("publish aws: exit %d\n%s", code, errOut)
	}
	var res aws.Result
	if err := json.Unmarshal([]byte(stdout), &res); err != nil {
		t.Fatalf("stdout is not the result: %v\n%s", err, stdout)
	}
	if !res.Images[0].Existing || res.Images[0].ImageID != s.Images()[0].ID || len(s.Snapshots()) != 1 || res.BlocksSent != 0 {
		t.Errorf("publish after build --publish uploaded again: %+v (%d snapshots)\n%s", res, len(s.Snapshots()), strings.TrimSpace(errOut))
	}
}
