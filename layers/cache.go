package layers

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"golang.org/x/sys/unix"

	"github.com/layerimg/layerimg/internal/userns"
	"github.com/layerimg/layerimg/rootfs"
)

// Cache is the local layer cache: an OCI image layout (blobs/sha256/...)
// plus one small JSON file per cache key under keys/, and layers unpacked for
// use as overlayfs lower dirs under unpacked/ (or unpacked-rootless/, see
// Rootless).
//
// Every file is written to a temporary name and renamed, so a build killed at
// any moment leaves only whole entries. Builds hold a shared lock on the
// cache and prune an exclusive one, so many builds may share a cache.
type Cache struct {
	dir  string
	lock *os.File
	tmp  string // this process's scratch dir, removed by Close
	tmpL *os.File
	log  *slog.Logger
	// rootless is set inside the user namespace of a rootless build.
	rootless bool
}

// Entry maps a cache key to the layer that the step produced.
type Entry struct {
	Key     string     `json:"key"`
	Step    string     `json:"step"`
	Input   KeyInput   `json:"input"`
	Layer   Descriptor `json:"layer"`
	Created time.Time  `json:"created"`
	// Mode is how the step ran: "rootless" in a user namespace, "root"
	// (or empty, in entries made before modes were recorded) as root.
	// The key does not depend on it: both make the same layer.
	Mode string `json:"mode,omitempty"`
	// Sum is the checksum of the rest of the entry (see entrySum): a key
	// file that was changed is noticed and dropped.
	Sum string `json:"sum,omitempty"`
}

// DefaultCacheDir is $XDG_CACHE_HOME/layerimg, or ~/.cache/layerimg.
func DefaultCacheDir() (string, error) {
	d, err := os.UserCacheDir()
	if err != nil {
		return "", fmt.Errorf("finding a cache directory (set --cache-dir): %w", err)
	}
	return filepath.Join(d, "layerimg"), nil
}

// OpenCache opens (creating if needed) the cache at dir. exclusive waits for
// every other user to finish; prune needs that.
func OpenCache(dir string, exclusive bool, log *slog.Logger) (*Cache, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	// The sandbox mounts lower dirs by path after leaving the working
	// directory: a relative cache dir would name nothing there.
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("cache %s: %w", dir, err)
	}
	dir = abs
	for _, d := range []string{"blobs/sha256", "keys", "unpacked", unpackedRootless, "tmp", "records", "headers", "contents"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			return nil, fmt.Errorf("creating cache %s: %w", dir, err)
		}
	}
	c := &Cache{dir: dir, log: log, rootless: userns.Inside()}
	for name, data := range map[string]string{
		"oci-layout": `{"imageLayoutVersion":"1.0.0"}`,
		"index.json": `{"schemaVersion":2,"manifests":[]}`,
	} {
		if _, err := os.Stat(filepath.Join(dir, name)); errors.Is(err, os.ErrNotExist) {
			if err := c.writeFile(filepath.Join(dir, name), []byte(data)); err != nil {
				return nil, err
			}
		}
	}
	f, err := os.OpenFile(filepath.Join(dir, "lock"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, fmt.Errorf("opening cache lock: %w", err)
	}
	how := unix.LOCK_SH
	if exclusive {
		how = unix.LOCK_EX
	}
	if err := unix.Flock(int(f.Fd()), how); err != nil {
		f.Close()
		return nil, fmt.Errorf("locking cache %s: %w", dir, err)
	}
	c.lock = f
	c.cleanStaleTmp()
	if err := c.makeTmp(); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

// unpackedRootless holds the lower dirs of rootless builds. They are kept
// apart from root's: made in a user namespace, their files belong to the
// user's subordinate ids, opaque directories carry user.overlay.opaque (an
// unprivileged overlayfs reads no trusted.* xattr), and device nodes, which
// no user namespace may create, are left out (a sandbox mounts its own
// /dev, where images keep theirs).
const unpackedRootless = "unpacked-rootless"

// Rootless reports whether this cache serves a rootless build: its steps
// run in a user namespace, with lower dirs under unpacked-rootless/.
func (c *Cache) Rootless() bool { return c.rootless }

// Mode is how this process builds, as build manifests and entries record
// it: "root", or "rootless" (in a user namespace, or as an ordinary user
// whose steps need no namespace).
func (c *Cache) Mode() string {
	if c.rootless || os.Geteuid() != 0 {
		return "rootless"
	}
	return "root"
}

func (c *Cache) unpackedDir() string {
	if c.rootless {
		return filepath.Join(c.dir, unpackedRootless)
	}
	return filepath.Join(c.dir, "unpacked")
}

// Dir is the cache's directory.
func (c *Cache) Dir() string { return c.dir }

// TempDir is a scratch directory on the cache's filesystem, private to this
// process and removed by Close.
func (c *Cache) TempDir() string { return c.tmp }

// Close removes this process's scratch files and releases the lock.
func (c *Cache) Close() error {
	if c.tmp != "" {
		os.RemoveAll(c.tmp)
		os.Remove(c.tmp + ".lock")
		c.tmpL.Close()
	}
	return c.lock.Close()
}

func (c *Cache) makeTmp() error {
	var b [8]byte
	rand.Read(b[:])
	c.tmp = filepath.Join(c.dir, "tmp", hex.EncodeToString(b[:]))
	if err := os.Mkdir(c.tmp, 0o700); err != nil {
		return err
	}
	f, err := os.Create(c.tmp + ".lock")
	if err != nil {
		return err
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX); err != nil {
		f.Close()
		return err
	}
	c.tmpL = f
	return nil
}

// cleanStaleTmp removes the scratch dirs of processes that died: their lock
// is free.
func (c *Cache) cleanStaleTmp() {
	locks, _ := filepath.Glob(filepath.Join(c.dir, "tmp", "*.lock"))
	for _, l := range locks {
		f, err := os.Open(l)
		if err != nil {
			continue
		}
		if unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB) == nil {
			c.log.Debug("removing scratch files of an interrupted build", "dir", strings.TrimSuffix(l, ".lock"))
			os.RemoveAll(strings.TrimSuffix(l, ".lock"))
			os.Remove(l)
		}
		f.Close()
	}
	// Blobs and key files are written in the scratch dir, so a dead
	// build's temp files went with it above. Older versions wrote them
	// beside the blobs, with no lock: those go once an hour old.
	tmps, _ := filepath.Glob(filepath.Join(c.dir, "blobs", "sha256", ".tmp-*"))
	keys, _ := filepath.Glob(filepath.Join(c.dir, "keys", ".tmp-*"))
	for _, t := range append(tmps, keys...) {
		if fi, err := os.Stat(t); err == nil && time.Since(fi.ModTime()) > time.Hour {
			os.Remove(t)
		}
	}
}

// tempFile creates a temporary file for something to be renamed into dir:
// in this process's scratch dir, so that it goes with it if the process
// dies (same filesystem, so the rename is atomic).
func (c *Cache) tempFile(dir string) (*os.File, error) {
	if c.tmp != "" {
		dir = c.tmp
	}
	return os.CreateTemp(dir, ".tmp-*")
}

// writeFile writes data to path atomically.
func (c *Cache) writeFile(path string, data []byte) error {
	f, err := c.tempFile(filepath.Dir(path))
	if err != nil {
		return err
	}
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(f.Name(), path)
	}
	if err != nil {
		os.Remove(f.Name())
	}
	return err
}

// BlobPath is where the blob with digest d lives.
func (c *Cache) BlobPath(d v1.Hash) string {
	return filepath.Join(c.dir, "blobs", d.Algorithm, d.Hex)
}

// WriteLayer compresses the tar that fill writes and stores it as a blob.
func (c *Cache) WriteLayer(comp Compression, fill func(io.Writer) error) (Descriptor, error) {
	f, err := c.tempFile(filepath.Join(c.dir, "blobs", "sha256"))
	if err != nil {
		return Descriptor{}, err
	}
	defer os.Remove(f.Name())
	defer f.Close()
	lw, err := newLayerWriter(f, comp)
	if err != nil {
		return Descriptor{}, err
	}
	if err := fill(lw); err != nil {
		lw.Close()
		return Descriptor{}, err
	}
	desc, err := lw.Close()
	if err != nil {
		return Descriptor{}, err
	}
	if err := f.Sync(); err != nil {
		return Descriptor{}, err
	}
	if err := os.Rename(f.Name(), c.BlobPath(desc.Digest)); err != nil {
		return Descriptor{}, err
	}
	return desc, nil
}

// PutBlob stores r's bytes, verifying them against want.
func (c *Cache) PutBlob(r io.Reader, want v1.Hash) error {
	f, err := c.tempFile(filepath.Join(c.dir, "blobs", "sha256"))
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(io.MultiWriter(f, h), r); err != nil {
		return err
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != want.Hex {
		return fmt.Errorf("blob %s: content has digest sha256:%s", want, got)
	}
	if err := f.Sync(); err != nil {
		return err
	}
	return os.Rename(f.Name(), c.BlobPath(want))
}

// VerifyBlob hashes a stored blob and checks it against its name.
func (c *Cache) VerifyBlob(d v1.Hash) error {
	f, err := os.Open(c.BlobPath(d))
	if err != nil {
		return err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return err
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != d.Hex {
		return fmt.Errorf("blob %s is corrupt: its content has digest sha256:%s", d, got)
	}
	return nil
}

// OpenLayer opens the uncompressed tar of a stored layer. The reader
// fails at EOF unless the blob has d's digest and its content d's diff_id.
func (c *Cache) OpenLayer(d Descriptor) (io.ReadCloser, error) {
	f, err := os.Open(c.BlobPath(d.Digest))
	if err != nil {
		return nil, err
	}
	name := "cached layer " + d.Digest.String()
	blob := newVerifyReader(f, f, name, d.Digest, "content", "its name says")
	r, err := decompress(blob, d.MediaType)
	if err != nil {
		f.Close()
		return nil, err
	}
	tr := newVerifyReader(r, r, name, d.DiffID, "uncompressed content", "its cache entry's diff_id is")
	return &multiCloser{tr, []io.Closer{r, f}}, nil
}

type multiCloser struct {
	io.Reader
	cs []io.Closer
}

func (m *multiCloser) Close() error {
	var err error
	for _, c := range m.cs {
		if e := c.Close(); err == nil {
			err = e
		}
	}
	return err
}

func (c *Cache) keyPath(key string) string {
	return filepath.Join(c.dir, "keys", strings.TrimPrefix(key, "sha256:")+".json")
}

// Lookup returns the entry for key, or nil when there is none. The key
// file must match its checksum and the layer it names must match the
// entry (its blob's digest and size, its content's diff_id); otherwise the
// entry is dropped with a warning naming the file, and the step is rebuilt.
// A corrupt blob is dropped too.
func (c *Cache) Lookup(key string) (*Entry, error) {
	e, err := c.checkEntry(key, false)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		var bad *badItem
		if !errors.As(err, &bad) {
			return nil, err
		}
		c.log.Warn("dropping a corrupt cache entry; the step will be rebuilt", "file", bad.path, "why", bad.why)
		bad.drop()
		return nil, nil
	}
	now := time.Now()
	os.Chtimes(c.keyPath(key), now, now) // last use, for prune
	return e, nil
}

// badItem is a cache item that failed its check: path names it, drop
// removes it (and what depends on it).
type badItem struct {
	path string
	why  error
	drop func()
}

func (b *badItem) Error() string { return b.path + ": " + b.why.Error() }

// checkEntry reads and checks the entry for key; deep also checks its
// layer's diff_id (see checkLayer). A key file written before entries had
// checksums is checked through its layer, deeply, and then rewritten with
// one.
func (c *Cache) checkEntry(key string, deep bool) (*Entry, error) {
	kp := c.keyPath(key)
	data, err := os.ReadFile(kp)
	if err != nil {
		return nil, err
	}
	dropKey := func() { os.Remove(kp) }
	e, legacy, err := readEntry(data, key)
	if err != nil {
		return nil, &badItem{c.rel(kp), err, dropKey}
	}
	if err := c.checkLayer(e.Layer, deep || legacy); err != nil {
		if errors.Is(err, os.ErrNotExist) {
			err = fmt.Errorf("its layer blob %s is missing", e.Layer.Digest)
		}
		return nil, &badItem{c.rel(kp), err, func() {
			// The blob goes too unless it is sound and only the entry
			// lied about it.
			if c.VerifyBlob(e.Layer.Digest) != nil {
				os.Remove(c.BlobPath(e.Layer.Digest))
			}
			dropKey()
		}}
	}
	if legacy {
		c.Store(e) // add the checksum; a failure only costs the next check
	}
	return &e, nil
}

// rel is p relative to the cache, for messages.
func (c *Cache) rel(p string) string {
	if r, err := filepath.Rel(c.dir, p); err == nil {
		return r
	}
	return p
}

// Store records that key produced the layer in e. The blob must be stored.
func (c *Cache) Store(e Entry) error {
	e.Sum = entrySum(e)
	data, err := json.MarshalIndent(e, "", "  ")
	if err != nil {
		return err
	}
	return c.writeFile(c.keyPath(e.Key), data)
}

// Entries lists every cache entry, oldest use first.
func (c *Cache) Entries() ([]Entry, []time.Time, error) {
	files, err := filepath.Glob(filepath.Join(c.dir, "keys", "*.json"))
	if err != nil {
		return nil, nil, err
	}
	var es []Entry
	var used []time.Time
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		var e Entry
		if json.Unmarshal(data, &e) != nil {
			continue
		}
		fi, err := os.Stat(f)
		if err != nil {
			continue
		}
		es = append(es, e)
		used = append(used, fi.ModTime())
	}
	idx := make([]int, len(es))
	for i := range idx {
		idx[i] = i
	}
	sort.SliceStable(idx, func(a, b int) bool { return used[idx[a]].Before(used[idx[b]]) })
	es2, used2 := make([]Entry, len(es)), make([]time.Time, len(es))
	for i, j := range idx {
		es2[i], used2[i] = es[j], used[j]
	}
	return es2, used2, nil
}

// Unpacked returns a directory holding the layer extracted in overlayfs form,
// extracting it once. open supplies the uncompressed tar. The tree's digest
// is recorded beside it when it is extracted and checked every time it is
// handed out: a tree that changed is dropped with a warning and extracted
// again. (Checking the digest costs ~0.3 s for a 110 MB tree of 4000
// files, extracting it again ~5 s: BenchmarkUnpackedCheck.)
func (c *Cache) Unpacked(ctx context.Context, diffID v1.Hash, name string, open func() (io.ReadCloser, error)) (string, error) {
	dst := filepath.Join(c.unpackedDir(), diffID.Hex)
	if _, err := os.Stat(dst); err == nil {
		err := checkTree(dst)
		switch {
		case err == nil:
			return dst, nil
		case errors.Is(err, errNoTreeDigest):
			c.log.Info("an unpacked layer has no tree digest to check it by; unpacking it again", "dir", c.rel(dst), "layer", name)
		default:
			c.log.Warn("dropping a corrupt unpacked layer; unpacking it again", "dir", c.rel(dst), "layer", name, "why", err)
		}
		c.dropTree(dst)
	}
	tmp, err := os.MkdirTemp(c.tmp, "unpack-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(tmp)
	rc, err := open()
	if err != nil {
		return "", fmt.Errorf("layer %s: %w", name, err)
	}
	defer rc.Close()
	// Hashed here too, whatever open's reader checks: diffID is what the
	// directory is named by, and so what later builds will trust.
	h := sha256.New()
	if err := rootfs.Apply(ctx, tmp, io.TeeReader(rc, h), rootfs.ApplyOptions{Layer: name, Overlay: true, UserNS: c.rootless}); err != nil {
		return "", err
	}
	if _, err := io.Copy(h, rc); err != nil { // tar padding after the end marker
		return "", &rootfs.LayerError{Layer: name, Err: err}
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != diffID.Hex {
		return "", fmt.Errorf("layer %s: uncompressed content has digest sha256:%s, its diff_id is %s", name, got, diffID)
	}
	sum, err := TreeDigest(tmp)
	if err != nil {
		return "", fmt.Errorf("layer %s: digesting the unpacked tree: %w", name, err)
	}
	// The digest goes first: a tree is never in place without one.
	if err := c.writeFile(treeSumPath(dst), []byte(sum+"\n")); err != nil {
		return "", err
	}
	if err := os.Rename(tmp, dst); err != nil {
		if _, serr := os.Stat(dst); serr == nil {
			return dst, nil // another build unpacked it first
		}
		return "", err
	}
	return dst, nil
}

// dropTree removes an unpacked tree. It is first renamed into this
// process's scratch dir, so no other build sees it half removed (a build
// that has it mounted keeps its files).
func (c *Cache) dropTree(dir string) {
	os.Remove(treeSumPath(dir))
	gone := dir
	if aside := filepath.Join(c.tmp, "drop-"+filepath.Base(dir)); os.Rename(dir, aside) == nil {
		gone = aside
	}
	os.RemoveAll(gone)
}

// Prune drops entries unused for keepDays and every blob and unpacked layer
// that no remaining entry or base needs. It needs an exclusive cache.
func (c *Cache) Prune(keepDays int, keep map[string]bool) (removed int, freed int64, err error) {
	es, used, err := c.Entries()
	if err != nil {
		return 0, 0, err
	}
	live := map[string]bool{}
	cutoff := time.Now().Add(-time.Duration(keepDays) * 24 * time.Hour)
	for i, e := range es {
		if used[i].Before(cutoff) {
			os.Remove(c.keyPath(e.Key))
			removed++
			continue
		}
		live[e.Layer.Digest.Hex] = true
		live[e.Layer.DiffID.Hex] = true
	}
	for k := range keep {
		live[k] = true
	}
	n, err := c.pruneKeyedDirs()
	freed += n
	if err != nil {
		return removed, freed, err
	}
	for _, sub := range []string{"blobs/sha256", "unpacked", unpackedRootless, "headers", "contents"} {
		ents, err := os.ReadDir(filepath.Join(c.dir, sub))
		if err != nil {
			return removed, freed, err
		}
		for _, d := range ents {
			if live[strings.TrimSuffix(d.Name(), ".tree")] {
				continue
			}
			p := filepath.Join(c.dir, sub, d.Name())
			freed += duSize(p)
			if err := os.RemoveAll(p); err != nil {
				return removed, freed, err
			}
		}
	}
	return removed, freed, nil
}

// Usage is the bytes each part of the cache takes on disk, by top-level
// folder (blobs, unpacked, keys, tmp, and every keyed folder).
func (c *Cache) Usage() map[string]int64 {
	u := map[string]int64{}
	ents, _ := os.ReadDir(c.dir)
	for _, e := range ents {
		if e.IsDir() {
			u[e.Name()] = duSize(filepath.Join(c.dir, e.Name()))
		}
	}
	return u
}

// keyedMarker marks a top-level folder made by KeyedDir.
const keyedMarker = ".keyed-by-entry"

// KeyedDir is the folder <cache>/name for what another stage makes from a
// cache entry: its subfolders are named by entry keys (the hex digest) and
// live as long as their entry does; Prune removes the rest. This lets a
// stage keep its own cache beside the layers without this package knowing
// what it holds.
func (c *Cache) KeyedDir(name string) (string, error) {
	dir := filepath.Join(c.dir, name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("creating %s: %w", dir, err)
	}
	marker := filepath.Join(dir, keyedMarker)
	if _, err := os.Stat(marker); err != nil {
		if err := os.WriteFile(marker, nil, 0o644); err != nil {
			return "", fmt.Errorf("marking %s: %w", dir, err)
		}
	}
	return dir, nil
}

// pruneKeyedDirs removes, in every keyed folder, what no entry keeps.
func (c *Cache) pruneKeyedDirs() (freed int64, err error) {
	tops, err := os.ReadDir(c.dir)
	if err != nil {
		return 0, err
	}
	for _, top := range tops {
		dir := filepath.Join(c.dir, top.Name())
		if _, err := os.Stat(filepath.Join(dir, keyedMarker)); err != nil {
			continue
		}
		ents, err := os.ReadDir(dir)
		if err != nil {
			return freed, err
		}
		for _, d := range ents {
			if strings.HasPrefix(d.Name(), ".") {
				continue
			}
			if _, err := os.Stat(c.keyPath("sha256:" + d.Name())); err == nil {
				continue
			}
			p := filepath.Join(dir, d.Name())
			freed += duSize(p)
			if err := os.RemoveAll(p); err != nil {
				return freed, err
			}
		}
	}
	return freed, nil
}

func duSize(p string) int64 {
	var n int64
	filepath.Walk(p, func(_ string, fi os.FileInfo, err error) error {
		if err == nil {
			// Blocks in use, not apparent size: files may be sparse.
			if st, ok := fi.Sys().(*syscall.Stat_t); ok {
				n += st.Blocks * 512
			} else {
				n += fi.Size()
			}
		}
		return nil
	})
	return n
}
