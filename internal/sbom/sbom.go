// Package sbom writes an SPDX 2.3 JSON SBOM of an image's final root
// filesystem: its dpkg packages (with source package, purl and the
// license of a machine-readable copyright file) and the image, its base
// and its layers with their digests. It reads the image through its
// flattened tree (rootfs.Tree), never from the host: no root, no unpack.
//
// The package is internal: the SPDX document is the contract, not this
// Go API, which follows what the build needs.
package sbom

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"slices"
	"strings"
	"time"

	"github.com/package-url/packageurl-go"
	spdxjson "github.com/spdx/tools-golang/json"
	"github.com/spdx/tools-golang/spdx/v2/common"
	spdx "github.com/spdx/tools-golang/spdx/v2/v2_3"
)

// FS is the image's final tree, read-only. *rootfs.Tree is one.
type FS interface {
	Stat(name string) (fs.FileInfo, error)
	ReadDir(name string) ([]fs.DirEntry, error)
	// ReadFiles hands out the content of the files named, reading each
	// layer once.
	ReadFiles(ctx context.Context, names []string, fn func(name string, data []byte) error) error
}

// Layer is one layer of the image, bottom up.
type Layer struct {
	Name   string // what made it: "base layer 1 of 1", "step 2 (identity)"
	Digest string // sha256:... of the blob
	DiffID string // sha256:... of the uncompressed tar
	Size   int64
	Base   bool // the base image's
}

// Image is the image the SBOM describes.
type Image struct {
	Name       string // the recipe's name
	Digest     string // the image manifest's digest: sha256:...
	BaseRef    string // "debian:12", "bootstrap:debian/bookworm"
	BaseDigest string // the base manifest's digest, when pulled by one
	Layers     []Layer
}

// Options set what is not read from the image.
type Options struct {
	Created time.Time // SOURCE_DATE_EPOCH
	Tool    string    // the creator, "layerimg" by default
}

// Result is the SPDX document and what the manifest records of it.
type Result struct {
	JSON     []byte
	Packages int // dpkg packages listed
}

const (
	statusFile = "var/lib/dpkg/status"
	docDir     = "usr/share/doc"
	// maxFile bounds what is read into memory: dpkg's status of a large
	// desktop is about 5 MiB, copyright files are kilobytes.
	maxFile = 64 << 20
)

// Generate reads fsys and writes the SBOM. An image without dpkg gets an
// SBOM of its layers alone.
func Generate(ctx context.Context, fsys FS, img Image, o Options) (*Result, error) {
	if o.Tool == "" {
		o.Tool = "layerimg"
	}
	files, err := readInputs(ctx, fsys)
	if err != nil {
		return nil, err
	}
	var debs []Deb
	if data, ok := files[statusFile]; ok {
		if debs, err = parseStatus(data); err != nil {
			return nil, fmt.Errorf("sbom: /%s: %w", statusFile, err)
		}
	}
	distro := ""
	for _, p := range []string{"etc/os-release", "usr/lib/os-release"} {
		if data, ok := files[p]; ok {
			if id, v := osRelease(data); id != "" && v != "" {
				distro = id + "-" + v
			}
			break
		}
	}
	slices.SortFunc(debs, func(a, b Deb) int {
		return cmp3(a.Name, b.Name, a.Arch, b.Arch, a.Version, b.Version)
	})
	doc := newDocument(img, o)
	imageID := common.ElementID("Image")
	ids := map[common.ElementID]bool{"DOCUMENT": true, imageID: true}
	unique := func(id string) common.ElementID {
		e := common.ElementID(id)
		for n := 2; ids[e]; n++ {
			e = common.ElementID(fmt.Sprintf("%s-%d", id, n))
		}
		ids[e] = true
		return e
	}
	contains := func(a, b common.ElementID) {
		doc.Relationships = append(doc.Relationships, &spdx.Relationship{
			RefA: common.MakeDocElementID("", string(a)), RefB: common.MakeDocElementID("", string(b)), Relationship: common.TypeRelationshipContains})
	}
	// The base and the layers.
	baseID := common.ElementID("")
	if img.BaseRef != "" {
		baseID = unique("Base")
		p := &spdx.Package{PackageName: img.BaseRef, PackageSPDXIdentifier: baseID, PackageDownloadLocation: "NOASSERTION",
			PrimaryPackagePurpose: "CONTAINER", PackageComment: "the base image"}
		if h, ok := strings.CutPrefix(img.BaseDigest, "sha256:"); ok {
			p.PackageVersion = img.BaseDigest
			p.PackageChecksums = []common.Checksum{{Algorithm: common.SHA256, Value: h}}
		}
		doc.Packages = append(doc.Packages, p)
		contains(imageID, baseID)
	}
	for i, l := range img.Layers {
		id := unique(fmt.Sprintf("Layer-%d", i+1))
		p := &spdx.Package{PackageName: l.Name, PackageSPDXIdentifier: id, PackageDownloadLocation: "NOASSERTION",
			PackageVersion: l.Digest, PrimaryPackagePurpose: "ARCHIVE",
			PackageComment: fmt.Sprintf("OCI layer %d of %d: %d bytes, diff_id %s", i+1, len(img.Layers), l.Size, l.DiffID)}
		if h, ok := strings.CutPrefix(l.Digest, "sha256:"); ok {
			p.PackageChecksums = []common.Checksum{{Algorithm: common.SHA256, Value: h}}
		}
		doc.Packages = append(doc.Packages, p)
		if l.Base && baseID != "" {
			contains(baseID, id)
		} else {
			contains(imageID, id)
		}
	}
	// The dpkg packages.
	refs := map[string]string{}
	for _, d := range debs {
		id := unique("deb-" + idString(d.Name) + "-" + idString(d.Arch))
		lic := "NOASSERTION"
		if data, ok := files[path.Join(docDir, d.Name, "copyright")]; ok {
			if l := licenses(data, refs); l != "" {
				lic = l
			}
		}
		p := &spdx.Package{PackageName: d.Name, PackageSPDXIdentifier: id, PackageVersion: d.Version,
			PackageDownloadLocation: "NOASSERTION",
			PackageLicenseConcluded: "NOASSERTION", PackageLicenseDeclared: lic, PackageCopyrightText: "NOASSERTION",
			PackageExternalReferences: []*spdx.PackageExternalReference{{Category: common.CategoryPackageManager, RefType: "purl", Locator: purl(d, distro)}}}
		if d.Maintainer != "" {
			p.PackageSupplier = supplier(d.Maintainer)
		}
		if d.Source != "" {
			v := d.SourceVersion
			if v == "" {
				v = d.Version
			}
			p.PackageSourceInfo = fmt.Sprintf("built from the source package %s %s", d.Source, v)
		}
		doc.Packages = append(doc.Packages, p)
		contains(imageID, id)
	}
	for _, id := range slices.Sorted(mapKeys(refs)) {
		doc.OtherLicenses = append(doc.OtherLicenses, &spdx.OtherLicense{LicenseIdentifier: id, ExtractedText: refs[id],
			LicenseName: strings.TrimPrefix(id, "LicenseRef-"), LicenseComment: "a license name from a Debian copyright file that is not on the SPDX list"})
	}
	var buf bytes.Buffer
	if err := spdxjson.Write(doc, &buf, spdxjson.Indent("  ")); err != nil {
		return nil, fmt.Errorf("sbom: %w", err)
	}
	return &Result{JSON: buf.Bytes(), Packages: len(debs)}, nil
}

func newDocument(img Image, o Options) *spdx.Document {
	hex := strings.TrimPrefix(img.Digest, "sha256:")
	doc := &spdx.Document{
		SPDXVersion: spdx.Version, DataLicense: spdx.DataLicense, SPDXIdentifier: "DOCUMENT",
		DocumentName: img.Name + "@" + img.Digest,
		// Derived from the image: the same image has the same document.
		DocumentNamespace: "https://github.com/layerimg/layerimg/spdx/" + idString(img.Name) + "/sha256-" + hex,
		CreationInfo: &spdx.CreationInfo{Created: o.Created.UTC().Format(time.RFC3339),
			Creators: []common.Creator{{CreatorType: "Tool", Creator: o.Tool}}},
	}
	p := &spdx.Package{PackageName: img.Name, PackageSPDXIdentifier: "Image", PackageVersion: img.Digest,
		PackageDownloadLocation: "NOASSERTION", PrimaryPackagePurpose: "CONTAINER", PackageComment: "the image's OCI manifest"}
	if hex != "" {
		p.PackageChecksums = []common.Checksum{{Algorithm: common.SHA256, Value: hex}}
	}
	doc.Packages = append(doc.Packages, p)
	doc.Relationships = append(doc.Relationships, &spdx.Relationship{RefA: common.MakeDocElementID("", "DOCUMENT"),
		RefB: common.MakeDocElementID("", "Image"), Relationship: common.TypeRelationshipDescribe})
	return doc
}

// readInputs reads, in one pass over the layers, dpkg's status, the
// os-release file and every /usr/share/doc/*/copyright.
func readInputs(ctx context.Context, fsys FS) (map[string][]byte, error) {
	var names []string
	add := func(p string) error {
		fi, err := fsys.Stat(p)
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("sbom: %w", err)
		}
		if !fi.Mode().IsRegular() {
			return nil
		}
		if fi.Size() > maxFile {
			return fmt.Errorf("sbom: /%s is %d bytes, more than the %d read", p, fi.Size(), maxFile)
		}
		names = append(names, p)
		return nil
	}
	for _, p := range []string{statusFile, "etc/os-release", "usr/lib/os-release"} {
		if err := add(p); err != nil {
			return nil, err
		}
	}
	ents, err := fsys.ReadDir(docDir)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("sbom: %w", err)
	}
	for _, e := range ents {
		// A doc dir may be a symlink to another package's (Stat follows
		// it); a missing or odd copyright file is skipped, not an error.
		p := path.Join(docDir, e.Name(), "copyright")
		if err := add(p); err != nil {
			var pe *fs.PathError
			if errors.As(err, &pe) {
				continue
			}
			return nil, err
		}
	}
	files := map[string][]byte{}
	err = fsys.ReadFiles(ctx, names, func(name string, data []byte) error {
		files[name] = data
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("sbom: %w", err)
	}
	return files, nil
}

// purl is the package's Package URL (the purl spec's deb type).
func purl(d Deb, distro string) string {
	q := packageurl.Qualifiers{{Key: "arch", Value: d.Arch}}
	if distro != "" {
		q = append(q, packageurl.Qualifier{Key: "distro", Value: distro})
	}
	if d.Source != "" && (d.Source != d.Name || d.SourceVersion != "") {
		up := d.Source
		if d.SourceVersion != "" {
			up += "@" + d.SourceVersion
		}
		q = append(q, packageurl.Qualifier{Key: "upstream", Value: up})
	}
	return packageurl.NewPackageURL("deb", "debian", d.Name, d.Version, q, "").ToString()
}

// idString keeps what an SPDX id allows: letters, digits, "." and "-".
func idString(s string) string {
	return strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '.', r == '-':
			return r
		}
		return '-'
	}, s)
}

func cmp3(a1, b1, a2, b2, a3, b3 string) int {
	if c := strings.Compare(a1, b1); c != 0 {
		return c
	}
	if c := strings.Compare(a2, b2); c != 0 {
		return c
	}
	return strings.Compare(a3, b3)
}

func mapKeys(m map[string]string) func(func(string) bool) {
	return func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

// supplier turns a Maintainer field ("Name <email>") into SPDX's agent
// syntax ("Person: Name (email)"); a team is an Organization.
func supplier(m string) *common.Supplier {
	name, email, _ := strings.Cut(m, "<")
	s := strings.TrimSpace(name)
	if email = strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(email), ">")); email != "" {
		s += " (" + email + ")"
	}
	typ := "Person"
	lower := strings.ToLower(m)
	for _, w := range []string{"team", "maintainers", "group", "project", "@lists."} {
		if strings.Contains(lower, w) {
			typ = "Organization"
		}
	}
	return &common.Supplier{Supplier: s, SupplierType: typ}
}
