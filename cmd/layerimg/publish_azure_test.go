package main

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/layerimg/layerimg/disk"
	"github.com/layerimg/layerimg/export/azure"
	"github.com/layerimg/layerimg/internal/armfake"
)

// azureEnv points a child layerimg at the ARM fake through the variables
// a user would set: AZURE_RESOURCE_MANAGER_ENDPOINT for ARM,
// AZURE_SUBSCRIPTION_ID, SSL_CERT_FILE to trust the fake's certificate, and
// a managed identity (IDENTITY_ENDPOINT, as App Service and Container Apps
// provide) that hands out the one token the fake accepts.
func azureEnv(t *testing.T, s *armfake.Server, sub string) {
	dir := t.TempDir()
	ca := writeCA(t, dir, s.Certificate())
	identity := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("X-IDENTITY-HEADER") != "layerimg-test" {
			http.Error(w, "no identity header", http.StatusUnauthorized)
			return
		}
		json.NewEncoder(w).Encode(map[string]any{"access_token": armfake.Token, "expires_in": 3600, "token_type": "Bearer",
			"resource": r.URL.Query().Get("resource")})
	}))
	t.Cleanup(identity.Close)
	for k, v := range map[string]string{
		azure.EnvARMEndpoint: s.URL, azure.EnvSubscription: sub, azure.EnvAuthorityHost: "",
		"SSL_CERT_FILE": ca, "AZURE_TOKEN_CREDENTIALS": "ManagedIdentityCredential",
		"IDENTITY_ENDPOINT": identity.URL, "IDENTITY_HEADER": "layerimg-test",
		"AZURE_CLIENT_ID": "", "AZURE_TENANT_ID": "", "AZURE_CLIENT_SECRET": "", "AZURE_FEDERATED_TOKEN_FILE": "",
	} {
		t.Setenv(k, v) // restored after the test
		if v == "" {
			os.Unsetenv(k) // azidentity tells unset from empty
		}
	}
}

// TestPublishAzureCommand drives the real `layerimg publish azure` against
// the ARM fake (and Azurite behind it) end to end.
func TestPublishAzureCommand(t *testing.T) {
	const sub = "00000000-1111-2222-3333-444444444444"
	s := armfake.WithAzurite(t, sub)
	azureEnv(t, s, sub)
	dir := t.TempDir()
	raw := rawDisk(t, dir)
	manifest := filepath.Join(dir, "azure.json")

	out, errOut, code := cli(t, "publish", "azure", raw, "--resource-group", "rg", "--location", "westeurope",
		"--image", "web-1", "--tag", "team=platform", "--manifest", manifest, "-v")
	if code != 0 {
		t.Fatalf("exit %d\n%s", code, errOut)
	}
	var res azure.Result
	if err := json.Unmarshal([]byte(out), &res); err != nil {
		t.Fatalf("stdout is not the result: %v\n%s", err, out)
	}
	if filepath.Base(res.ImageID) != "web-1" || res.Existing || res.BytesSent == 0 {
		t.Fatalf("result: %+v", res)
	}
	if b, err := os.ReadFile(manifest); err != nil || string(b) != out {
		t.Fatalf("--manifest wrote %q (%v), stdout %q", b, err, out)
	}
	ims := s.Images()
	digest, err := disk.ContentDigest(raw)
	if err != nil {
		t.Fatal(err)
	}
	if len(ims) != 1 || ims[0].Tags["team"] != "platform" || ims[0].Tags[azure.DigestTag] != digest {
		t.Fatalf("images: %+v", ims)
	}
	if ds := s.Disks(); len(ds) != 1 || !ds[0].Deleted {
		t.Fatalf("the upload disk was kept: %+v", ds)
	}

	// The same disk again finds the image and uploads nothing.
	out, errOut, code = cli(t, "publish", "azure", raw, "--resource-group", "rg", "--location", "westeurope", "--image", "web-1")
	if code != 0 || !strings.Contains(out, `"existing": true`) || len(s.Disks()) != 1 {
		t.Fatalf("republish: exit %d\n%s\n%s", code, out, errOut)
	}
}
