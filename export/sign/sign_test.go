package sign_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"io"
	"log"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/secure-systems-lab/go-securesystemslib/encrypted"
	"github.com/sigstore/sigstore/pkg/cryptoutils"
	"github.com/sigstore/sigstore/pkg/signature"

	"github.com/layerimg/layerimg/export/sign"
)

// writeKey writes a fresh ECDSA P-256 key pair in cosign's format (as
// generate-key-pair writes it) to dir: cosign.key, cosign.pub.
func writeKey(t *testing.T, dir, password string) (key, pub string) {
	t.Helper()
	pk, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(pk)
	if err != nil {
		t.Fatal(err)
	}
	enc, err := encrypted.Encrypt(der, []byte(password))
	if err != nil {
		t.Fatal(err)
	}
	key, pub = filepath.Join(dir, "cosign.key"), filepath.Join(dir, "cosign.pub")
	os.WriteFile(key, pem.EncodeToMemory(&pem.Block{Type: "ENCRYPTED SIGSTORE PRIVATE KEY", Bytes: enc}), 0o600)
	pubPEM, err := cryptoutils.MarshalPublicKeyToPEM(pk.Public())
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(pub, pubPEM, 0o644)
	return key, pub
}

func loadPair(t *testing.T) (*sign.KeySigner, signature.Verifier) {
	t.Helper()
	key, pub := writeKey(t, t.TempDir(), "pw")
	s, err := sign.LoadKey(key, []byte("pw"))
	if err != nil {
		t.Fatal(err)
	}
	v, err := sign.LoadPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	return s, v
}

func TestLoadKeyErrors(t *testing.T) {
	dir := t.TempDir()
	key, _ := writeKey(t, dir, "right")
	_, err := sign.LoadKey(key, []byte("hunter2-typo"))
	if err == nil || !strings.Contains(err.Error(), "COSIGN_PASSWORD") || strings.Contains(err.Error(), "hunter2") {
		t.Fatalf("wrong password: %v (want an error naming COSIGN_PASSWORD, not the password)", err)
	}
	plain := filepath.Join(dir, "plain.pem")
	os.WriteFile(plain, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: []byte{1}}), 0o600)
	if _, err := sign.LoadKey(plain, nil); err == nil || !strings.Contains(err.Error(), "generate-key-pair") {
		t.Fatalf("unencrypted key: %v", err)
	}
}

func TestSignFile(t *testing.T) {
	ctx := context.Background()
	s, v := loadPair(t)
	_, other := loadPair(t)
	f := filepath.Join(t.TempDir(), "disk.raw")
	os.WriteFile(f, []byte(strings.Repeat("disk bytes ", 1000)), 0o644)
	if _, err := sign.SignFile(ctx, s, f, ""); err != nil {
		t.Fatal(err)
	}
	if err := sign.VerifyFile(ctx, v, f, ""); err != nil {
		t.Fatalf("verify: %v", err)
	}
	if err := sign.VerifyFile(ctx, other, f, ""); err == nil {
		t.Fatal("another key verified the file")
	}
	data, _ := os.ReadFile(f)
	data[5000] ^= 1
	os.WriteFile(f, data, 0o644)
	if err := sign.VerifyFile(ctx, v, f, ""); err == nil || !strings.Contains(err.Error(), "changed") {
		t.Fatalf("tampered file: %v", err)
	}
	os.Remove(f + sign.BundleExt)
	if err := sign.VerifyFile(ctx, v, f, ""); err == nil || !strings.Contains(err.Error(), "no signature") {
		t.Fatalf("no bundle: %v", err)
	}
}

// TestSignFileKnownDigest: a digest handed in (a disk's, hashed once)
// gives a signature over the same bytes as reading the file.
func TestSignFileKnownDigest(t *testing.T) {
	ctx := context.Background()
	s, v := loadPair(t)
	f := filepath.Join(t.TempDir(), "f")
	os.WriteFile(f, []byte("hello\n"), 0o644)
	const sum = "5891b5b522d5df086d0ff0b110fbd9d21bb4fc7163af34d08286a2e846f6be03" // sha256 of "hello\n"
	if _, err := sign.SignFile(ctx, s, f, sum); err != nil {
		t.Fatal(err)
	}
	if err := sign.VerifyFile(ctx, v, f, ""); err != nil {
		t.Fatal(err)
	}
}

func startRegistry(t *testing.T) string {
	srv := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	t.Cleanup(srv.Close)
	return strings.TrimPrefix(srv.URL, "http://")
}

func pushRandom(t *testing.T, repo string) name.Digest {
	t.Helper()
	img, err := random.Image(256, 1)
	if err != nil {
		t.Fatal(err)
	}
	ref, _ := name.ParseReference(repo + ":v1")
	if err := remote.Write(ref, img); err != nil {
		t.Fatal(err)
	}
	d, _ := img.Digest()
	return ref.Context().Digest(d.String())
}

func statementFor(d name.Digest, predicateType string) []byte {
	hex := strings.TrimPrefix(d.DigestStr(), "sha256:")
	return []byte(`{"_type":"https://in-toto.io/Statement/v1","subject":[{"name":"` + d.Context().Name() + `","digest":{"sha256":"` + hex + `"}}],"predicateType":"` + predicateType + `","predicate":{"x":1}}`)
}

func TestImage(t *testing.T) {
	ctx := context.Background()
	s, v := loadPair(t)
	_, other := loadPair(t)
	d := pushRandom(t, startRegistry(t)+"/golden")
	r := sign.Remote{}
	if _, err := sign.VerifyImage(ctx, v, d, r); !errors.Is(err, sign.ErrNoSignature) {
		t.Fatalf("unsigned image: %v", err)
	}
	for range 2 { // signing again adds nothing
		if err := sign.SignImage(ctx, s, d, r); err != nil {
			t.Fatal(err)
		}
		if err := sign.Attest(ctx, s, d, statementFor(d, "https://slsa.dev/provenance/v1"), r); err != nil {
			t.Fatal(err)
		}
	}
	tag, _ := name.ParseReference(d.Context().Name() + ":v1") // verify by tag: resolved
	rep, err := sign.VerifyImage(ctx, v, tag, r)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Signatures != 1 || len(rep.Attestations) != 1 || rep.Attestations[0].PredicateType != "https://slsa.dev/provenance/v1" {
		t.Fatalf("report: %+v", rep)
	}
	if _, err := sign.VerifyImage(ctx, other, d, r); err == nil || !strings.Contains(err.Error(), "does not verify") {
		t.Fatalf("other key: %v", err)
	}
	// A statement about another image is refused before signing.
	d2 := pushRandom(t, d.Context().Name()+"2")
	if err := sign.Attest(ctx, s, d, statementFor(d2, "x"), r); err == nil {
		t.Fatal("attested a statement whose subject is another image")
	}
}

// tamper rewrites the signature image at tag with each layer's payload
// passed through edit, keeping the annotations (the signatures).
func tamper(t *testing.T, tag string, edit func([]byte) []byte) {
	t.Helper()
	ref, _ := name.ParseReference(tag)
	img, err := remote.Image(ref)
	if err != nil {
		t.Fatal(err)
	}
	m, _ := img.Manifest()
	out := mutate.MediaType(empty.Image, types.OCIManifestSchema1)
	for _, d := range m.Layers {
		l, _ := img.LayerByDigest(d.Digest)
		rc, _ := l.Compressed()
		data, _ := io.ReadAll(rc)
		rc.Close()
		edited := edit(data)
		if bytes.Equal(edited, data) {
			t.Fatalf("the edit changed nothing in %s", tag)
		}
		out, err = mutate.Append(out, mutate.Addendum{Layer: static.NewLayer(edited, d.MediaType), Annotations: d.Annotations})
		if err != nil {
			t.Fatal(err)
		}
	}
	if err := remote.Write(ref, out); err != nil {
		t.Fatal(err)
	}
}

// sigTag is cosign's tag for what belongs to d.
func sigTag(d name.Digest, suffix string) string {
	return d.Context().Name() + ":" + strings.Replace(d.DigestStr(), ":", "-", 1) + "." + suffix
}

func TestImageTampered(t *testing.T) {
	ctx := context.Background()
	s, v := loadPair(t)
	d := pushRandom(t, startRegistry(t)+"/golden")
	if err := sign.SignImage(ctx, s, d, sign.Remote{}); err != nil {
		t.Fatal(err)
	}
	if err := sign.Attest(ctx, s, d, statementFor(d, "https://slsa.dev/provenance/v1"), sign.Remote{}); err != nil {
		t.Fatal(err)
	}
	// The attestation's statement edited inside its envelope.
	tamper(t, sigTag(d, "att"), func(env []byte) []byte {
		var e map[string]any
		json.Unmarshal(env, &e)
		st, _ := base64.StdEncoding.DecodeString(e["payload"].(string))
		e["payload"] = base64.StdEncoding.EncodeToString(bytes.Replace(st, []byte(`"x":1`), []byte(`"x":2`), 1))
		out, _ := json.Marshal(e)
		return out
	})
	if _, err := sign.VerifyImage(ctx, v, d, sign.Remote{}); err == nil || !strings.Contains(err.Error(), "attestations verifies") {
		t.Errorf("tampered attestation: %v", err)
	}
	// The signed payload edited: one byte of its type.
	tamper(t, sigTag(d, "sig"), func(p []byte) []byte {
		return bytes.Replace(p, []byte("cosign container"), []byte("cosign Container"), 1)
	})
	if _, err := sign.VerifyImage(ctx, v, d, sign.Remote{}); err == nil || !strings.Contains(err.Error(), "does not verify") {
		t.Errorf("tampered signature payload: %v", err)
	}
}
