package diskset

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
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
	// Content is the cached file's content digest (ContentDigest), checked
	// before the file is handed out: a write that kept the stamp (the mtime
	// put back) or a flipped bit is caught by it.
	Content string `json:"content,omitempty"`
}

// Set is a finished set of disks in one folder, described there by
// meta.json.
type Set struct {
	Boot  string          `json:"boot"`
	Files map[string]File `json:"files"`
	// Sum is the checksum of the rest of meta.json (see metaSum).
	Sum string `json:"sum,omitempty"`
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

// readSet reads the meta.json of dir and checks it against its checksum.
func readSet(dir string) (*Set, error) {
	var s Set
	data, err := os.ReadFile(filepath.Join(dir, "meta.json"))
	if err != nil {
		return nil, err
	}
	if err := json.Unmarshal(data, &s); err != nil {
		return nil, fmt.Errorf("unreadable: %w", err)
	}
	if s.Sum == "" {
		return nil, errLegacy
	}
	if got := s.metaSum(); got != s.Sum {
		return nil, fmt.Errorf("its content has checksum %s, it records %s (the file was changed)", got, s.Sum)
	}
	s.Dir = dir
	return &s, nil
}

// errLegacy is a set made before sets had checksums: it cannot be checked.
var errLegacy = errors.New("made by an older layerimg, with no checksums to check it by")

// metaSum is the sha256 of s's meta.json without Sum. Its JSON is
// deterministic: struct fields in order, map keys sorted.
func (s Set) metaSum() string {
	s.Sum = ""
	data, err := json.Marshal(s)
	if err != nil {
		panic(fmt.Sprintf("disk set does not encode: %v", err)) // only our own types
	}
	return fmt.Sprintf("sha256:%x", sha256.Sum256(data))
}

// writeMeta writes s's meta.json into dir, with its checksum.
func (s *Set) writeMeta(dir string) error {
	s.Sum = s.metaSum()
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

// Describe is the File for the disk file at p, stamped and with its
// content digest.
func Describe(p string) (File, error) {
	fi, err := os.Stat(p)
	if err != nil {
		return File{}, err
	}
	content, err := ContentDigest(context.Background(), p)
	if err != nil {
		return File{}, err
	}
	return File{Path: p, Size: fi.Size(), Stamp: stamp(fi), Content: content}, nil
}

// check compares the set's file of format f with what was recorded when
// it was made: its size, and its content digest.
func (s *Set) check(ctx context.Context, f string) error {
	want := s.Files[f]
	if !strings.HasPrefix(want.Content, contentAlgo+":") {
		return errLegacy // no digest, or one this version does not make
	}
	fi, err := os.Stat(s.Path(f))
	if err != nil {
		return err
	}
	if fi.Size() != want.Size {
		return fmt.Errorf("it has %d bytes, meta.json records %d", fi.Size(), want.Size)
	}
	got, err := ContentDigest(ctx, s.Path(f))
	if err != nil {
		return err
	}
	if got != want.Content {
		return fmt.Errorf("its content digest is %s, meta.json records %s", got, want.Content)
	}
	return nil
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
		df.Path, df.Stamp, df.Content = dst, "", ""
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
