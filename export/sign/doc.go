// Package sign signs and verifies what a build makes, in the formats the
// cosign CLI reads: simple-signing payloads and DSSE attestations stored
// under cosign's tag scheme (sha256-HEX.sig, sha256-HEX.att) beside an
// image in its repository, and a bundle file beside a local file.
//
// The crypto is sigstore's own (sigstore/sigstore's signature package and
// go-securesystemslib's encrypted keys, as cosign uses them), so a key
// cosign made signs here as it signs there, ed25519ph included.
package sign
