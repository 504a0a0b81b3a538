package sign

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"os"

	"github.com/sigstore/sigstore/pkg/signature"

	"github.com/layerimg/layerimg/disk/sparse"
)

// BundleExt is the suffix of the bundle written beside a signed file.
const BundleExt = ".bundle"

// Bundle is cosign's bundle of a signed blob, as `cosign sign-blob
// --bundle` writes it (cosign's LocalSignedPayload) without a transparency
// log entry: `cosign verify-blob --key PUB --bundle FILE.bundle
// --insecure-ignore-tlog=true FILE` verifies it offline. (cosign 2.6's
// newer protobuf bundle needs a trusted root even with a key, so it is not
// the one written.)
type Bundle struct {
	Base64Signature string `json:"base64Signature"`
	// Cert is the base64 of the PEM certificate, for keyless signers.
	Cert string `json:"cert,omitempty"`
	// RekorBundle is a transparency log entry: never written here, kept so
	// that reading a bundle cosign made with one does not lose it.
	RekorBundle json.RawMessage `json:"rekorBundle,omitempty"`
}

// SignFile signs the file at path and writes its bundle to path+BundleExt.
// A non-empty sha256 (hex) is the file's digest, known already.
func SignFile(ctx context.Context, s Signer, path, sha256 string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", fmt.Errorf("signing %s: %w", path, err)
	}
	defer f.Close()
	sig, err := s.Sign(ctx, f, sha256)
	if err != nil {
		return "", fmt.Errorf("signing %s: %w", path, err)
	}
	b := Bundle{Base64Signature: base64.StdEncoding.EncodeToString(sig)}
	if c := s.Certificate(); c != nil {
		b.Cert = base64.StdEncoding.EncodeToString(c)
	}
	data, err := json.Marshal(b)
	if err != nil {
		return "", err
	}
	out := path + BundleExt
	// Through a temporary file: a bundle is never seen half written.
	if err := sparse.WriteAtomic(out, func(f *os.File) error { _, err := f.Write(data); return err }); err != nil {
		return "", fmt.Errorf("writing the bundle of %s: %w", path, err)
	}
	return out, nil
}

// VerifyFile checks the file at path against its bundle (path+BundleExt
// when bundle is empty) with v.
func VerifyFile(ctx context.Context, v signature.Verifier, path, bundle string) error {
	if bundle == "" {
		bundle = path + BundleExt
	}
	data, err := os.ReadFile(bundle)
	if errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("%s has no signature: %s does not exist", path, bundle)
	}
	if err != nil {
		return err
	}
	var b Bundle
	if err := json.Unmarshal(data, &b); err != nil {
		return fmt.Errorf("bundle %s: %w", bundle, err)
	}
	sig, err := base64.StdEncoding.DecodeString(b.Base64Signature)
	if err != nil || len(sig) == 0 {
		return fmt.Errorf("bundle %s: no base64 signature in it", bundle)
	}
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := verify(ctx, v, sig, f); err != nil {
		return fmt.Errorf("%s: %w (bundle %s): the file changed since it was signed, or another key signed it", path, err, bundle)
	}
	return nil
}
