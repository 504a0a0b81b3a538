package sign

import (
	"bytes"
	"context"
	"crypto"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/secure-systems-lab/go-securesystemslib/encrypted"
	"github.com/sigstore/sigstore/pkg/cryptoutils"
	"github.com/sigstore/sigstore/pkg/signature"
	"github.com/sigstore/sigstore/pkg/signature/options"
)

// PasswordEnv holds the password of a cosign private key, as for cosign.
const PasswordEnv = "COSIGN_PASSWORD"

// The PEM types cosign writes its encrypted private keys as, old and new.
const (
	cosignKeyPEM   = "ENCRYPTED COSIGN PRIVATE KEY"
	sigstoreKeyPEM = "ENCRYPTED SIGSTORE PRIVATE KEY"
)

// Signer signs payloads. A key file is one; keyless signing (a Fulcio
// certificate for an OIDC identity) would be another, returning its
// certificate from Certificate so it travels with each signature.
type Signer interface {
	// Sign signs the bytes of payload. A non-empty sha256 (hex) is the
	// payload's digest, known already: a signer hashing with sha256 uses it
	// rather than reading a multi-gigabyte disk again.
	Sign(ctx context.Context, payload io.Reader, sha256 string) ([]byte, error)
	// Verifier checks this signer's signatures (to recognise its own
	// earlier signatures in a registry).
	Verifier() signature.Verifier
	// Certificate is the PEM certificate to store beside each signature;
	// nil for a plain key.
	Certificate() []byte
}

// KeySigner signs with a private key.
type KeySigner struct {
	sv   signature.SignerVerifier
	hash crypto.Hash
}

// LoadKey reads a cosign-format encrypted private key (as `cosign
// generate-key-pair` writes) and decrypts it with password. Errors name the
// file, never the password.
func LoadKey(path string, password []byte) (*KeySigner, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading signing key: %w", err)
	}
	p, _ := pem.Decode(data)
	if p == nil {
		return nil, fmt.Errorf("signing key %s: not a PEM file", path)
	}
	if p.Type != cosignKeyPEM && p.Type != sigstoreKeyPEM {
		return nil, fmt.Errorf("signing key %s: a %q PEM block, expected an encrypted cosign key (%q, from cosign generate-key-pair)", path, p.Type, sigstoreKeyPEM)
	}
	der, err := encrypted.Decrypt(p.Bytes, password)
	if err != nil {
		return nil, fmt.Errorf("signing key %s: cannot decrypt it: wrong password in %s? (%w)", path, PasswordEnv, err)
	}
	pk, err := x509.ParsePKCS8PrivateKey(der)
	if err != nil {
		return nil, fmt.Errorf("signing key %s: %w", path, err)
	}
	return NewKeySigner(pk)
}

// NewKeySigner signs with pk (ECDSA, RSA or ed25519) as cosign does: sha256,
// and ed25519ph for ed25519 keys.
func NewKeySigner(pk crypto.PrivateKey) (*KeySigner, error) {
	sv, err := signature.LoadDefaultSignerVerifier(pk, options.WithED25519ph())
	if err != nil {
		return nil, fmt.Errorf("loading signing key: %w", err)
	}
	s := &KeySigner{sv: sv}
	if _, ok := sv.(*signature.ED25519phSignerVerifier); !ok {
		s.hash = crypto.SHA256
	}
	return s, nil
}

// Sign implements Signer.
func (s *KeySigner) Sign(ctx context.Context, payload io.Reader, sha256hex string) ([]byte, error) {
	opts := []signature.SignOption{options.WithContext(ctx)}
	if sha256hex != "" && s.hash == crypto.SHA256 {
		d, err := decodeHex(sha256hex)
		if err != nil {
			return nil, err
		}
		opts = append(opts, options.WithDigest(d), options.WithCryptoSignerOpts(crypto.SHA256))
		payload = bytes.NewReader(nil)
	}
	return s.sv.SignMessage(payload, opts...)
}

// Verifier implements Signer.
func (s *KeySigner) Verifier() signature.Verifier { return s.sv }

// Certificate implements Signer: a key has none.
func (s *KeySigner) Certificate() []byte { return nil }

// PublicKeyPEM is the signer's public key as `cosign generate-key-pair`
// writes cosign.pub.
func (s *KeySigner) PublicKeyPEM() ([]byte, error) {
	pub, err := s.sv.PublicKey()
	if err != nil {
		return nil, err
	}
	return cryptoutils.MarshalPublicKeyToPEM(pub)
}

// LoadPublicKey reads a PEM public key (cosign.pub) as a verifier.
func LoadPublicKey(path string) (signature.Verifier, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading public key: %w", err)
	}
	pub, err := cryptoutils.UnmarshalPEMToPublicKey(data)
	if err != nil {
		return nil, fmt.Errorf("public key %s: %w", path, err)
	}
	v, err := signature.LoadDefaultVerifier(pub, options.WithED25519ph())
	if err != nil {
		return nil, fmt.Errorf("public key %s: %w", path, err)
	}
	return v, nil
}

// verify checks sig over payload with v.
func verify(ctx context.Context, v signature.Verifier, sig []byte, payload io.Reader) error {
	if err := v.VerifySignature(bytes.NewReader(sig), payload, options.WithContext(ctx)); err != nil {
		return errBadSignature
	}
	return nil
}

var errBadSignature = errors.New("the signature does not verify with this key")

func decodeHex(s string) ([]byte, error) {
	b, err := hex.DecodeString(strings.TrimPrefix(s, "sha256:"))
	if err != nil || len(b) != 32 {
		return nil, fmt.Errorf("sha256 %q is not 64 hex digits", s)
	}
	return b, nil
}
