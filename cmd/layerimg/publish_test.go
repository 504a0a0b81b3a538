package main

import (
	"encoding/json"
	"encoding/pem"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/layerimg/layerimg/export/aws"
	"github.com/layerimg/layerimg/export/aws/awsfake"
)

// awsEnv points a child layerimg at the fake through the variables a user
// would set: AWS_ENDPOINT_URL and AWS_CA_BUNDLE, keys in AWS_*.
func awsEnv(t *testing.T, s *awsfake.Server) {
	dir := t.TempDir()
	ca := filepath.Join(dir, "ca.pem")
	os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: s.Certificate().Raw}), 0o644)
	for k, v := range map[string]string{
		"AWS_ENDPOINT_URL": s.URL, "AWS_CA_BUNDLE": ca, "AWS_ACCESS_KEY_ID": "AKIDLAYERIMG",
		"AWS_SECRET_ACCESS_KEY": "sekrit-never-logged", "AWS_SESSION_TOKEN": "", "AWS_PROFILE": "", "AWS_REGION": "",
		"AWS_CONFIG_FILE": filepath.Join(dir, "none"), "AWS_SHARED_CREDENTIALS_FILE": filepath.Join(dir, "none"),
		"AWS_EC2_METADATA_DISABLED": "true",
	} {
		t.Setenv(k, v)
	}
}

func TestPublishAWSCommand(t *testing.T) {
	s := awsfake.New()
	defer s.Close()
	awsEnv(t, s)
	dir := t.TempDir()
	raw := filepath.Join(dir, "disk.raw")
	f, _ := os.Create(raw)
	f.Truncate(64 << 20)
	f.WriteAt([]byte(strings.Repeat("layerimg", 9000)), 3<<20)
	f.Close()
	manifest := filepath.Join(dir, "ami.json")

	cache := t.TempDir()
	out, errOut, code := cli(t, "publish", "aws", raw, "--cache-dir", cache, "--region", "eu-west-1", "--name", "web-{{.Digest}}",
		"--copy-to", "us-east-1", "--share-with", "123456789012", "--manifest", manifest, "--tag", "team=platform", "-v", "--poll-interval", "10ms")
	if code != 0 {
		t.Fatalf("exit %d\n%s", code, errOut)
	}
	var res aws.Result
	if err := json.Unmarshal([]byte(out), &res); err != nil {
		t.Fatalf("stdout is not the result: %v\n%s", err, out)
	}
	if len(res.Images) != 2 || res.Images[0].ImageID == "" || res.Images[1].Region != "us-east-1" || res.BlocksSent != 1 {
		t.Fatalf("result: %+v", res)
	}
	if b, err := os.ReadFile(manifest); err != nil || string(b) != out {
		t.Fatalf("--manifest wrote %q (%v), stdout %q", b, err, out)
	}
	if strings.Contains(out+errOut, "sekrit") {
		t.Fatal("the secret key reached the output")
	}
	if im := s.Images()[0]; im.Tags["team"] != "platform" || im.Tags[aws.DigestTag] == "" {
		t.Fatalf("tags: %v", im.Tags)
	}
	if st, _ := filepath.Glob(filepath.Join(cache, "publish", "ebs-eu-west-1-*.json")); len(st) != 1 {
		t.Fatalf("block hashes kept: %v", st)
	}

	// Again: the AMI already there, nothing uploaded.
	out, errOut, code = cli(t, "publish", "aws", raw, "--cache-dir", cache, "--region", "eu-west-1", "--name", "web-{{.Digest}}")
	if code != 0 || !strings.Contains(out, `"existing": true`) || !strings.Contains(errOut, "already published") {
		t.Fatalf("second publish: exit %d\n%s\n%s", code, out, errOut)
	}

	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"publish", "aws"}, 2, "expected one disk"},
		{[]string{"publish", "aws", raw}, 1, "no region"},
		{[]string{"publish", "aws", filepath.Join(dir, "nope.raw"), "--region", "eu-west-1"}, 1, "nope.raw"},
		{[]string{"publish", "aws", raw, "--region", "eu-west-1", "--boot-mode", "bios"}, 1, "boot_mode"},
	} {
		if _, errOut, code := cli(t, tc.args...); code != tc.code || !strings.Contains(errOut, tc.want) {
			t.Errorf("%v: exit %d %s", tc.args, code, errOut)
		}
	}
}

// TestPublishAzureCommandErrors covers what the command refuses before it
// reaches Azure. The upload and ARM calls themselves are tested in
// export/azure (Azurite and the ARM fake) and by build --publish azure: a
// child process cannot be handed the fake's credential.
func TestPublishAzureCommandErrors(t *testing.T) {
	dir := t.TempDir()
	raw := filepath.Join(dir, "disk.raw")
	f, _ := os.Create(raw)
	f.Truncate(64 << 20)
	f.Close()
	t.Setenv("AZURE_SUBSCRIPTION_ID", "")
	sub := "00000000-1111-2222-3333-444444444444"
	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"publish", "azure"}, 2, "expected one disk"},
		{[]string{"publish", "azure", raw, "--resource-group", "rg", "--location", "westeurope", "--image", "i"}, 1, "no subscription"},
		{[]string{"publish", "azure", raw, "--subscription", sub, "--location", "westeurope", "--image", "i"}, 1, "resource group"},
		{[]string{"publish", "azure", raw, "--subscription", sub, "--resource-group", "rg", "--location", "westeurope"}, 1, "nothing to make"},
		{[]string{"publish", "azure", raw, "--subscription", sub, "--resource-group", "rg", "--location", "westeurope",
			"--gallery", "g", "--gallery-image", "d", "--gallery-version", "1.0.0", "--security-type", "TrustedLaunch", "--boot", "systemd-boot"}, 1, "needs the disk's boot: grub"},
		{[]string{"publish", "azure", raw, "--subscription", sub, "--resource-group", "rg", "--location", "westeurope",
			"--gallery", "g", "--gallery-image", "d", "--gallery-version", "1.0.0", "--security-type", "TrustedLaunch"}, 1, "no partition table"},
		{[]string{"publish", "azure", filepath.Join(dir, "nope.vhd"), "--subscription", sub, "--resource-group", "rg", "--location", "westeurope", "--image", "i", "--boot", "grub"}, 1, "nope.vhd"},
	} {
		if _, errOut, code := cli(t, tc.args...); code != tc.code || !strings.Contains(errOut, tc.want) {
			t.Errorf("%v: exit %d %s", tc.args[2:], code, errOut)
		}
	}
}
