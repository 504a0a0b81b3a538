package layerimg

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"runtime/debug"
	"slices"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"

	"github.com/layerimg/layerimg/disk/sparse"
	"github.com/layerimg/layerimg/export/provenance"
	"github.com/layerimg/layerimg/export/registry"
	"github.com/layerimg/layerimg/export/sign"
)

// SBOMPredicateType is the predicate type of an SPDX JSON SBOM attestation
// (what `cosign verify-attestation --type spdxjson` looks for).
const SBOMPredicateType = "https://spdx.dev/Document"

// Attested is what the provenance and signing stage made: the manifest's
// "attested" field.
type Attested struct {
	Provenance *AttestedFile `json:"provenance,omitempty"`
	Signed     []Signed      `json:"signed,omitempty"`
}

// AttestedFile is a file written, with its sha256.
type AttestedFile struct {
	Path   string `json:"path"`
	SHA256 string `json:"sha256"`
}

// Signed is one signature made: of a pushed manifest (Ref, stored under
// cosign's tag scheme) or of a local file (File, with its Bundle beside).
type Signed struct {
	Ref    string `json:"ref,omitempty"`
	File   string `json:"file,omitempty"`
	Bundle string `json:"bundle,omitempty"`
	// Kind is "signature", or "attestation" with its PredicateType.
	Kind          string `json:"kind"`
	PredicateType string `json:"predicate_type,omitempty"`
}

// pushed is a manifest this build pushed.
type pushed struct{ ref, digest string }

// pushedManifests are the manifests --push (or, in a multi-platform
// build, this platform's image by digest), --push-disk and
// --disk-artifact pushed.
func (b *buildRun) pushedManifests() []pushed {
	var out []pushed
	if b.o.Push != "" {
		out = append(out, pushed{b.o.Push, b.res.Image})
	}
	if b.pushedImage != "" {
		out = append(out, pushed{b.pushedImage, b.res.Image})
	}
	if b.o.PushDisk != "" {
		if p, ok := b.res.Published[registry.ContainerDiskTarget].(*registry.Pushed); ok {
			out = append(out, pushed{b.o.PushDisk, p.Digest})
		}
	}
	if b.o.DiskArtifact != "" && b.res.DiskArtifactDigest != "" {
		out = append(out, pushed{b.o.DiskArtifact, b.res.DiskArtifactDigest})
	}
	return out
}

// attest writes the provenance (--provenance) and signs what the build
// made and pushed (--sign-key): each pushed manifest gets a signature and
// the provenance and SBOM attestations, each local disk file, the
// provenance file and the SBOM file a bundle beside it.
func (b *buildRun) attest(ctx context.Context, started time.Time) error {
	o := b.o
	sbom, sbomFile := sbomInput(b.res, o)
	if o.Provenance == "" && o.Signer == nil {
		return nil
	}
	defer stage(ctx, "attest")()
	subjects, err := b.subjects()
	if err != nil {
		return fmt.Errorf("provenance: %w", err)
	}
	st, err := b.provenance(subjects, started).Marshal()
	if err != nil {
		return fmt.Errorf("provenance: %w", err)
	}
	att := &Attested{}
	b.res.Attested = att
	if o.Provenance != "" {
		if err := writeFile(o.Provenance, st); err != nil {
			return fmt.Errorf("--provenance: %w", err)
		}
		sum := sha256.Sum256(st)
		att.Provenance = &AttestedFile{Path: o.Provenance, SHA256: hex.EncodeToString(sum[:])}
		o.Log.Info("wrote provenance", "file", o.Provenance)
	}
	if o.Signer == nil {
		return nil
	}
	var sbomSt []byte
	if sbom != nil {
		if sbomSt, err = statement(subjects, SBOMPredicateType, sbom); err != nil {
			return fmt.Errorf("SBOM attestation: %w", err)
		}
	}
	r := sign.Remote{Options: b.reg.Options(ctx)}
	for _, p := range b.pushedManifests() {
		ref, err := b.reg.ParseRef(p.ref)
		if err != nil {
			return fmt.Errorf("signing %s: %w", p.ref, err)
		}
		d := ref.Context().Digest(p.digest)
		if err := sign.SignImage(ctx, o.Signer, d, r); err != nil {
			return fmt.Errorf("signing %s: %w", p.ref, err)
		}
		att.Signed = append(att.Signed, Signed{Ref: d.String(), Kind: "signature"})
		for _, s := range []struct {
			pt string
			st []byte
		}{{provenance.PredicateType, st}, {SBOMPredicateType, sbomSt}} {
			if s.st == nil {
				continue
			}
			if err := sign.Attest(ctx, o.Signer, d, s.st, r); err != nil {
				return fmt.Errorf("attesting %s: %w", p.ref, err)
			}
			att.Signed = append(att.Signed, Signed{Ref: d.String(), Kind: "attestation", PredicateType: s.pt})
		}
		o.Log.Info("signed", "ref", d.String())
	}
	files := map[string]string{} // path: sha256 when known
	if b.res.Disk != nil {
		for _, f := range b.res.Disk.Files {
			files[f.Path] = f.SHA256
		}
	}
	if o.Provenance != "" {
		files[o.Provenance] = att.Provenance.SHA256
	}
	if sbomFile != "" {
		files[sbomFile] = ""
	}
	for _, path := range slices.Sorted(func(yield func(string) bool) {
		for p := range files {
			if !yield(p) {
				return
			}
		}
	}) {
		bundle, err := sign.SignFile(ctx, o.Signer, path, files[path])
		if err != nil {
			return err
		}
		att.Signed = append(att.Signed, Signed{File: path, Bundle: bundle, Kind: "signature"})
		o.Log.Info("signed", "file", path, "bundle", bundle)
	}
	return nil
}

// subjects are what the build made: the image (named by --push, else by
// the recipe), each disk file, the containerDisk and the disk artifact.
func (b *buildRun) subjects() ([]provenance.Subject, error) {
	dg := func(d string) map[string]string {
		alg, hex, _ := strings.Cut(d, ":")
		return map[string]string{alg: hex}
	}
	image := b.r.Name
	if b.o.Push != "" {
		image = repoName(b.o.Push)
	}
	out := []provenance.Subject{{Name: image, Digest: dg(b.res.Image)}}
	for _, p := range b.pushedManifests() {
		if p.ref != b.o.Push {
			out = append(out, provenance.Subject{Name: repoName(p.ref), Digest: dg(p.digest)})
		}
	}
	if b.res.Disk != nil {
		for f, df := range b.res.Disk.Files {
			if df.SHA256 == "" {
				h, err := sparse.DigestPrefix(df.Path, -1)
				if err != nil {
					return nil, fmt.Errorf("hashing %s disk %s: %w", f, df.Path, err)
				}
				df.SHA256 = h
				b.res.Disk.Files[f] = df
			}
			out = append(out, provenance.Subject{Name: filepath.Base(df.Path), Digest: map[string]string{"sha256": df.SHA256}})
		}
	}
	return out, nil
}

// repoName is ref without its tag or digest: a subject's name, its digest
// being beside it.
func repoName(ref string) string {
	if r, err := name.ParseReference(ref, name.WeakValidation); err == nil {
		return r.Context().Name()
	}
	return ref
}

// provenance is the build's SLSA provenance about subjects.
func (b *buildRun) provenance(subjects []provenance.Subject, started time.Time) provenance.Statement {
	r, o := b.r, b.o
	src := provenance.DetectSource(r.Dir, os.Getenv)
	recipe := provenance.ResourceDescriptor{URI: src.Rel(r.File)}
	if data, err := os.ReadFile(r.File); err == nil {
		sum := sha256.Sum256(data)
		recipe.Digest = map[string]string{"sha256": hex.EncodeToString(sum[:])}
	}
	ext := provenance.ExternalParameters{Recipe: recipe, Args: r.Args, Platform: r.Platform, Source: src.Descriptor()}
	internal := map[string]any{"compression": string(o.Compression), "sourceDateEpoch": o.Epoch}
	if b.res.Disk != nil {
		internal["diskFormats"] = slices.Sorted(func(yield func(string) bool) {
			for f := range b.res.Disk.Files {
				if !yield(f) {
					return
				}
			}
		})
		internal["uniqueIds"] = o.UniqueIDs
	}
	var deps []provenance.ResourceDescriptor
	base := provenance.ResourceDescriptor{Name: "base", URI: b.res.Base.Ref}
	if d, err := b.base.Image.Digest(); err == nil {
		base.Digest = map[string]string{d.Algorithm: d.Hex}
	}
	if in, ok := b.record["bootstrap"]; ok {
		// The bootstrap's key input: suite, mirror and (when it records it)
		// the mirror's state, the very things that made the base.
		base.URI = "bootstrap:" + b.res.Base.Ref
		base.Annotations = map[string]any{"cacheKey": b.res.Base.Key, "keyInput": in}
	}
	deps = append(deps, base)
	for _, sp := range b.res.Steps {
		if sp.Key == "" {
			continue
		}
		d := provenance.ResourceDescriptor{Name: fmt.Sprintf("step %d: %s", sp.Index+1, sp.Name),
			Annotations: map[string]any{"kind": sp.Kind, "cacheKey": sp.Key, "diffID": sp.DiffID}}
		if alg, hex, ok := strings.Cut(sp.Layer, ":"); ok {
			d.Digest = map[string]string{alg: hex}
		}
		deps = append(deps, d)
	}
	if b.res.Disk != nil && b.res.Disk.Layer != "" {
		alg, hex, _ := strings.Cut(b.res.Disk.Layer, ":")
		deps = append(deps, provenance.ResourceDescriptor{Name: "disk generated layer", Digest: map[string]string{alg: hex}})
	}
	finished := time.Now().UTC()
	started = started.UTC()
	md := provenance.Metadata{StartedOn: &started, FinishedOn: &finished}
	if src != nil {
		md.InvocationID = src.InvocationID
	}
	return provenance.New(subjects, provenance.Predicate{
		BuildDefinition: provenance.BuildDefinition{BuildType: provenance.BuildType, ExternalParameters: ext,
			InternalParameters: internal, ResolvedDependencies: deps},
		RunDetails: provenance.RunDetails{
			Builder:  provenance.Builder{ID: provenance.BuilderID, Version: map[string]string{"layerimg": Version()}},
			Metadata: md,
		},
	})
}

// statement is an in-toto statement of predicate (JSON) about subjects.
func statement(subjects []provenance.Subject, predicateType string, predicate []byte) ([]byte, error) {
	if !json.Valid(predicate) {
		return nil, fmt.Errorf("the %s predicate is not JSON", predicateType)
	}
	var buf bytes.Buffer
	if err := json.Compact(&buf, predicate); err != nil {
		return nil, err
	}
	return json.Marshal(sign.Statement{Type: sign.StatementType, Subject: toSignSubjects(subjects),
		PredicateType: predicateType, Predicate: buf.Bytes()})
}

func toSignSubjects(ss []provenance.Subject) []sign.Subject {
	out := make([]sign.Subject, len(ss))
	for i, s := range ss {
		out[i] = sign.Subject{Name: s.Name, Digest: s.Digest}
	}
	return out
}

// Version is layerimg's version: its module version, else the VCS
// revision it was built from, else "devel".
func Version() string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "devel"
	}
	if v := bi.Main.Version; v != "" && v != "(devel)" {
		return v
	}
	for _, s := range bi.Settings {
		if s.Key == "vcs.revision" {
			return "devel+" + s.Value
		}
	}
	return "devel"
}
