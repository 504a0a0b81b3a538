package diskset

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/klauspost/compress/zstd"
	"golang.org/x/sync/errgroup"

	"github.com/layerimg/layerimg/disk/format"
	"github.com/layerimg/layerimg/disk/sparse"
	"github.com/layerimg/layerimg/layers"
)

// Section is the name of the disk sets' section in a registry cache's index
// (docs/cache.md).
const Section = "disks"

// RemoteDisk is a finished set of disks in a registry cache. Its JSON is
// the registry cache format: do not change it.
type RemoteDisk struct {
	Key   string                     `json:"key"`
	Boot  string                     `json:"boot"`
	Files map[string]Blob            `json:"files"`
	Meta  map[string]json.RawMessage `json:"meta,omitempty"`
}

// Blob is one disk file stored as a blob.
type Blob struct {
	Digest    v1.Hash         `json:"digest"`
	Size      int64           `json:"size"`      // of the blob
	FileSize  int64           `json:"file_size"` // of the disk file once unpacked
	MediaType types.MediaType `json:"mediaType"`
}

// MediaType is the media type of a disk file in a registry: the file,
// zstd-compressed, so a sparse raw disk travels as about its data.
func MediaType(f string) types.MediaType {
	return types.MediaType(format.Format(f).MediaType())
}

type remoteSet struct {
	d    RemoteDisk
	repo name.Repository
}

// Remote is the disk sets that the registry caches of a build hold.
type Remote struct {
	rc   *layers.RemoteCache
	sets map[string]remoteSet
	log  *slog.Logger
}

// NewRemote reads the disk sets from rc's indexes; an earlier cache wins
// for a key. rc may be nil (no registry caches).
func NewRemote(rc *layers.RemoteCache, log *slog.Logger) *Remote {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	r := &Remote{rc: rc, sets: map[string]remoteSet{}, log: log}
	for _, x := range rc.Extra(Section) {
		var ds []RemoteDisk
		if err := json.Unmarshal(x.Data, &ds); err != nil {
			log.Warn("unreadable disk sets in a registry cache; ignoring them", "repo", x.Repo, "err", err)
			continue
		}
		for _, d := range ds {
			if _, ok := r.sets[d.Key]; !ok {
				r.sets[d.Key] = remoteSet{d, x.Repo}
			}
		}
	}
	return r
}

// Has says whether a registry cache has the set for key with every format
// of fs.
func (r *Remote) Has(key string, fs []string) bool {
	if r == nil {
		return false
	}
	s, ok := r.sets[key]
	if !ok {
		return false
	}
	for _, f := range fs {
		if _, ok := s.d.Files[f]; !ok {
			return false
		}
	}
	return true
}

// Pull fetches the set for key, in formats fs, from the registry caches
// into the cache, unpacking each file sparse. Each format is pulled in
// parallel: the pulls wait on the network, the unpacking on a core.
func (c *Cache) Pull(ctx context.Context, r *Remote, key string, fs []string) (*Set, error) {
	if !r.Has(key, fs) {
		return nil, fmt.Errorf("no disk set %s with %v in the registry caches", key, fs)
	}
	rs := r.sets[key]
	work, err := c.Scratch()
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(work) // a no-op once installed
	s := &Set{Boot: rs.d.Boot, Files: map[string]File{}}
	var mu sync.Mutex
	g, _ := errgroup.WithContext(ctx)
	for _, f := range fs {
		g.Go(func() error {
			df, err := r.pullFile(rs, f, filepath.Join(work, FileName(f)))
			if err != nil {
				return fmt.Errorf("%s: %w", f, err)
			}
			mu.Lock()
			s.Files[f] = df
			mu.Unlock()
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	if err := s.writeMeta(work); err != nil {
		return nil, err
	}
	return s, c.install(key, work, s)
}

// pullFile fetches the blob of format f of rs and unpacks it at p.
func (r *Remote) pullFile(rs remoteSet, f, p string) (File, error) {
	out, err := os.Create(p)
	if err != nil {
		return File{}, err
	}
	b := rs.d.Files[f]
	pr, pw := io.Pipe()
	start := time.Now()
	fetched := make(chan struct{})
	go func() {
		defer close(fetched)
		n, err := r.rc.FetchBlob(rs.repo, b.Digest, pw)
		if err != nil {
			err = fmt.Errorf("pulling %s disk from %s: %w", f, rs.repo, err)
		} else {
			r.log.Info("pulled disk", "format", f, "bytes", n, "rate", layers.Rate(n, time.Since(start)))
		}
		pw.CloseWithError(err)
	}()
	err = decompressSparse(pr, out, b.FileSize)
	pr.CloseWithError(err)
	<-fetched // the fetch ends once the pipe is closed
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return File{}, err
	}
	df, err := Describe(p)
	if err != nil {
		return File{}, err
	}
	if df.Size != b.FileSize {
		return File{}, fmt.Errorf("unpacked to %d bytes, the cache says %d", df.Size, b.FileSize)
	}
	return df, nil
}

// Packed is a set ready for a registry: each file compressed, as a blob.
type Packed struct {
	Disk   RemoteDisk
	Blobs  []v1.Layer // in the order of Titles
	Titles []string   // each blob's file name: disk.raw.zst, ...
}

// Pack compresses each file of s once (kept beside it, for the next push)
// and describes it as a blob. key is the set's cache key.
func (s *Set) Pack(key string) (*Packed, error) {
	p := &Packed{Disk: RemoteDisk{Key: key, Boot: s.Boot, Files: map[string]Blob{}}}
	for _, f := range s.Formats() {
		src := s.Path(f)
		zst := src + ".zst"
		if _, err := os.Stat(zst); err != nil {
			if err := compressFile(src, zst+".tmp"); err != nil {
				return nil, fmt.Errorf("compressing %s: %w", src, err)
			}
			if err := os.Rename(zst+".tmp", zst); err != nil {
				return nil, err
			}
		}
		b, err := layers.NewFileBlob(zst, MediaType(f))
		if err != nil {
			return nil, err
		}
		fi, err := os.Stat(src)
		if err != nil {
			return nil, err
		}
		p.Disk.Files[f] = Blob{Digest: b.Hash, Size: b.Length, FileSize: fi.Size(), MediaType: b.Type}
		p.Blobs = append(p.Blobs, b)
		p.Titles = append(p.Titles, FileName(f)+".zst")
	}
	return p, nil
}

// AddTo adds p to what --cache-to pushes: its section of the index and its
// blobs.
func (p *Packed) AddTo(exp *layers.CacheExport) error {
	data, err := json.Marshal([]RemoteDisk{p.Disk})
	if err != nil {
		return err
	}
	if exp.Extra == nil {
		exp.Extra = map[string]json.RawMessage{}
	}
	exp.Extra[Section] = data
	exp.Blobs = append(exp.Blobs, p.Blobs...)
	return nil
}

// compressFile writes src zstd-compressed to dst: a sparse disk of a few GiB
// becomes about the size of its data.
func compressFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.Create(dst)
	if err != nil {
		return err
	}
	enc, err := zstd.NewWriter(out, zstd.WithEncoderConcurrency(4), zstd.WithEncoderLevel(zstd.SpeedFastest))
	if err != nil {
		out.Close()
		return err
	}
	_, err = io.Copy(enc, in)
	if cerr := enc.Close(); err == nil {
		err = cerr
	}
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	return err
}

// decompressSparse unpacks the zstd stream r into dst, leaving runs of
// zeros as holes. It stops at max bytes: a registry cache's blob that
// unpacks to more than its index says would otherwise fill the disk first.
func decompressSparse(r io.Reader, dst *os.File, max int64) error {
	d, err := zstd.NewReader(r)
	if err != nil {
		return err
	}
	defer d.Close()
	buf := make([]byte, 1<<20)
	var off int64
	for {
		n, err := io.ReadFull(d, buf)
		if off+int64(n) > max {
			return fmt.Errorf("the blob unpacks to more than the %d bytes the cache index says", max)
		}
		if n > 0 {
			if err := writeData(dst, buf[:n], off); err != nil {
				return err
			}
			off += int64(n)
		}
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return dst.Truncate(off)
		}
		if err != nil {
			return err
		}
	}
}

// writeData writes the 64 KiB blocks of buf that are not all zeros at off.
func writeData(dst *os.File, buf []byte, off int64) error {
	for b := 0; b < len(buf); b += 64 << 10 {
		blk := buf[b:min(b+(64<<10), len(buf))]
		if !sparse.IsZero(blk) {
			if _, err := dst.WriteAt(blk, off+int64(b)); err != nil {
				return err
			}
		}
	}
	return nil
}
