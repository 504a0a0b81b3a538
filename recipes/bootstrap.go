package recipes

import (
	"fmt"
	"net/url"
	"slices"
	"strings"
)

// DefaultMirror is the archive a bootstrap reads when it names none.
const DefaultMirror = "https://deb.debian.org/debian"

// AptSource is one suite of one archive that a bootstrap's apt reads.
type AptSource struct {
	// Archive names the archive for people: debian or debian-security.
	Archive string `json:"archive"`
	URL     string `json:"url"`
	Suite   string `json:"suite"`
	// Snapshot is set for snapshot.debian.org archives, whose Release files
	// have long expired: apt must not check Valid-Until.
	Snapshot bool `json:"snapshot,omitempty"`
}

// Line is the source as a one-line sources.list entry (main only, as
// mmdebstrap's default).
func (s AptSource) Line() string {
	if s.Snapshot {
		return fmt.Sprintf("deb [check-valid-until=no] %s %s main", s.URL, s.Suite)
	}
	return fmt.Sprintf("deb %s %s main", s.URL, s.Suite)
}

// InRelease is the URL of the suite's signed Release file.
func (s AptSource) InRelease() string {
	return strings.TrimSuffix(s.URL, "/") + "/dists/" + s.Suite + "/InRelease"
}

// noUpdates are suites with neither -updates nor -security.
var noUpdates = []string{"sid", "unstable", "experimental", "rc-buggy"}

// WithDefaults fills in what a recipe may leave out: mirror, variant,
// security mirror and suites, so that a base's key names what it reads.
func (bs Bootstrap) WithDefaults() Bootstrap {
	if bs.Mirror == "" && bs.Snapshot == "" {
		bs.Mirror = DefaultMirror
	}
	if bs.Variant == "" {
		bs.Variant = "minbase"
	}
	if bs.SecurityMirror == "" && bs.Snapshot == "" {
		bs.SecurityMirror = securityFor(bs.Mirror)
	}
	if len(bs.Suites) == 0 {
		bs.Suites = []string{bs.Suite}
		if !slices.Contains(noUpdates, bs.Suite) {
			bs.Suites = append(bs.Suites, bs.Suite+"-updates")
			if bs.SecurityMirror != "none" {
				bs.Suites = append(bs.Suites, bs.Suite+"-security")
			}
		}
	}
	bs.Suites = slices.Clone(bs.Suites)
	return bs
}

// securityFor is the security archive that goes with mirror: only
// deb.debian.org is known to serve both; "" means the recipe must say.
func securityFor(mirror string) string {
	u, err := url.Parse(mirror)
	if err != nil || u.Host != "deb.debian.org" || strings.TrimSuffix(u.Path, "/") != "/debian" {
		return ""
	}
	return u.Scheme + "://deb.debian.org/debian-security"
}

// Sources lists the suites a bootstrap reads, in order: a suite ending in
// -security from the security mirror, every other from the mirror.
func (bs Bootstrap) Sources() ([]AptSource, error) {
	bs = bs.WithDefaults()
	if bs.Snapshot != "" {
		if !snapshotRE.MatchString(bs.Snapshot) {
			return nil, fmt.Errorf("from.bootstrap.snapshot %q is not a snapshot.debian.org timestamp such as 20240115T000000Z", bs.Snapshot)
		}
		if bs.Mirror != "" || (bs.SecurityMirror != "" && bs.SecurityMirror != "none") {
			return nil, fmt.Errorf("from.bootstrap: snapshot %s names both archives on snapshot.debian.org; leave mirror and security_mirror out", bs.Snapshot)
		}
	}
	for _, m := range []struct{ key, url string }{{"mirror", bs.Mirror}, {"security_mirror", bs.SecurityMirror}} {
		if err := noCredentials(m.key, m.url); err != nil {
			return nil, err
		}
	}
	if !slices.Contains(bs.Suites, bs.Suite) {
		return nil, fmt.Errorf("from.bootstrap.suites %v must include the suite %s: mmdebstrap takes its essential packages from it", bs.Suites, bs.Suite)
	}
	var out []AptSource
	for _, s := range bs.Suites {
		if s == "" || strings.ContainsAny(s, " \t/[]") {
			return nil, fmt.Errorf("from.bootstrap.suites: %q is not a suite name", s)
		}
		src := AptSource{Archive: "debian", URL: bs.Mirror, Suite: s}
		if strings.HasSuffix(s, "-security") {
			src.Archive, src.URL = "debian-security", bs.SecurityMirror
			switch src.URL {
			case "none":
				return nil, fmt.Errorf("from.bootstrap.suites lists %s but security_mirror is none", s)
			case "":
				if bs.Snapshot == "" {
					return nil, fmt.Errorf("from.bootstrap: %s comes from the security archive, which mirror %s may not carry: set security_mirror (for example http://deb.debian.org/debian-security), or security_mirror: none to build without security updates", s, bs.Mirror)
				}
			}
		}
		if bs.Snapshot != "" {
			src.URL, src.Snapshot = "https://snapshot.debian.org/archive/"+src.Archive+"/"+bs.Snapshot, true
		}
		out = append(out, src)
	}
	return out, nil
}

// noCredentials refuses a mirror URL with a user or password in it: the
// URL reaches the cache key, the manifest, the provenance and the image's
// sources.list. apt reads credentials from /etc/apt/auth.conf.d instead.
func noCredentials(key, mirror string) error {
	u, err := url.Parse(mirror)
	if err != nil || u.User == nil {
		return nil
	}
	return fmt.Errorf("from.bootstrap.%s names a user or password (%s): it would be recorded in the cache key, the manifest, the provenance and the image; give apt the credentials in /etc/apt/auth.conf.d instead", key, u.Redacted())
}
