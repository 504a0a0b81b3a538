package sbom

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"strings"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/santhosh-tekuri/jsonschema/v6"

	"github.com/layerimg/layerimg/rootfs"
)

// memLayer is an uncompressed tar held in memory: what a Tree reads.
type memLayer []byte

func (m memLayer) Uncompressed() (io.ReadCloser, error) {
	return io.NopCloser(bytes.NewReader(m)), nil
}

type entry struct {
	name, body, link string
	dir              bool
}

func tarOf(t *testing.T, es ...entry) memLayer {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range es {
		h := &tar.Header{Name: e.name, Mode: 0o644, Typeflag: tar.TypeReg, Size: int64(len(e.body))}
		switch {
		case e.dir:
			h.Typeflag, h.Mode, h.Size = tar.TypeDir, 0o755, 0
		case e.link != "":
			h.Typeflag, h.Linkname, h.Size = tar.TypeSymlink, e.link, 0
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write([]byte(e.body)); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

const status = `Package: base-files
Essential: yes
Status: install ok installed
Priority: required
Maintainer: Santiago Vila <sanvila@debian.org>
Architecture: amd64
Multi-Arch: foreign
Version: 12.4+deb12u8
Description: Debian base system miscellaneous files
 This package contains the basic filesystem hierarchy.
 .
 It also contains a continuation line with: a colon.

Package: libssl3
Status: install ok installed
Maintainer: Debian OpenSSL Team <pkg-openssl-devel@alioth-lists.debian.net>
Architecture: amd64
Source: openssl
Version: 3.0.15-1~deb12u1

Package: libgcc-s1
Status: install ok installed
Architecture: amd64
Source: gcc-12 (12.2.0-14)
Version: 1:12.2.0-14

Package: removed-thing
Status: deinstall ok config-files
Architecture: amd64
Version: 1.0

Package: held
Status: hold ok installed
Architecture: all
Version: 2.0
`

const dep5 = `Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: OpenSSL

Files: *
Copyright: 1998-2024 The OpenSSL Project
License: Apache-2.0

Files: crypto/foo.c
Copyright: someone
License: GPL-2+ or Expat

Files: debian/*
Copyright: the packagers
License: Custom-Thing
 Do what you like.

License: Custom-Thing
 Do what you like, says the standalone paragraph.
`

// image is a two-layer image: the base with dpkg's files, a step that
// adds a copyright file through a symlinked doc dir and replaces
// os-release.
func image(t *testing.T) *rootfs.Tree {
	t.Helper()
	base := tarOf(t,
		entry{name: "etc/", dir: true},
		entry{name: "etc/os-release", link: "../usr/lib/os-release"},
		entry{name: "usr/lib/os-release", body: "PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nID=debian\nVERSION_ID=\"12\"\n"},
		entry{name: "usr/share/doc/base-files/copyright", body: "This is the Debian prepackaged version of base-files.\nIt is under the GPL.\n"},
		entry{name: "usr/share/doc/libssl3/copyright", body: dep5},
		entry{name: "usr/share/doc/held/copyright", body: "Format: http://www.debian.org/doc/packaging-manuals/copyright-format/1.0/\n\nFiles: *\nLicense: LGPL-2.1+ with OpenSSL exception\n"},
		entry{name: "var/lib/dpkg/status", body: status},
	)
	step := tarOf(t,
		entry{name: "usr/share/doc/gcc-12-base/copyright", body: "Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/\n\nFiles: *\nLicense: GPL-3+ with GCC-exception-3.1\n"},
		entry{name: "usr/share/doc/libgcc-s1", link: "gcc-12-base"},
	)
	tree := rootfs.NewTree()
	ctx := context.Background()
	if err := tree.Append(ctx, "base", base); err != nil {
		t.Fatal(err)
	}
	if err := tree.Append(ctx, "step", step); err != nil {
		t.Fatal(err)
	}
	return tree
}

var testImage = Image{Name: "demo", Digest: "sha256:" + strings.Repeat("ab", 32), BaseRef: "bootstrap:debian/bookworm",
	Layers: []Layer{
		{Name: "base layer 1 of 1", Digest: "sha256:" + strings.Repeat("01", 32), DiffID: "sha256:" + strings.Repeat("02", 32), Size: 100, Base: true},
		{Name: "step 1 (docs)", Digest: "sha256:" + strings.Repeat("03", 32), DiffID: "sha256:" + strings.Repeat("04", 32), Size: 10},
	}}

type doc struct {
	Namespace    string `json:"documentNamespace"`
	CreationInfo struct {
		Created string `json:"created"`
	} `json:"creationInfo"`
	Packages []struct {
		ID        string `json:"SPDXID"`
		Name      string `json:"name"`
		Version   string `json:"versionInfo"`
		Declared  string `json:"licenseDeclared"`
		Source    string `json:"sourceInfo"`
		Purpose   string `json:"primaryPackagePurpose"`
		Supplier  string `json:"supplier"`
		Checksums []struct {
			Algorithm string `json:"algorithm"`
			Value     string `json:"checksumValue"`
		} `json:"checksums"`
		Refs []struct {
			Type    string `json:"referenceType"`
			Locator string `json:"referenceLocator"`
		} `json:"externalRefs"`
	} `json:"packages"`
	Relationships []struct {
		A    string `json:"spdxElementId"`
		B    string `json:"relatedSpdxElement"`
		Type string `json:"relationshipType"`
	} `json:"relationships"`
	Extracted []struct {
		ID   string `json:"licenseId"`
		Text string `json:"extractedText"`
	} `json:"hasExtractedLicensingInfos"`
}

func TestGenerate(t *testing.T) {
	ctx := context.Background()
	created := time.Unix(1700000000, 0)
	res, err := Generate(ctx, image(t), testImage, Options{Created: created})
	if err != nil {
		t.Fatal(err)
	}
	if res.Packages != 4 {
		t.Errorf("Packages = %d, want 4 (the config-files one is not installed)", res.Packages)
	}
	Validate(t, res.JSON)
	var d doc
	if err := json.Unmarshal(res.JSON, &d); err != nil {
		t.Fatal(err)
	}
	if d.CreationInfo.Created != "2023-11-14T22:13:20Z" {
		t.Errorf("created = %s, want SOURCE_DATE_EPOCH's time", d.CreationInfo.Created)
	}
	if !strings.HasSuffix(d.Namespace, "/demo/sha256-"+strings.Repeat("ab", 32)) {
		t.Errorf("namespace %s is not derived from the image digest", d.Namespace)
	}
	type want struct{ version, license, purl, source, supplier string }
	wants := map[string]want{
		"base-files": {"12.4+deb12u8", "NOASSERTION", "pkg:deb/debian/base-files@12.4%2Bdeb12u8?arch=amd64&distro=debian-12", "", "Person: Santiago Vila (sanvila@debian.org)"},
		"libssl3": {"3.0.15-1~deb12u1", "Apache-2.0 AND (GPL-2.0-or-later OR MIT) AND LicenseRef-Custom-Thing",
			"pkg:deb/debian/libssl3@3.0.15-1~deb12u1?arch=amd64&distro=debian-12&upstream=openssl", "built from the source package openssl 3.0.15-1~deb12u1",
			"Organization: Debian OpenSSL Team (pkg-openssl-devel@alioth-lists.debian.net)"},
		"libgcc-s1": {"1:12.2.0-14", "GPL-3.0-or-later WITH GCC-exception-3.1",
			"pkg:deb/debian/libgcc-s1@1:12.2.0-14?arch=amd64&distro=debian-12&upstream=gcc-12%4012.2.0-14", "built from the source package gcc-12 12.2.0-14", ""},
		"held": {"2.0", "LicenseRef-LGPL-2.1-or-later-with-OpenSSL-exception", "pkg:deb/debian/held@2.0?arch=all&distro=debian-12", "", ""},
	}
	seen := map[string]bool{}
	for _, p := range d.Packages {
		w, ok := wants[p.Name]
		if !ok {
			continue
		}
		seen[p.Name] = true
		if p.Version != w.version || p.Declared != w.license || p.Source != w.source || p.Supplier != w.supplier {
			t.Errorf("%s: version %q license %q source %q supplier %q, want %q %q %q %q", p.Name, p.Version, p.Declared, p.Source, p.Supplier, w.version, w.license, w.source, w.supplier)
		}
		if len(p.Refs) != 1 || p.Refs[0].Type != "purl" || p.Refs[0].Locator != w.purl {
			t.Errorf("%s: refs %+v, want purl %s", p.Name, p.Refs, w.purl)
		}
	}
	if len(seen) != len(wants) {
		t.Errorf("packages seen %v, want all of %v", seen, wants)
	}
	// The image, the base and the layers, with their digests.
	rel := map[string]bool{}
	for _, r := range d.Relationships {
		rel[r.A+" "+r.Type+" "+r.B] = true
	}
	for _, r := range []string{"SPDXRef-DOCUMENT DESCRIBES SPDXRef-Image", "SPDXRef-Image CONTAINS SPDXRef-Base",
		"SPDXRef-Base CONTAINS SPDXRef-Layer-1", "SPDXRef-Image CONTAINS SPDXRef-Layer-2", "SPDXRef-Image CONTAINS SPDXRef-deb-libssl3-amd64"} {
		if !rel[r] {
			t.Errorf("no relationship %s in %v", r, rel)
		}
	}
	for _, p := range d.Packages {
		if p.ID == "SPDXRef-Layer-2" && (len(p.Checksums) != 1 || p.Checksums[0].Value != strings.Repeat("03", 32)) {
			t.Errorf("layer 2's checksums: %+v", p.Checksums)
		}
		if p.ID == "SPDXRef-Image" && (p.Purpose != "CONTAINER" || p.Checksums[0].Value != strings.Repeat("ab", 32)) {
			t.Errorf("the image package: %+v", p)
		}
	}
	// A LicenseRef used is declared, with the standalone paragraph's text.
	got := map[string]string{}
	for _, e := range d.Extracted {
		got[e.ID] = e.Text
	}
	if got["LicenseRef-Custom-Thing"] != "Do what you like, says the standalone paragraph." || len(got) != 2 {
		t.Errorf("extracted licenses: %v", got)
	}
	// Deterministic: the same image gives the same bytes.
	again, err := Generate(ctx, image(t), testImage, Options{Created: created})
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(again.JSON, res.JSON) {
		t.Error("two SBOMs of one image differ")
	}
}

// TestGenerateNoDpkg: an image without dpkg (busybox) has an SBOM of its
// layers alone, still valid.
func TestGenerateNoDpkg(t *testing.T) {
	tree := rootfs.NewTree()
	if err := tree.Append(context.Background(), "l", tarOf(t, entry{name: "bin/busybox", body: "x"})); err != nil {
		t.Fatal(err)
	}
	res, err := Generate(context.Background(), tree, Image{Name: "bb", Digest: "sha256:" + strings.Repeat("cd", 32)}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if res.Packages != 0 {
		t.Errorf("Packages = %d", res.Packages)
	}
	Validate(t, res.JSON)
}

func TestBadStatus(t *testing.T) {
	tree := rootfs.NewTree()
	bad := "Package: x\nStatus: install ok installed\nthis line is no field\n"
	if err := tree.Append(context.Background(), "l", tarOf(t, entry{name: "var/lib/dpkg/status", body: bad})); err != nil {
		t.Fatal(err)
	}
	_, err := Generate(context.Background(), tree, Image{Name: "x"}, Options{})
	if err == nil || !strings.Contains(err.Error(), "/var/lib/dpkg/status: line 3") {
		t.Errorf("err = %v, want one naming the status file and line 3", err)
	}
}

func TestLicenseNames(t *testing.T) {
	for in, want := range map[string]string{
		"GPL-2":                     "GPL-2.0-only",
		"GPL-2+":                    "GPL-2.0-or-later",
		"LGPL-2.1+":                 "LGPL-2.1-or-later",
		"GFDL-1.2+":                 "GFDL-1.2-or-later",
		"BSD-3-clause":              "BSD-3-Clause",
		"Expat":                     "MIT",
		"public-domain":             "LicenseRef-public-domain",
		"GPL-2+ or Artistic":        "Artistic-1.0-Perl OR GPL-2.0-or-later",
		"Zlib and BSD-2-clause":     "BSD-2-Clause AND Zlib",
		"mit":                       "MIT",
		"GPL-2 with Font exception": "LicenseRef-GPL-2-with-Font-exception",
	} {
		refs := map[string]string{}
		got := licenses([]byte("Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/\n\nFiles: *\nLicense: "+in+"\n"), refs)
		// The alternatives' order is the file's; compare as sets of terms.
		if !sameTerms(got, want) {
			t.Errorf("%q -> %q, want %q", in, got, want)
		}
	}
}

func sameTerms(a, b string) bool {
	sa, sb := strings.Fields(a), strings.Fields(b)
	if len(sa) != len(sb) {
		return false
	}
	m := map[string]int{}
	for _, s := range sa {
		m[s]++
	}
	for _, s := range sb {
		m[s]--
	}
	for _, n := range m {
		if n != 0 {
			return false
		}
	}
	return true
}

// TestSchemaRejects keeps the schema from being vacuous.
func TestSchemaRejects(t *testing.T) {
	sch := Schema(t)
	for _, s := range []string{
		`{"SPDXID":"SPDXRef-DOCUMENT"}`,
		`{"SPDXID":"SPDXRef-DOCUMENT","creationInfo":{"created":"2023-11-14T22:13:20Z","creators":["Tool: x"]},"dataLicense":"CC0-1.0","name":"x","spdxVersion":"SPDX-2.3","documentNamespace":"https://x/y","packages":[{"SPDXID":"SPDXRef-a+b","name":"a","downloadLocation":"NOASSERTION"}]}`,
		`{"SPDXID":"SPDXRef-DOCUMENT","creationInfo":{"created":"yesterday","creators":["Tool: x"]},"dataLicense":"CC0-1.0","name":"x","spdxVersion":"SPDX-2.3","documentNamespace":"https://x/y"}`,
	} {
		v, err := jsonschema.UnmarshalJSON(strings.NewReader(s))
		if err != nil {
			t.Fatal(err)
		}
		if sch.Validate(v) == nil {
			t.Errorf("the schema accepts %s", s)
		}
	}
}

// countedLayer counts its reads and has a diff_id, as a cache's layer has.
type countedLayer struct {
	memLayer
	id    v1.Hash
	reads *int
}

func (c countedLayer) Uncompressed() (io.ReadCloser, error) {
	*c.reads++
	return c.memLayer.Uncompressed()
}
func (c countedLayer) DiffID() (v1.Hash, error) { return c.id, nil }

type contentMap map[v1.Hash]map[int][]byte

func (m contentMap) Contents(id v1.Hash) (map[int][]byte, bool) { c, ok := m[id]; return c, ok }
func (m contentMap) PutContents(id v1.Hash, c map[int][]byte) error {
	if m[id] == nil {
		m[id] = map[int][]byte{}
	}
	for k, v := range c {
		m[id][k] = v
	}
	return nil
}

type cachedFS struct {
	*rootfs.Tree
	cc rootfs.ContentCache
}

func (c cachedFS) ReadFiles(ctx context.Context, names []string, fn func(string, []byte) error) error {
	return c.ReadFilesCached(ctx, names, c.cc, fn)
}

// A second SBOM of the same layers takes the files from the content cache
// and reads no layer; the document is the same.
func TestGenerateCachedContents(t *testing.T) {
	ctx := context.Background()
	cc := contentMap{}
	var docs [][]byte
	for run := range 2 {
		reads := 0
		tree := rootfs.NewTree()
		l := countedLayer{tarOf(t,
			entry{name: "var/lib/dpkg/status", body: status},
			entry{name: "usr/share/doc/libssl3/copyright", body: dep5}), v1.Hash{Algorithm: "sha256", Hex: strings.Repeat("ee", 32)}, &reads}
		if err := tree.Append(ctx, "base", l); err != nil {
			t.Fatal(err)
		}
		reads = 0
		res, err := Generate(ctx, cachedFS{tree, cc}, testImage, Options{})
		if err != nil {
			t.Fatal(err)
		}
		if want := 1 - run; reads != want {
			t.Errorf("run %d read the layer %d times, want %d", run+1, reads, want)
		}
		docs = append(docs, res.JSON)
	}
	if !bytes.Equal(docs[0], docs[1]) {
		t.Error("the SBOM from cached contents differs")
	}
}
