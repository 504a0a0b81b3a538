package main

import (
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/layerimg/layerimg/export/aws"
	"github.com/layerimg/layerimg/internal/awsfake"
)

// awsEnv points a child layerimg at the fake through the variables a user
// would set: AWS_ENDPOINT_URL and AWS_CA_BUNDLE, keys in AWS_*.
func awsEnv(t *testing.T, s *awsfake.Server) {
	dir := t.TempDir()
	ca := writeCA(t, dir, s.Certificate())
	for k, v := range map[string]string{
		"AWS_ENDPOINT_URL": s.URL, "AWS_CA_BUNDLE": ca, "AWS_ACCESS_KEY_ID": "AKIDLAYERIMG",
		"AWS_SECRET_ACCESS_KEY": "sekrit-never-logged", "AWS_SESSION_TOKEN": "", "AWS_PROFILE": "", "AWS_REGION": "",
		"AWS_CONFIG_FILE": filepath.Join(dir, "none"), "AWS_SHARED_CREDENTIALS_FILE": filepath.Join(dir, "none"),
		"AWS_EC2_METADATA_DISABLED": "true",
	} {
		t.Setenv(k, v)
	}
}

// rawDisk writes dir/disk.raw: 64 MiB, sparse, with 72 KB of data 3 MiB in
// and no partition table.
func rawDisk(t *testing.T, dir string) string {
	t.Helper()
	raw := filepath.Join(dir, "disk.raw")
	f, err := os.Create(raw)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	f.Truncate(64 << 20)
	f.WriteAt([]byte(strings.Repeat("layerimg", 9000)), 3<<20)
	return raw
}

// writeCA writes cert to dir/ca.pem, for AWS_CA_BUNDLE or SSL_CERT_FILE.
func writeCA(t *testing.T, dir string, cert *x509.Certificate) string {
	t.Helper()
	ca := filepath.Join(dir, "ca.pem")
	if err := os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Raw}), 0o644); err != nil {
		t.Fatal(err)
	}
	return ca
}

func TestPublishAWSCommand(t *testing.T) {
	s := awsfake.New()
	defer s.Close()
	awsEnv(t, s)
	dir := t.TempDir()
	raw := rawDisk(t, dir)
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

	cliCases(t, []cliCase{
		{"no disk", []string{"publish", "aws"}, 2, "expected one disk", ""},
		{"no region", []string{"publish", "aws", raw}, 1, "no region", ""},
		{"missing disk", []string{"publish", "aws", filepath.Join(dir, "nope.raw"), "--region", "eu-west-1"}, 1, "nope.raw", ""},
		{"bad boot mode", []string{"publish", "aws", raw, "--region", "eu-west-1", "--boot-mode", "bios"}, 1, "boot_mode", ""},
	})
}

// TestPublishAzureCommandErrors covers what the command refuses before it
// reaches Azure. The upload and ARM calls themselves are tested in
// export/azure (Azurite and the ARM fake) and by build --publish azure: a
// child process cannot be handed the fake's credential.
func TestPublishAzureCommandErrors(t *testing.T) {
	dir := t.TempDir()
	raw := rawDisk(t, dir)
	t.Setenv("AZURE_SUBSCRIPTION_ID", "")
	sub := "00000000-1111-2222-3333-444444444444"
	cliCases(t, []cliCase{
		{"no disk", []string{"publish", "azure"}, 2, "expected one disk", ""},
		{"no subscription", []string{"publish", "azure", raw, "--resource-group", "rg", "--location", "westeurope", "--image", "i"}, 1, "no subscription", ""},
		{"no resource group", []string{"publish", "azure", raw, "--subscription", sub, "--location", "westeurope", "--image", "i"}, 1, "resource group", ""},
		{"nothing to make", []string{"publish", "azure", raw, "--subscription", sub, "--resource-group", "rg", "--location", "westeurope"}, 1, "nothing to make", ""},
		{"TrustedLaunch of systemd-boot", []string{"publish", "azure", raw, "--subscription", sub, "--resource-group", "rg", "--location", "westeurope",
			"--gallery", "g", "--gallery-image", "d", "--gallery-version", "1.0.0", "--security-type", "TrustedLaunch", "--boot", "systemd-boot"}, 1, "needs the disk's boot: grub", ""},
		{"TrustedLaunch, no layout", []string{"publish", "azure", raw, "--subscription", sub, "--resource-group", "rg", "--location", "westeurope",
			"--gallery", "g", "--gallery-image", "d", "--gallery-version", "1.0.0", "--security-type", "TrustedLaunch"}, 1, "no partition table", ""},
		{"missing disk", []string{"publish", "azure", filepath.Join(dir, "nope.vhd"), "--subscription", sub, "--resource-group", "rg", "--location", "westeurope", "--image", "i", "--boot", "grub"}, 1, "nope.vhd", ""},
	})
}

func TestPublishVSphereCommandErrors(t *testing.T) {
	vmdk := filepath.Join(t.TempDir(), "d.vmdk")
	os.WriteFile(vmdk, make([]byte, 1024), 0o644)
	t.Setenv("GOVC_URL", "")
	cliCases(t, []cliCase{
		{"no args", []string{"publish", "vsphere"}, 2, "expected one VMDK", ""},
		{"missing disk", []string{"publish", "vsphere", "/nonexistent.vmdk", "--template", "t", "--url", "vc.invalid"}, 1, "nonexistent.vmdk", ""},
		{"no url", []string{"publish", "vsphere", vmdk, "--template", "t"}, 1, "no URL", ""},
		{"lsilogic", []string{"publish", "vsphere", vmdk, "--template", "t", "--url", "x", "--disk-controller", "lsilogic"}, 1, "LSI Logic", ""},
	})
}
