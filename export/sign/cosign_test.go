package sign_test

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/layerimg/layerimg/export/sign"
	"github.com/layerimg/layerimg/internal/cosigntest"
)

// The real cosign is the oracle: what this package signs, cosign
// verifies, and what cosign signs, this package verifies; a flipped byte
// fails both.

func cosignPair(t *testing.T) (*cosigntest.Cosign, *sign.KeySigner) {
	t.Helper()
	c := cosigntest.New(t)
	s, err := sign.LoadKey(c.Key(), []byte(c.Password))
	if err != nil {
		t.Fatalf("loading the key cosign generated: %v", err)
	}
	return c, s
}

// offline are the flags that keep cosign off the network: no
// transparency log, plain HTTP to the test registry.
var offline = []string{"--insecure-ignore-tlog=true", "--allow-http-registry", "--allow-insecure-registry"}

func TestCosignBlob(t *testing.T) {
	ctx := context.Background()
	c, s := cosignPair(t)
	v, err := sign.LoadPublicKey(c.Pub())
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	ours, theirs := filepath.Join(dir, "ours.raw"), filepath.Join(dir, "theirs.json")
	os.WriteFile(ours, []byte(strings.Repeat("\x00disk", 4096)), 0o644)
	os.WriteFile(theirs, []byte(`{"spdxVersion":"SPDX-2.3"}`), 0o644)
	if _, err := sign.SignFile(ctx, s, ours, ""); err != nil {
		t.Fatal(err)
	}
	if out, err := c.Run("sign-blob", "--key", c.Key(), "--tlog-upload=false", "--yes", "--bundle", theirs+".bundle", theirs); err != nil {
		t.Fatalf("cosign sign-blob: %v\n%s", err, out)
	}
	for _, f := range []string{ours, theirs} {
		if out, err := c.Run("verify-blob", "--key", c.Pub(), "--bundle", f+".bundle", "--insecure-ignore-tlog=true", f); err != nil {
			t.Errorf("cosign verify-blob %s: %v\n%s", filepath.Base(f), err, out)
		}
		if err := sign.VerifyFile(ctx, v, f, ""); err != nil {
			t.Errorf("VerifyFile %s: %v", filepath.Base(f), err)
		}
		data, _ := os.ReadFile(f)
		data[len(data)/2] ^= 0x20
		os.WriteFile(f, data, 0o644)
		if out, err := c.Run("verify-blob", "--key", c.Pub(), "--bundle", f+".bundle", "--insecure-ignore-tlog=true", f); err == nil {
			t.Errorf("cosign verified tampered %s:\n%s", filepath.Base(f), out)
		}
		if err := sign.VerifyFile(ctx, v, f, ""); err == nil {
			t.Errorf("VerifyFile verified tampered %s", filepath.Base(f))
		}
	}
}

func TestCosignImage(t *testing.T) {
	ctx := context.Background()
	c, s := cosignPair(t)
	v, err := sign.LoadPublicKey(c.Pub())
	if err != nil {
		t.Fatal(err)
	}
	reg := startRegistry(t)
	r := sign.Remote{}

	// Signed and attested here, verified by cosign.
	d := pushRandom(t, reg+"/ours")
	if err := sign.SignImage(ctx, s, d, r); err != nil {
		t.Fatal(err)
	}
	hex := strings.TrimPrefix(d.DigestStr(), "sha256:")
	subject := `"subject":[{"name":"` + d.Context().Name() + `","digest":{"sha256":"` + hex + `"}}]`
	prov := `{"_type":"https://in-toto.io/Statement/v1",` + subject + `,"predicateType":"https://slsa.dev/provenance/v1","predicate":{"buildDefinition":{"buildType":"https://example.com/t","externalParameters":{}},"runDetails":{"builder":{"id":"https://example.com/b"}}}}`
	sbom := `{"_type":"https://in-toto.io/Statement/v1",` + subject + `,"predicateType":"https://spdx.dev/Document","predicate":{"spdxVersion":"SPDX-2.3","SPDXID":"SPDXRef-DOCUMENT","name":"t","packages":[]}}`
	for _, st := range []string{prov, sbom} {
		if err := sign.Attest(ctx, s, d, []byte(st), r); err != nil {
			t.Fatal(err)
		}
	}
	if out, err := c.Run(append([]string{"verify", "--key", c.Pub()}, append(offline, d.String())...)...); err != nil {
		t.Fatalf("cosign verify: %v\n%s", err, out)
	}
	for _, typ := range []string{"slsaprovenance1", "spdxjson"} {
		if out, err := c.Run(append([]string{"verify-attestation", "--key", c.Pub(), "--type", typ}, append(offline, d.String())...)...); err != nil {
			t.Errorf("cosign verify-attestation --type %s: %v\n%s", typ, err, out)
		}
	}
	// One byte changed in the stored attestation's statement, and in the
	// signed payload: cosign refuses both.
	tamper(t, sigTag(d, "att"), func(env []byte) []byte {
		return bytes.Replace(env, []byte("eyJfdHlwZSI6"), []byte("eyJfdHlwZSI7"), 1) // base64 of `{"_type":` with one bit off
	})
	if out, err := c.Run(append([]string{"verify-attestation", "--key", c.Pub(), "--type", "slsaprovenance1"}, append(offline, d.String())...)...); err == nil {
		t.Errorf("cosign verified a tampered attestation:\n%s", out)
	}
	tamper(t, sigTag(d, "sig"), func(p []byte) []byte {
		return bytes.Replace(p, []byte("cosign container"), []byte("cosign Container"), 1)
	})
	if out, err := c.Run(append([]string{"verify", "--key", c.Pub()}, append(offline, d.String())...)...); err == nil {
		t.Errorf("cosign verified a tampered signature payload:\n%s", out)
	}
	// The image pushed again under another digest has no signature.
	other := pushRandom(t, reg+"/ours")
	if out, err := c.Run(append([]string{"verify", "--key", c.Pub()}, append(offline, other.String())...)...); err == nil {
		t.Errorf("cosign verified an unsigned image:\n%s", out)
	}

	// Signed and attested by cosign, verified here.
	theirs := pushRandom(t, reg+"/theirs")
	if out, err := c.Run("sign", "--key", c.Key(), "--tlog-upload=false", "--yes", "--allow-http-registry", "--allow-insecure-registry", theirs.String()); err != nil {
		t.Fatalf("cosign sign: %v\n%s", err, out)
	}
	pred := filepath.Join(c.Dir, "pred.json")
	os.WriteFile(pred, []byte(`{"buildDefinition":{"buildType":"https://example.com/t","externalParameters":{}},"runDetails":{"builder":{"id":"https://example.com/b"}}}`), 0o644)
	if out, err := c.Run("attest", "--key", c.Key(), "--tlog-upload=false", "--yes", "--allow-http-registry", "--allow-insecure-registry",
		"--type", "slsaprovenance1", "--predicate", pred, theirs.String()); err != nil {
		t.Fatalf("cosign attest: %v\n%s", err, out)
	}
	rep, err := sign.VerifyImage(ctx, v, theirs, r)
	if err != nil {
		t.Fatalf("VerifyImage of cosign's signature: %v", err)
	}
	if rep.Signatures != 1 || len(rep.Attestations) != 1 || rep.Attestations[0].PredicateType != "https://slsa.dev/provenance/v1" {
		t.Fatalf("report of cosign's signature: %+v", rep)
	}
}
