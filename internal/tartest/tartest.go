// Package tartest holds what tests of several packages share to compare
// tar streams: a summary of their entries that two equivalent tars agree on.
package tartest

import (
	"archive/tar"
	"fmt"
	"io"
	"sort"
	"strings"
	"testing"
)

// Summary lists a tar's entries, sorted, one line each: "NAME f MODE
// CONTENT" for a file, "NAME l TARGET" for a symlink, "NAME d" for a
// directory, "NAME c" for a character device. Names lose a leading "./"
// and a trailing "/". A hardlink is listed as the file it links to, under
// its own name, so that either of a pair may be the link. It closes rc.
func Summary(t testing.TB, rc io.ReadCloser) []string {
	t.Helper()
	defer rc.Close()
	tr := tar.NewReader(rc)
	files := map[string]string{} // name -> "MODE CONTENT"
	var out []string
	var links [][2]string
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		name := strings.TrimSuffix(strings.TrimPrefix(h.Name, "./"), "/")
		switch h.Typeflag {
		case tar.TypeReg:
			b, _ := io.ReadAll(tr)
			files[name] = fmt.Sprintf("%#o %s", h.Mode&0o7777, b)
			out = append(out, name+" f "+files[name])
		case tar.TypeLink:
			links = append(links, [2]string{name, strings.TrimPrefix(h.Linkname, "./")})
		case tar.TypeSymlink:
			out = append(out, name+" l "+h.Linkname)
		case tar.TypeDir:
			out = append(out, name+" d")
		case tar.TypeChar:
			out = append(out, name+" c")
		}
	}
	for _, l := range links {
		out = append(out, l[0]+" f "+files[l[1]])
	}
	sort.Strings(out)
	return out
}
