package layers

import (
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"sort"
	"strings"
)

// keyVersion changes whenever the meaning of a key's inputs or the layer a
// step makes from them changes, so old entries are never reused wrongly.
const keyVersion = 2

// KeyInput is everything a step's result depends on. Its canonical JSON
// encoding (fields in a fixed order, map keys sorted) is hashed into the key.
// Nothing machine-, time- or path-dependent belongs here.
type KeyInput struct {
	Version     int          `json:"v"`
	Parent      string       `json:"parent"`
	Kind        string       `json:"kind"`
	Spec        any          `json:"spec"`
	Files       []FileDigest `json:"files,omitempty"`
	Platform    string       `json:"platform"`
	Compression Compression  `json:"compression"`
	Epoch       int64        `json:"epoch"`
	// Mirrors is a bootstrap base's mirror state; omitted elsewhere, so
	// that other keys stay what they were.
	Mirrors []MirrorState `json:"mirrors,omitempty"`
}

// FileDigest is one build-context file a step reads. Its mtime is left out
// on purpose: a fresh checkout must hit the cache.
type FileDigest struct {
	Path   string `json:"path"`
	Mode   uint32 `json:"mode"`
	Digest string `json:"digest,omitempty"`
	Link   string `json:"link,omitempty"`
}

// Key is the cache key of in.
func (in KeyInput) Key() string {
	in.Version = keyVersion
	in.Spec = canonical(in.Spec)
	data, err := json.Marshal(in)
	if err != nil {
		panic(fmt.Sprintf("cache key input does not encode: %v", err)) // only our own types go in
	}
	return fmt.Sprintf("sha256:%x", sha256.Sum256(data))
}

// Why explains, for a human, how in differs from an earlier input of the
// same step. It returns "" when they are the same.
func (in KeyInput) Why(old KeyInput) string {
	var why []string
	if in.Parent != old.Parent {
		why = append(why, "an earlier step or the base changed")
	}
	a, _ := json.Marshal(canonical(in.Spec))
	b, _ := json.Marshal(canonical(old.Spec))
	if string(a) != string(b) {
		why = append(why, "the step's definition changed (after args were expanded)")
	}
	if files := diffFiles(in.Files, old.Files); files != "" {
		why = append(why, files)
	}
	if in.Platform != old.Platform {
		why = append(why, fmt.Sprintf("platform changed from %s to %s", old.Platform, in.Platform))
	}
	if in.Compression != old.Compression {
		why = append(why, fmt.Sprintf("compression changed from %s to %s", old.Compression, in.Compression))
	}
	if in.Epoch != old.Epoch {
		why = append(why, fmt.Sprintf("SOURCE_DATE_EPOCH changed from %d to %d", old.Epoch, in.Epoch))
	}
	if m := diffMirrors(in.Mirrors, old.Mirrors); m != "" {
		why = append(why, m)
	}
	if len(why) == 0 && in.Key() != old.Key() {
		why = append(why, "the cache format changed")
	}
	return strings.Join(why, "; ")
}

// diffMirrors names the suites whose InRelease changed, was added or
// dropped: "debian-security bookworm-security InRelease changed".
func diffMirrors(cur, old []MirrorState) string {
	om := map[string]MirrorState{}
	for _, m := range old {
		om[m.Name()] = m
	}
	var parts []string
	for _, m := range cur {
		o, ok := om[m.Name()]
		switch {
		case !ok:
			parts = append(parts, m.Name()+" InRelease is new")
		case o.InRelease != m.InRelease:
			parts = append(parts, fmt.Sprintf("%s InRelease changed (%s -> %s)", m.Name(), short12(o.InRelease), short12(m.InRelease)))
		}
		delete(om, m.Name())
	}
	for _, m := range old {
		if _, gone := om[m.Name()]; gone {
			parts = append(parts, m.Name()+" is no longer read")
		}
	}
	return strings.Join(parts, "; ")
}

func short12(d string) string {
	if _, h, ok := strings.Cut(d, ":"); ok && len(h) > 12 {
		return h[:12]
	}
	return d
}

func diffFiles(cur, old []FileDigest) string {
	om := map[string]FileDigest{}
	for _, f := range old {
		om[f.Path] = f
	}
	var changed, added []string
	seen := map[string]bool{}
	for _, f := range cur {
		seen[f.Path] = true
		o, ok := om[f.Path]
		switch {
		case !ok:
			added = append(added, f.Path)
		case o.Digest != f.Digest || o.Link != f.Link:
			changed = append(changed, f.Path+" (content)")
		case o.Mode != f.Mode:
			changed = append(changed, fmt.Sprintf("%s (mode %04o -> %04o)", f.Path, o.Mode, f.Mode))
		}
	}
	var removed []string
	for _, f := range old {
		if !seen[f.Path] {
			removed = append(removed, f.Path)
		}
	}
	sort.Strings(removed)
	var parts []string
	if len(changed) > 0 {
		parts = append(parts, "changed: "+list(changed))
	}
	if len(added) > 0 {
		parts = append(parts, "new: "+list(added))
	}
	if len(removed) > 0 {
		parts = append(parts, "removed: "+list(removed))
	}
	if len(parts) == 0 {
		return ""
	}
	return "context files " + strings.Join(parts, ", ")
}

func list(s []string) string {
	if len(s) > 5 {
		return strings.Join(s[:5], ", ") + fmt.Sprintf(" and %d more", len(s)-5)
	}
	return strings.Join(s, ", ")
}

// canonical round-trips v through JSON into maps, whose keys encode sorted,
// so a spec read back from a cache entry encodes as it did when written.
func canonical(v any) any {
	data, err := json.Marshal(v)
	if err != nil {
		return v
	}
	var out any
	if json.Unmarshal(data, &out) != nil {
		return v
	}
	return out
}
