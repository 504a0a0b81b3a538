package sign

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/sigstore/sigstore/pkg/signature"
)

// ImageReport is what VerifyImage found.
type ImageReport struct {
	Digest name.Digest
	// Signatures is how many signatures of the image verify with the key.
	Signatures int
	// Attestations are the attestations that verify, in stored order.
	Attestations []Attestation
	// Ignored counts the signatures and attestations stored for the image
	// that do not verify with the key (another key's, or tampered).
	Ignored int
}

// Attestation is one verified attestation.
type Attestation struct {
	PredicateType string
	Statement     []byte
}

// ErrNoSignature is returned when an image has no signature at all.
var ErrNoSignature = errors.New("no signature")

// VerifyImage checks the image at ref as `cosign verify` does: some
// signature in sha256-HEX.sig verifies with v and names the image's
// digest. Its attestations (sha256-HEX.att), when there are any, must
// include one that verifies with v, and each verified one must name the
// image among its subjects.
func VerifyImage(ctx context.Context, v signature.Verifier, ref name.Reference, r Remote) (*ImageReport, error) {
	d, ok := ref.(name.Digest)
	if !ok {
		desc, err := remote.Head(ref, append(r.Options, remote.WithContext(ctx))...)
		if err != nil {
			return nil, fmt.Errorf("resolving %s: %w", ref, err)
		}
		d = ref.Context().Digest(desc.Digest.String())
	}
	rep := &ImageReport{Digest: d}
	sigs, err := readSigImage(ctx, tagFor(d, "sig"), r)
	if err != nil {
		return nil, err
	}
	if len(sigs) == 0 {
		return nil, fmt.Errorf("%s: %w (no %s in the repository)", d, ErrNoSignature, tagFor(d, "sig").TagStr())
	}
	var why error
	for _, l := range sigs {
		if err := checkSimpleSigning(ctx, v, l, d); err != nil {
			why = err
			rep.Ignored++
			continue
		}
		rep.Signatures++
	}
	if rep.Signatures == 0 {
		return nil, fmt.Errorf("%s: none of its %d signatures verifies: %w", d, len(sigs), why)
	}
	atts, err := readSigImage(ctx, tagFor(d, "att"), r)
	if err != nil {
		return nil, err
	}
	for _, l := range atts {
		a, err := checkAttestation(ctx, v, l, d)
		if err != nil {
			why = err
			rep.Ignored++
			continue
		}
		rep.Attestations = append(rep.Attestations, a)
	}
	if len(atts) > 0 && len(rep.Attestations) == 0 {
		return nil, fmt.Errorf("%s: none of its %d attestations verifies: %w", d, len(atts), why)
	}
	return rep, nil
}

func checkSimpleSigning(ctx context.Context, v signature.Verifier, l sigLayer, d name.Digest) error {
	if l.mediaType != SimpleSigningMediaType {
		return fmt.Errorf("a layer of media type %q, expected %q", l.mediaType, SimpleSigningMediaType)
	}
	if !l.verifies(ctx, v) {
		return errBadSignature
	}
	var p simpleSigning
	if err := json.Unmarshal(l.payload, &p); err != nil {
		return fmt.Errorf("signed payload: %w", err)
	}
	if p.Critical.Image.DockerManifestDigest != d.DigestStr() {
		return fmt.Errorf("the signed payload names %q, not the image's digest", p.Critical.Image.DockerManifestDigest)
	}
	return nil
}

func checkAttestation(ctx context.Context, v signature.Verifier, l sigLayer, d name.Digest) (Attestation, error) {
	if l.mediaType != DSSEMediaType {
		return Attestation{}, fmt.Errorf("a layer of media type %q, expected %q", l.mediaType, DSSEMediaType)
	}
	payload, err := openEnvelope(ctx, v, l.payload)
	if err != nil {
		return Attestation{}, err
	}
	var st Statement
	if err := json.Unmarshal(payload, &st); err != nil {
		return Attestation{}, fmt.Errorf("attested statement: %w", err)
	}
	if !hasSubject(st, d.DigestStr()) {
		return Attestation{}, fmt.Errorf("the %s attestation's subjects do not include %s", st.PredicateType, d.DigestStr())
	}
	return Attestation{PredicateType: st.PredicateType, Statement: payload}, nil
}
