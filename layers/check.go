package layers

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"syscall"

	"golang.org/x/sys/unix"
)

// This file holds what the cache checks its items against: nothing read
// from the cache is used before it matches a digest recorded when it was
// written.
//
//   - a key file carries the sha256 of its own content (Entry.Sum);
//   - the layer it names is read on lookup: the blob must have the digest
//     it is named by and the recorded size; its decompressed content must
//     have the recorded diff_id, checked wherever it is decompressed
//     (OpenLayer, Unpacked) and by cache verify;
//   - an unpacked tree has its tree digest in a file beside it
//     (unpacked/<diffID>.tree), checked before the tree is used as a lower.

// entrySum is the checksum of e's content, Sum left out: the sha256 of its
// canonical JSON (map keys sorted), so that it does not depend on the Go
// types the spec had when it was stored.
func entrySum(e Entry) string {
	e.Sum = ""
	data, err := json.Marshal(canonical(e))
	if err != nil {
		panic(fmt.Sprintf("cache entry does not encode: %v", err)) // only our own types go in
	}
	return fmt.Sprintf("sha256:%x", sha256.Sum256(data))
}

// readEntry parses a key file and checks it against its checksum and key.
// legacy says the file has no checksum (written before there was one).
func readEntry(data []byte, key string) (e Entry, legacy bool, err error) {
	if err := json.Unmarshal(data, &e); err != nil {
		return e, false, fmt.Errorf("unreadable: %w", err)
	}
	if e.Key != key {
		return e, false, fmt.Errorf("it holds key %s", e.Key)
	}
	if e.Sum == "" {
		return e, true, nil
	}
	if got := entrySum(e); got != e.Sum {
		return e, false, fmt.Errorf("its content has checksum %s, it records %s (the file was changed)", got, e.Sum)
	}
	return e, false, nil
}

// checkLayer reads the blob of d and checks it against the digest it is
// named by and the size d records. With deep it also decompresses it, on
// the same pass, and checks the diff_id d records; a build leaves that to
// the readers of the layer's content (OpenLayer, Unpacked), which check it
// as they read anyway: decompressing every layer on every lookup would
// more than double the time of a fully cached build. The diff_id in a key
// file is covered by the file's checksum meanwhile.
func (c *Cache) checkLayer(d Descriptor, deep bool) error {
	f, err := os.Open(c.BlobPath(d.Digest))
	if err != nil {
		return err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	if fi.Size() != d.Size {
		return fmt.Errorf("blob %s has %d bytes, the entry records %d", d.Digest, fi.Size(), d.Size)
	}
	comp := sha256.New()
	if !deep {
		if _, err := io.Copy(comp, f); err != nil {
			return err
		}
		if got := hex.EncodeToString(comp.Sum(nil)); got != d.Digest.Hex {
			return fmt.Errorf("blob %s is corrupt: its content has digest sha256:%s", d.Digest, got)
		}
		return nil
	}
	tr, err := decompress(io.TeeReader(f, comp), d.MediaType)
	if err != nil {
		return fmt.Errorf("blob %s: decompressing as %s: %w", d.Digest, d.MediaType, err)
	}
	defer tr.Close()
	raw := sha256.New()
	_, derr := io.Copy(raw, tr)
	// Whatever the decompressor left unread still counts for the digest.
	if _, err := io.Copy(comp, f); err != nil {
		return err
	}
	if got := hex.EncodeToString(comp.Sum(nil)); got != d.Digest.Hex {
		return fmt.Errorf("blob %s is corrupt: its content has digest sha256:%s", d.Digest, got)
	}
	if derr != nil {
		return fmt.Errorf("blob %s: decompressing as %s: %w", d.Digest, d.MediaType, derr)
	}
	if got := hex.EncodeToString(raw.Sum(nil)); got != d.DiffID.Hex {
		return fmt.Errorf("blob %s decompresses to content with digest sha256:%s, the entry records diff_id %s", d.Digest, got, d.DiffID)
	}
	return nil
}

// treeSumPath is the file that records the tree digest of an unpacked
// layer. It lives beside the tree, not in it: the tree is an overlay lower.
func treeSumPath(dir string) string { return dir + ".tree" }

// TreeDigest is a digest of everything in the tree at dir that a build
// could see through it: each entry's path, type and mode, owner, size,
// mtime, device number, link target, extended attributes and content, in
// path order. The root's mtime is left out (renaming the tree into place
// may change it).
func TreeDigest(dir string) (string, error) {
	h := sha256.New()
	buf := make([]byte, 1<<20)
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil {
			return err
		}
		return hashTreeEntry(h, p, rel, buf)
	})
	if err != nil {
		return "", err
	}
	return fmt.Sprintf("sha256:%x", h.Sum(nil)), nil
}

func hashTreeEntry(h hash.Hash, p, rel string, buf []byte) error {
	var st unix.Stat_t
	if err := unix.Lstat(p, &st); err != nil {
		return err
	}
	mtime := st.Mtim.Nano()
	if rel == "." {
		mtime = 0
	}
	var hdr bytes.Buffer
	hdr.WriteString(rel)
	hdr.WriteByte(0)
	for _, v := range []uint64{uint64(st.Mode), uint64(st.Uid), uint64(st.Gid), uint64(st.Size), uint64(mtime), st.Rdev} {
		binary.Write(&hdr, binary.BigEndian, v)
	}
	if st.Mode&syscall.S_IFMT == syscall.S_IFLNK {
		target, err := os.Readlink(p)
		if err != nil {
			return err
		}
		hdr.WriteString(target)
		hdr.WriteByte(0)
	}
	xs, err := xattrs(p)
	if err != nil {
		return err
	}
	for _, x := range xs {
		hdr.WriteString(x)
		hdr.WriteByte(0)
	}
	binary.Write(h, binary.BigEndian, uint64(hdr.Len()))
	h.Write(hdr.Bytes())
	if st.Mode&syscall.S_IFMT != syscall.S_IFREG {
		return nil
	}
	f, err := os.Open(p)
	if err != nil {
		return err
	}
	defer f.Close()
	n, err := io.CopyBuffer(h, f, buf)
	if err != nil {
		return err
	}
	if n != st.Size {
		return fmt.Errorf("%s changed while it was read", p)
	}
	return nil
}

// xattrs is the sorted "name=value" list of p's extended attributes.
func xattrs(p string) ([]string, error) {
	sz, err := unix.Llistxattr(p, nil)
	if errors.Is(err, unix.ENOTSUP) || sz == 0 {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	names := make([]byte, sz)
	if sz, err = unix.Llistxattr(p, names); err != nil {
		return nil, err
	}
	var out []string
	for _, name := range bytes.Split(names[:sz], []byte{0}) {
		if len(name) == 0 {
			continue
		}
		vsz, err := unix.Lgetxattr(p, string(name), nil)
		if err != nil {
			return nil, err
		}
		val := make([]byte, vsz)
		if vsz, err = unix.Lgetxattr(p, string(name), val); err != nil {
			return nil, err
		}
		out = append(out, string(name)+"="+hex.EncodeToString(val[:vsz]))
	}
	sort.Strings(out)
	return out, nil
}

// errNoTreeDigest is a tree with no digest beside it: unpacked by an older
// layerimg, or the digest file lost.
var errNoTreeDigest = errors.New("no tree digest recorded beside it")

// checkTree compares the tree at dir with the digest recorded beside it.
func checkTree(dir string) error {
	want, err := os.ReadFile(treeSumPath(dir))
	if errors.Is(err, os.ErrNotExist) {
		return errNoTreeDigest
	}
	if err != nil {
		return err
	}
	got, err := TreeDigest(dir)
	if err != nil {
		return err
	}
	if got != string(bytes.TrimSpace(want)) {
		return fmt.Errorf("the tree has digest %s, %s records %s (a file in it was changed)", got, filepath.Base(treeSumPath(dir)), bytes.TrimSpace(want))
	}
	return nil
}
