package sbom

import (
	"bufio"
	"bytes"
	"fmt"
	"strings"
)

// Deb is one installed dpkg package.
type Deb struct {
	Name, Version, Arch string
	// Source and SourceVersion are the source package it was built from;
	// SourceVersion is empty when it is Version.
	Source, SourceVersion string
	Maintainer            string
}

// paragraph is one stanza of a deb822 file: field names as written, the
// values of continued fields joined by newlines.
type paragraph struct {
	line   int // where it starts, for errors
	fields map[string]string
}

// parseDeb822 splits a deb822 file (dpkg's status, a DEP-5 copyright
// file) into paragraphs. Field names are matched case-insensitively, as
// Debian policy says, so they are kept lower-cased.
func parseDeb822(data []byte) ([]paragraph, error) {
	var ps []paragraph
	var cur *paragraph
	var last string
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 64*1024), 16<<20)
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		if strings.TrimSpace(line) == "" {
			cur, last = nil, ""
			continue
		}
		if strings.HasPrefix(line, "#") && cur == nil {
			continue
		}
		if line[0] == ' ' || line[0] == '\t' {
			if cur == nil || last == "" {
				return nil, fmt.Errorf("line %d: a continuation line outside a field", n)
			}
			cur.fields[last] += "\n" + strings.TrimSpace(line)
			continue
		}
		name, value, ok := strings.Cut(line, ":")
		if !ok {
			return nil, fmt.Errorf("line %d: %q is not a field (NAME: value)", n, line)
		}
		if cur == nil {
			ps = append(ps, paragraph{line: n, fields: map[string]string{}})
			cur = &ps[len(ps)-1]
		}
		last = strings.ToLower(strings.TrimSpace(name))
		cur.fields[last] = strings.TrimSpace(value)
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	return ps, nil
}

// parseStatus lists the installed packages of a dpkg status file: those
// whose Status ends in "installed" (a held package is installed too).
func parseStatus(data []byte) ([]Deb, error) {
	ps, err := parseDeb822(data)
	if err != nil {
		return nil, err
	}
	var debs []Deb
	for _, p := range ps {
		st := strings.Fields(p.fields["status"])
		if len(st) != 3 || st[2] != "installed" {
			continue
		}
		d := Deb{Name: p.fields["package"], Version: p.fields["version"], Arch: p.fields["architecture"], Maintainer: p.fields["maintainer"]}
		if d.Name == "" || d.Version == "" || d.Arch == "" {
			return nil, fmt.Errorf("line %d: an installed package without Package, Version or Architecture", p.line)
		}
		if src := p.fields["source"]; src != "" {
			// "Source: name" or "Source: name (version)"
			name, ver, _ := strings.Cut(src, " ")
			d.Source = name
			d.SourceVersion = strings.TrimSuffix(strings.TrimPrefix(strings.TrimSpace(ver), "("), ")")
		}
		debs = append(debs, d)
	}
	return debs, nil
}

// osRelease reads ID and VERSION_ID of an os-release file.
func osRelease(data []byte) (id, version string) {
	for line := range strings.SplitSeq(string(data), "\n") {
		k, v, ok := strings.Cut(strings.TrimSpace(line), "=")
		if !ok {
			continue
		}
		v = strings.Trim(v, `"'`)
		switch k {
		case "ID":
			id = v
		case "VERSION_ID":
			version = v
		}
	}
	return id, version
}
