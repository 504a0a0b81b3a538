package diskset

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"syscall"

	"github.com/layerimg/layerimg/disk/format"
	"github.com/layerimg/layerimg/disk/sparse"
)

// FileName is the name of a set's file of format f ("disk.raw", ...).
func FileName(f string) string { return "disk." + format.Format(f).Ext() }

// File is one disk file of a set, or handed out of one.
type File struct {
	Path   string `json:"path"`
	Size   int64  `json:"size"`
	SHA256 string `json:"sha256,omitempty"` // when the caller asks for digests
	// Stamp identifies the cached file's state, to notice a write through a
	// hardlink without hashing gigabytes.
	Stamp string `json:"stamp,omitempty"`
}

// Set is a finished set of disks in one folder, described there by
// meta.json.
type Set struct {
	Boot  string          `json:"boot"`
	Files map[string]File `json:"files"`
	// Dir holds the files: the cache's folder for the key, or for disks
	// with random ids a scratch folder the caller removes.
	Dir string `json:"-"`
}

// Path is the set's file of format f.
func (s *Set) Path(f string) string { return filepath.Join(s.Dir, FileName(f)) }

// Formats are the set's formats, in the usual order.
func (s *Set) Formats() []string {
	var out []string
	for _, f := range format.Names() {
		if _, ok := s.Files[f]; ok {
			out = append(out, f)
		}
	}
	return out
}

// readSet reads the meta.json of dir.
func readSet(dir string) (*Set, bool) {
	var s Set
	data, err := os.ReadFile(filepath.Join(dir, "meta.json"))
	if err != nil || json.Unmarshal(data, &s) != nil {
		return nil, false
	}
	s.Dir = dir
	return &s, true
}

// writeMeta writes s's meta.json into dir.
func (s *Set) writeMeta(dir string) error {
	data, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "meta.json"), data, 0o644); err != nil {
		return fmt.Errorf("writing disk set metadata: %w", err)
	}
	return nil
}

// has says whether every one of fs is in the set, on disk.
func (s *Set) has(fs []string) bool {
	for _, f := range fs {
		if _, ok := s.Files[f]; !ok {
			return false
		}
		if _, err := os.Stat(s.Path(f)); err != nil {
			return false
		}
	}
	return true
}

// changed is the first of fs whose file is not as it was made, or "".
// Outputs are hardlinks to the cache where possible, so a user who wrote
// into one changed the cached copy too.
func (s *Set) changed(fs []string) string {
	for _, f := range fs {
		fi, err := os.Stat(s.Path(f))
		if err != nil || stamp(fi) != s.Files[f].Stamp {
			return f
		}
	}
	return ""
}

// Describe is the File for the disk file at p, stamped.
func Describe(p string) (File, error) {
	fi, err := os.Stat(p)
	if err != nil {
		return File{}, err
	}
	return File{Path: p, Size: fi.Size(), Stamp: stamp(fi)}, nil
}

// stamp is a file's inode, size and mtime: a write changes it. (Not ctime:
// handing the file out as a hardlink changes that.)
func stamp(fi os.FileInfo) string {
	st := fi.Sys().(*syscall.Stat_t)
	return fmt.Sprintf("%d/%d/%d.%d", st.Ino, st.Size, st.Mtim.Sec, st.Mtim.Nsec)
}

// HandOut puts the set's files of formats fs in outDir, as hardlinks where
// it can (see copyOut). With digests, each file's sha256 is computed unless
// the set knows it.
func (s *Set) HandOut(outDir string, fs []string, digests bool) (map[string]File, error) {
	if err := os.MkdirAll(outDir, 0o755); err != nil {
		return nil, err
	}
	out := map[string]File{}
	for _, f := range fs {
		src, dst := s.Path(f), filepath.Join(outDir, FileName(f))
		if err := copyOut(src, dst); err != nil {
			return nil, fmt.Errorf("writing %s: %w", dst, err)
		}
		df := s.Files[f]
		if digests && df.SHA256 == "" {
			var err error
			if df.SHA256, err = sparse.DigestFile(src); err != nil {
				return nil, err
			}
		}
		df.Path, df.Stamp = dst, ""
		out[f] = df
	}
	return out, nil
}

// copyOut puts a disk from the cache at dst: a hardlink when dst is on the
// same filesystem (no copy at all), else a copy that keeps the holes.
func copyOut(src, dst string) error {
	if sameFile(src, dst) {
		return nil // handed out by an earlier build into the same dir
	}
	tmp := dst + ".tmp-link"
	os.Remove(tmp)
	if err := os.Link(src, tmp); err == nil {
		err = os.Rename(tmp, dst)
		// rename between two links to one inode does nothing: the
		// temporary link would stay behind.
		os.Remove(tmp)
		return err
	}
	return sparse.WriteAtomicFrom(dst, src, func(out, in *os.File, size int64) error {
		if err := out.Truncate(size); err != nil {
			return err
		}
		return sparse.Copy(out, 0, in, size)
	})
}

func sameFile(a, b string) bool {
	fa, err := os.Stat(a)
	if err != nil {
		return false
	}
	fb, err := os.Stat(b)
	return err == nil && os.SameFile(fa, fb)
}
