package sign

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/secure-systems-lab/go-securesystemslib/dsse"
	"github.com/sigstore/sigstore/pkg/signature"
)

// The media types and annotations of cosign's signature and attestation
// images.
const (
	SimpleSigningMediaType = "application/vnd.dev.cosign.simplesigning.v1+json"
	DSSEMediaType          = "application/vnd.dsse.envelope.v1+json"
	SignatureAnnotation    = "dev.cosignproject.cosign/signature"
	CertificateAnnotation  = "dev.sigstore.cosign/certificate"
	PredicateAnnotation    = "predicateType"
	// InTotoPayloadType is the DSSE payload type of an in-toto statement.
	InTotoPayloadType = "application/vnd.in-toto+json"
	// StatementType is the _type of an in-toto Statement v1.
	StatementType = "https://in-toto.io/Statement/v1"
)

// Remote is how this package reaches a registry: the caller's options
// (transport, auth, insecure registries) for every request.
type Remote struct {
	Options []remote.Option
}

// simpleSigning is cosign's payload for an image signature.
type simpleSigning struct {
	Critical struct {
		Identity struct {
			DockerReference string `json:"docker-reference"`
		} `json:"identity"`
		Image struct {
			DockerManifestDigest string `json:"docker-manifest-digest"`
		} `json:"image"`
		Type string `json:"type"`
	} `json:"critical"`
	Optional map[string]any `json:"optional"`
}

const simpleSigningType = "cosign container image signature"

// SimpleSigningPayload is the payload `cosign sign` signs for the image
// at d: its repository and manifest digest.
func SimpleSigningPayload(d name.Digest) ([]byte, error) {
	var p simpleSigning
	p.Critical.Identity.DockerReference = d.Context().Name()
	p.Critical.Image.DockerManifestDigest = d.DigestStr()
	p.Critical.Type = simpleSigningType
	return json.Marshal(p)
}

// tagFor is the tag cosign's tag scheme stores what belongs to digest d
// under: sha256-HEX.sig, .att.
func tagFor(d name.Digest, suffix string) name.Tag {
	return d.Context().Tag(strings.Replace(d.DigestStr(), ":", "-", 1) + "." + suffix)
}

// SignImage signs the image at d and stores the signature in d's
// repository under sha256-HEX.sig, beside any signatures already there
// (other keys' signatures stay; this key's signature of this digest is not
// added twice).
func SignImage(ctx context.Context, s Signer, d name.Digest, r Remote) error {
	payload, err := SimpleSigningPayload(d)
	if err != nil {
		return err
	}
	tag := tagFor(d, "sig")
	old, err := readSigImage(ctx, tag, r)
	if err != nil {
		return err
	}
	for _, l := range old {
		if l.mediaType == SimpleSigningMediaType && bytes.Equal(l.payload, payload) && l.verifies(ctx, s.Verifier()) {
			return nil // signed already, by this key
		}
	}
	sig, err := s.Sign(ctx, bytes.NewReader(payload), "")
	if err != nil {
		return fmt.Errorf("signing %s: %w", d, err)
	}
	ann := map[string]string{SignatureAnnotation: base64.StdEncoding.EncodeToString(sig)}
	if c := s.Certificate(); c != nil {
		ann[CertificateAnnotation] = string(c)
	}
	return writeSigImage(ctx, tag, append(old, sigLayer{mediaType: SimpleSigningMediaType, payload: payload, annotations: ann}), r)
}

// Statement is an in-toto Statement v1, its predicate left as JSON.
type Statement struct {
	Type          string          `json:"_type"`
	Subject       []Subject       `json:"subject"`
	PredicateType string          `json:"predicateType"`
	Predicate     json.RawMessage `json:"predicate"`
}

// Subject is an artifact a statement is about.
type Subject struct {
	Name   string            `json:"name"`
	Digest map[string]string `json:"digest"`
}

// SignStatement wraps an in-toto statement in a DSSE envelope signed by s.
func SignStatement(ctx context.Context, s Signer, statement []byte) ([]byte, error) {
	sig, err := s.Sign(ctx, bytes.NewReader(dsse.PAE(InTotoPayloadType, statement)), "")
	if err != nil {
		return nil, err
	}
	return json.Marshal(dsse.Envelope{
		PayloadType: InTotoPayloadType,
		Payload:     base64.StdEncoding.EncodeToString(statement),
		Signatures:  []dsse.Signature{{Sig: base64.StdEncoding.EncodeToString(sig)}},
	})
}

// Attest signs statement (an in-toto statement with d among its subjects)
// and stores it in d's repository under sha256-HEX.att, where `cosign
// verify-attestation` looks. An attestation of the same predicate type
// signed by this key before is replaced (as `cosign attest --replace`);
// others stay.
func Attest(ctx context.Context, s Signer, d name.Digest, statement []byte, r Remote) error {
	var st Statement
	if err := json.Unmarshal(statement, &st); err != nil {
		return fmt.Errorf("attesting %s: the statement is not JSON: %w", d, err)
	}
	if !hasSubject(st, d.DigestStr()) {
		return fmt.Errorf("attesting %s: the statement's subjects do not include %s", d, d.DigestStr())
	}
	env, err := SignStatement(ctx, s, statement)
	if err != nil {
		return fmt.Errorf("attesting %s: %w", d, err)
	}
	tag := tagFor(d, "att")
	old, err := readSigImage(ctx, tag, r)
	if err != nil {
		return err
	}
	var keep []sigLayer
	for _, l := range old {
		if l.annotations[PredicateAnnotation] == st.PredicateType && l.verifies(ctx, s.Verifier()) {
			continue
		}
		keep = append(keep, l)
	}
	ann := map[string]string{SignatureAnnotation: "", PredicateAnnotation: st.PredicateType}
	if c := s.Certificate(); c != nil {
		ann[CertificateAnnotation] = string(c)
	}
	return writeSigImage(ctx, tag, append(keep, sigLayer{mediaType: DSSEMediaType, payload: env, annotations: ann}), r)
}

func hasSubject(st Statement, digest string) bool {
	alg, hex, _ := strings.Cut(digest, ":")
	for _, s := range st.Subject {
		if s.Digest[alg] == hex {
			return true
		}
	}
	return false
}

// sigLayer is one layer of a signature or attestation image.
type sigLayer struct {
	mediaType   string
	payload     []byte
	annotations map[string]string
}

// verifies says whether the layer's signature verifies with v.
func (l sigLayer) verifies(ctx context.Context, v signature.Verifier) bool {
	switch l.mediaType {
	case SimpleSigningMediaType:
		sig, err := base64.StdEncoding.DecodeString(l.annotations[SignatureAnnotation])
		return err == nil && verify(ctx, v, sig, bytes.NewReader(l.payload)) == nil
	case DSSEMediaType:
		_, err := openEnvelope(ctx, v, l.payload)
		return err == nil
	}
	return false
}

// openEnvelope checks a DSSE envelope's signatures with v and returns its
// payload when one verifies.
func openEnvelope(ctx context.Context, v signature.Verifier, env []byte) ([]byte, error) {
	var e dsse.Envelope
	if err := json.Unmarshal(env, &e); err != nil {
		return nil, fmt.Errorf("not a DSSE envelope: %w", err)
	}
	payload, err := e.DecodeB64Payload()
	if err != nil {
		return nil, fmt.Errorf("DSSE payload: %w", err)
	}
	pae := dsse.PAE(e.PayloadType, payload)
	for _, s := range e.Signatures {
		sig, err := base64.StdEncoding.DecodeString(s.Sig)
		if err != nil {
			continue
		}
		if verify(ctx, v, sig, bytes.NewReader(pae)) == nil {
			if e.PayloadType != InTotoPayloadType {
				return nil, fmt.Errorf("payload type %q, expected %q", e.PayloadType, InTotoPayloadType)
			}
			return payload, nil
		}
	}
	if len(e.Signatures) == 0 {
		return nil, errors.New("the envelope has no signature")
	}
	return nil, errBadSignature
}

// readSigImage reads the layers of the signature image at tag; none when
// the tag does not exist.
func readSigImage(ctx context.Context, tag name.Tag, r Remote) ([]sigLayer, error) {
	img, err := remote.Image(tag, append(r.Options, remote.WithContext(ctx))...)
	if isNotFound(err) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", tag, err)
	}
	m, err := img.Manifest()
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", tag, err)
	}
	var out []sigLayer
	for _, d := range m.Layers {
		l, err := img.LayerByDigest(d.Digest)
		if err != nil {
			return nil, fmt.Errorf("reading %s: %w", tag, err)
		}
		rc, err := l.Compressed() // stored as is: cosign's layers are not compressed
		if err != nil {
			return nil, fmt.Errorf("reading %s layer %s: %w", tag, d.Digest, err)
		}
		payload, err := io.ReadAll(io.LimitReader(rc, maxPayload+1))
		rc.Close()
		if err != nil {
			return nil, fmt.Errorf("reading %s layer %s: %w", tag, d.Digest, err)
		}
		if len(payload) > maxPayload {
			return nil, fmt.Errorf("%s layer %s: larger than %d bytes", tag, d.Digest, maxPayload)
		}
		out = append(out, sigLayer{mediaType: string(d.MediaType), payload: payload, annotations: d.Annotations})
	}
	return out, nil
}

// maxPayload bounds what is read of a signature layer: an SBOM
// attestation of a large image is megabytes, not gigabytes.
const maxPayload = 256 << 20

// writeSigImage writes ls as the signature image at tag, as cosign builds
// one: an OCI manifest, uncompressed layers carrying the annotations.
func writeSigImage(ctx context.Context, tag name.Tag, ls []sigLayer, r Remote) error {
	img := mutate.MediaType(empty.Image, types.OCIManifestSchema1)
	img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
	for _, l := range ls {
		var err error
		img, err = mutate.Append(img, mutate.Addendum{
			Layer:       static.NewLayer(l.payload, types.MediaType(l.mediaType)),
			Annotations: l.annotations,
		})
		if err != nil {
			return err
		}
	}
	if err := remote.Write(tag, img, append(r.Options, remote.WithContext(ctx))...); err != nil {
		return fmt.Errorf("writing %s: %w", tag, err)
	}
	return nil
}

func isNotFound(err error) bool {
	var te *transport.Error
	if errors.As(err, &te) {
		if te.StatusCode == http.StatusNotFound {
			return true
		}
		for _, d := range te.Errors {
			if d.Code == transport.ManifestUnknownErrorCode || d.Code == transport.NameUnknownErrorCode {
				return true
			}
		}
	}
	return false
}

// SPDXJSONAttachment is the media type cosign gives an SPDX JSON SBOM it
// attaches (`cosign attach sbom --type spdx --input-format json`).
const SPDXJSONAttachment = "text/spdx+json"

// AttachSBOM stores doc as the SBOM of the image at d under
// sha256-HEX.sbom, cosign's tag scheme for SBOM attachments, which
// `cosign download sbom` reads. The attachment is not signed: with a key,
// the SBOM attestation beside the signature is what a verifier trusts.
func AttachSBOM(ctx context.Context, d name.Digest, doc []byte, mediaType string, r Remote) error {
	return writeSigImage(ctx, tagFor(d, "sbom"), []sigLayer{{mediaType: mediaType, payload: doc}}, r)
}
