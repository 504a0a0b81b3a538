package sbom

import (
	"regexp"
	"slices"
	"strings"

	"github.com/github/go-spdx/v2/spdxexp"
	"github.com/github/go-spdx/v2/spdxexp/spdxlicenses"
)

// dep5Format is how a machine-readable copyright file starts; the http
// form is what older files carry.
var dep5Format = regexp.MustCompile(`^https?://(www\.)?debian\.org/doc/packaging-manuals/copyright-format/1\.0/?$`)

// debianNames maps the short names DEP-5 uses (and the SPDX list lacks)
// to SPDX ids; a trailing "+" is handled apart, as "-or-later".
var debianNames = map[string]string{
	"expat":        "MIT",
	"bsd-2-clause": "BSD-2-Clause",
	"bsd-3-clause": "BSD-3-Clause",
	"bsd-4-clause": "BSD-4-Clause",
	"zlib":         "Zlib",
	"artistic":     "Artistic-1.0-Perl",
	"mpl-1.1":      "MPL-1.1",
	"psf-2":        "PSF-2.0",
	"apache-2":     "Apache-2.0",
	"isc":          "ISC",
	"cc0":          "CC0-1.0",
	"cc0-1.0":      "CC0-1.0",
}

// gnuVersion turns a GNU family name with a short version ("GPL-2",
// "LGPL-2.1") into its SPDX base ("GPL-2.0", "LGPL-2.1").
var gnuVersion = regexp.MustCompile(`^(?i)(A?GPL|LGPL|GFDL)-([0-9])(\.[0-9])?$`)

// licenses turns a DEP-5 copyright file into an SPDX license expression:
// the licenses of all its Files paragraphs joined with AND. A license
// that is not on the SPDX list becomes a LicenseRef- whose text refs
// gets (the file's standalone License paragraph, else its name). A file
// that is not machine-readable gives "".
func licenses(data []byte, refs map[string]string) string {
	ps, err := parseDeb822(data)
	if err != nil || len(ps) == 0 || !dep5Format.MatchString(ps[0].fields["format"]) {
		return ""
	}
	texts := map[string]string{} // standalone License paragraphs, by name
	for _, p := range ps[1:] {
		if _, files := p.fields["files"]; files {
			continue
		}
		if l, ok := p.fields["license"]; ok {
			name, text, _ := strings.Cut(l, "\n")
			texts[strings.ToLower(strings.TrimSpace(name))] = text
		}
	}
	var terms []string
	for _, p := range ps[1:] {
		if _, files := p.fields["files"]; !files {
			continue
		}
		l, _, _ := strings.Cut(p.fields["license"], "\n")
		if l = strings.TrimSpace(l); l == "" {
			continue
		}
		if t := expression(l, texts, refs); !slices.Contains(terms, t) {
			terms = append(terms, t)
		}
	}
	if len(terms) == 0 {
		return ""
	}
	slices.Sort(terms)
	if len(terms) == 1 {
		return terms[0]
	}
	for i, t := range terms {
		if strings.Contains(t, " ") {
			terms[i] = "(" + t + ")"
		}
	}
	return strings.Join(terms, " AND ")
}

// expression converts one DEP-5 License line ("GPL-2+ or Artistic",
// "LGPL-2.1+ with OpenSSL exception", "BSD-3-clause and Expat").
func expression(line string, texts, refs map[string]string) string {
	// DEP-5's "or" binds looser than "and".
	// Commas only punctuate ("GPL-1+ or Artistic, and BSD"): dropped.
	line = strings.ReplaceAll(line, ",", " ")
	var ors []string
	for _, alt := range splitWord(line, "or") {
		var ands []string
		for _, part := range splitWord(alt, "and") {
			if id := licenseID(part, texts, refs); !slices.Contains(ands, id) {
				ands = append(ands, id)
			}
		}
		ors = append(ors, strings.Join(ands, " AND "))
	}
	if len(ors) == 1 {
		return ors[0]
	}
	for i, o := range ors {
		if strings.Contains(o, " ") {
			ors[i] = "(" + o + ")"
		}
	}
	return strings.Join(ors, " OR ")
}

func splitWord(s, word string) []string {
	var out []string
	fields := strings.Fields(s)
	start := 0
	for i, f := range fields {
		if strings.EqualFold(f, word) {
			out = append(out, strings.Join(fields[start:i], " "))
			start = i + 1
		}
	}
	return append(out, strings.Join(fields[start:], " "))
}

// licenseID maps one DEP-5 license name to an SPDX id, or to a LicenseRef
// recorded in refs. "X with Y exception" keeps only X when Y is not an
// SPDX exception, and says so in a LicenseRef instead.
func licenseID(name string, texts, refs map[string]string) string {
	name = strings.TrimSpace(name)
	if base, exc, ok := cutFold(name, " with "); ok {
		if id := knownID(base); id != "" {
			exc = strings.Join(strings.Fields(exc), "-")
			if ok, e := spdxlicenses.IsException(exc); ok {
				return id + " WITH " + e
			}
		}
		return ref(name, texts, refs)
	}
	if id := knownID(name); id != "" {
		return id
	}
	return ref(name, texts, refs)
}

// knownID is the SPDX id for a DEP-5 name, or "".
func knownID(name string) string {
	n := strings.ToLower(strings.TrimSpace(name))
	later := strings.HasSuffix(n, "+")
	n = strings.TrimSuffix(n, "+")
	if m := gnuVersion.FindStringSubmatch(n); m != nil {
		v := m[2] + m[3]
		if m[3] == "" {
			v += ".0"
		}
		id := strings.ToUpper(m[1]) + "-" + v
		if later {
			id += "-or-later"
		} else {
			id += "-only"
		}
		if ok, canon := spdxexp.ActiveLicense(id); ok {
			return canon
		}
		return ""
	}
	if later {
		return "" // "+" on a license with no -or-later form on the list
	}
	if id, ok := debianNames[n]; ok {
		return id
	}
	if ok, canon := spdxexp.ActiveLicense(n); ok {
		return canon
	}
	return ""
}

// ref is the LicenseRef for a name the SPDX list lacks, recorded with its
// text in refs.
func ref(name string, texts, refs map[string]string) string {
	var b strings.Builder
	b.WriteString("LicenseRef-")
	for _, r := range name {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '.', r == '-':
			b.WriteRune(r)
		case r == '+':
			b.WriteString("-or-later")
		default:
			b.WriteByte('-')
		}
	}
	id := strings.TrimRight(b.String(), "-")
	text := texts[strings.ToLower(name)]
	if strings.TrimSpace(text) == "" {
		text = "License: " + name
	}
	if old, ok := refs[id]; !ok || text < old {
		refs[id] = text // the smallest text, whatever the packages' order
	}
	return id
}

func cutFold(s, sep string) (before, after string, ok bool) {
	i := strings.Index(strings.ToLower(s), sep)
	if i < 0 {
		return s, "", false
	}
	return s[:i], s[i+len(sep):], true
}
