package debian

import (
	"bufio"
	"fmt"
	"io"
	"strings"
)

// Paragraph is one deb822 stanza: field name -> value (continuation lines
// joined with "\n").
type Paragraph map[string]string

// EachParagraph calls fn for every stanza of r (a dpkg status file or a
// Packages index), stopping at fn's first error.
func EachParagraph(r io.Reader, fn func(Paragraph) error) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), 16<<20)
	p := Paragraph{}
	last := ""
	n := 0
	flush := func() error {
		if len(p) == 0 {
			return nil
		}
		err := fn(p)
		p, last = Paragraph{}, ""
		return err
	}
	for sc.Scan() {
		n++
		line := sc.Text()
		switch {
		case strings.TrimSpace(line) == "":
			if err := flush(); err != nil {
				return err
			}
		case line[0] == ' ' || line[0] == '\t':
			if last == "" {
				return fmt.Errorf("line %d: a continuation line outside a field", n)
			}
			p[last] += "\n" + strings.TrimSpace(line)
		case line[0] == '#':
		default:
			k, v, ok := strings.Cut(line, ":")
			if !ok {
				return fmt.Errorf("line %d: %q is not a Field: value line", n, line)
			}
			last = k
			p[k] = strings.TrimSpace(v)
		}
	}
	if err := sc.Err(); err != nil {
		return err
	}
	return flush()
}

// Installed is one package dpkg has installed.
type Installed struct {
	Name, Version, Arch string
}

// ReadStatus lists the packages /var/lib/dpkg/status says are installed.
func ReadStatus(r io.Reader) ([]Installed, error) {
	var out []Installed
	err := EachParagraph(r, func(p Paragraph) error {
		if !strings.HasSuffix(p["Status"], " installed") {
			return nil
		}
		out = append(out, Installed{Name: p["Package"], Version: p["Version"], Arch: p["Architecture"]})
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("dpkg status: %w", err)
	}
	return out, nil
}
