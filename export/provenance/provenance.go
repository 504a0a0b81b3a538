// Package provenance writes SLSA v1 provenance for a build: an in-toto
// Statement v1 whose predicate says what was built from what (the recipe,
// its args, the base, every step's cache key and layer) and by whom (the
// builder, the source checkout, the CI run).
//
// The statement is plain structs rather than the in-toto/attestation
// protobuf types: encoding/json of structs gives stable bytes, so the same
// build writes the same buildDefinition byte for byte.
package provenance

import (
	"encoding/json"
	"sort"
	"time"
)

// The statement's and the predicate's types.
const (
	StatementType = "https://in-toto.io/Statement/v1"
	PredicateType = "https://slsa.dev/provenance/v1"
	// BuildType names the meaning of externalParameters and
	// internalParameters below (docs/provenance.md).
	BuildType = "https://github.com/layerimg/layerimg/blob/main/docs/provenance.md#build-type-v1"
	// BuilderID is layerimg, wherever it runs; the CI run, when there is
	// one, is in the metadata's invocationId.
	BuilderID = "https://github.com/layerimg/layerimg"
)

// Statement is an in-toto Statement v1 with a SLSA v1 predicate.
type Statement struct {
	Type          string    `json:"_type"`
	Subject       []Subject `json:"subject"`
	PredicateType string    `json:"predicateType"`
	Predicate     Predicate `json:"predicate"`
}

// Subject is one artifact the build made.
type Subject struct {
	Name   string            `json:"name"`
	Digest map[string]string `json:"digest"`
}

// Predicate is SLSA provenance v1.
type Predicate struct {
	BuildDefinition BuildDefinition `json:"buildDefinition"`
	RunDetails      RunDetails      `json:"runDetails"`
}

// BuildDefinition is what the build was asked to do: the same inputs give
// the same bytes here.
type BuildDefinition struct {
	BuildType            string               `json:"buildType"`
	ExternalParameters   ExternalParameters   `json:"externalParameters"`
	InternalParameters   map[string]any       `json:"internalParameters,omitempty"`
	ResolvedDependencies []ResourceDescriptor `json:"resolvedDependencies,omitempty"`
}

// ExternalParameters are the inputs the user controls. Secrets are not
// among them: a step's secrets are host files bound at run time, never
// part of a key, a layer or this statement.
type ExternalParameters struct {
	Recipe   ResourceDescriptor `json:"recipe"`
	Args     map[string]string  `json:"args,omitempty"`
	Platform string             `json:"platform"`
	// Source is the checkout the recipe was built from, when known.
	Source *ResourceDescriptor `json:"source,omitempty"`
}

// ResourceDescriptor is in-toto's ResourceDescriptor.
type ResourceDescriptor struct {
	Name        string            `json:"name,omitempty"`
	URI         string            `json:"uri,omitempty"`
	Digest      map[string]string `json:"digest,omitempty"`
	Annotations map[string]any    `json:"annotations,omitempty"`
}

// RunDetails is this particular run.
type RunDetails struct {
	Builder  Builder  `json:"builder"`
	Metadata Metadata `json:"metadata"`
}

// Builder is what ran the build.
type Builder struct {
	ID      string            `json:"id"`
	Version map[string]string `json:"version,omitempty"`
}

// Metadata is the run's id and times. The times are the real ones: they
// are the one part of the statement that differs between two runs of the
// same build.
type Metadata struct {
	InvocationID string     `json:"invocationId,omitempty"`
	StartedOn    *time.Time `json:"startedOn,omitempty"`
	FinishedOn   *time.Time `json:"finishedOn,omitempty"`
}

// New is a statement of predicate p about subjects, sorted by name so
// that the order does not depend on map iteration.
func New(subjects []Subject, p Predicate) Statement {
	sort.SliceStable(subjects, func(i, j int) bool { return subjects[i].Name < subjects[j].Name })
	return Statement{Type: StatementType, Subject: subjects, PredicateType: PredicateType, Predicate: p}
}

// Marshal is the statement's JSON, indented for people who read it.
func (s Statement) Marshal() ([]byte, error) {
	b, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return nil, err
	}
	return append(b, '\n'), nil
}
