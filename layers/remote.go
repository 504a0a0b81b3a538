package layers

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"sort"
	"sync/atomic"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/layerimg/layerimg/internal/progress"
)

// Media types of the registry cache format (docs/cache.md).
const (
	CacheArtifactType types.MediaType = "application/vnd.layerimg.cache.v1"
	CacheConfigType   types.MediaType = "application/vnd.layerimg.cache.config.v1+json"
	keyAnnotation                     = "dev.layerimg.cache.key"
)

// CacheIndex is the config blob of a registry cache: which key made which
// layer, plus sections other stages add (the disk sets, under "disks"),
// kept as raw JSON so that this package need not know what they hold.
type CacheIndex struct {
	Version int
	Entries []Entry
	Extra   map[string]json.RawMessage
}

// indexHead is the part of the index this package reads and writes itself.
type indexHead struct {
	Version int     `json:"version"`
	Entries []Entry `json:"entries"`
}

// MarshalJSON writes version and entries first, then the extra sections in
// name order: the same bytes as when the sections were fields.
func (x CacheIndex) MarshalJSON() ([]byte, error) {
	b, err := json.Marshal(indexHead{x.Version, x.Entries})
	if err != nil {
		return nil, err
	}
	names := make([]string, 0, len(x.Extra))
	for n := range x.Extra {
		names = append(names, n)
	}
	sort.Strings(names)
	b = b[:len(b)-1] // reopen the object
	for _, n := range names {
		k, err := json.Marshal(n)
		if err != nil {
			return nil, err
		}
		b = append(append(append(b, ','), k...), ':')
		b = append(b, x.Extra[n]...)
	}
	return append(b, '}'), nil
}

// UnmarshalJSON reads version and entries and keeps every other field as
// an extra section.
func (x *CacheIndex) UnmarshalJSON(data []byte) error {
	var head indexHead
	if err := json.Unmarshal(data, &head); err != nil {
		return err
	}
	var all map[string]json.RawMessage
	if err := json.Unmarshal(data, &all); err != nil {
		return err
	}
	delete(all, "version")
	delete(all, "entries")
	x.Version, x.Entries, x.Extra = head.Version, head.Entries, nil
	if len(all) > 0 {
		x.Extra = all
	}
	return nil
}

// RemoteExtra is one registry cache's extra section of a name, and the
// repository that holds the blobs it refers to.
type RemoteExtra struct {
	Repo name.Repository
	Data json.RawMessage
}

type remoteEntry struct {
	e    Entry
	repo name.Repository
}

// RemoteCache is what the --cache-from references hold, read once per build.
type RemoteCache struct {
	reg     Registry
	ctx     context.Context
	entries map[string]remoteEntry
	extra   map[string][]RemoteExtra // by section name, in the refs' order
	pulled  atomic.Int64
}

// Pulled is the number of bytes fetched from registries so far.
func (rc *RemoteCache) Pulled() int64 {
	if rc == nil {
		return 0
	}
	return rc.pulled.Load()
}

// LoadRemoteCaches reads the cache index of every reference, in order; an
// earlier reference wins for a key. A registry that cannot be read is a
// warning, not a failure: the build runs the steps itself.
func LoadRemoteCaches(ctx context.Context, refs []string, reg Registry) *RemoteCache {
	rc := &RemoteCache{reg: reg, ctx: ctx, entries: map[string]remoteEntry{}, extra: map[string][]RemoteExtra{}}
	for _, ref := range refs {
		idx, repo, err := rc.readIndex(ctx, ref)
		if err != nil {
			reg.log().Warn("cannot read the registry cache; steps it would have provided will run", "ref", ref, "err", err)
			continue
		}
		n := 0
		for _, e := range idx.Entries {
			if _, ok := rc.entries[e.Key]; !ok {
				rc.entries[e.Key] = remoteEntry{e, repo}
				n++
			}
		}
		var sections []string
		for name, data := range idx.Extra {
			rc.extra[name] = append(rc.extra[name], RemoteExtra{repo, data})
			sections = append(sections, name)
		}
		sort.Strings(sections)
		reg.log().Info("registry cache", "ref", ref, "entries", n, "sections", sections)
	}
	return rc
}

func (rc *RemoteCache) readIndex(ctx context.Context, ref string) (*CacheIndex, name.Repository, error) {
	r, err := rc.reg.ParseRef(ref)
	if err != nil {
		return nil, name.Repository{}, err
	}
	desc, err := remote.Get(r, rc.reg.Options(ctx)...)
	if err != nil {
		return nil, name.Repository{}, fmt.Errorf("reading %s: %w", ref, err)
	}
	var m v1.Manifest
	if err := json.Unmarshal(desc.Manifest, &m); err != nil {
		return nil, name.Repository{}, fmt.Errorf("%s: not a manifest: %w", ref, err)
	}
	if m.Config.MediaType != CacheConfigType {
		return nil, name.Repository{}, fmt.Errorf("%s is not a layerimg cache (config media type %s, want %s)", ref, m.Config.MediaType, CacheConfigType)
	}
	blob, err := remote.Layer(r.Context().Digest(m.Config.Digest.String()), rc.reg.Options(ctx)...)
	if err != nil {
		return nil, name.Repository{}, fmt.Errorf("%s: cache index: %w", ref, err)
	}
	data, err := readAllVerified(blob, m.Config.Digest, 16<<20)
	if err != nil {
		return nil, name.Repository{}, fmt.Errorf("%s: cache index: %w", ref, err)
	}
	rc.pulled.Add(int64(len(data)) + int64(len(desc.Manifest)))
	var idx CacheIndex
	if err := json.Unmarshal(data, &idx); err != nil || idx.Version != 1 {
		return nil, name.Repository{}, fmt.Errorf("%s: unreadable cache index (version %d): %v", ref, idx.Version, err)
	}
	return &idx, r.Context(), nil
}

func readAllVerified(l v1.Layer, want v1.Hash, limit int64) ([]byte, error) {
	rc, err := l.Compressed()
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	data, err := io.ReadAll(io.LimitReader(rc, limit))
	if err != nil {
		return nil, err
	}
	got, _, err := v1.SHA256(bytes.NewReader(data))
	if err != nil || got != want {
		return nil, fmt.Errorf("content has digest %s, want %s", got, want)
	}
	return data, nil
}

// Lookup finds key in the registry caches. The returned layer pulls its
// blob into the local cache (verifying it) only when its bytes are needed,
// and records the entry locally then.
func (rc *RemoteCache) Lookup(c *Cache, key string) (*Entry, v1.Layer) {
	if rc == nil {
		return nil, nil
	}
	re, ok := rc.entries[key]
	if !ok {
		return nil, nil
	}
	e := re.e
	return &e, &lazyLayer{cachedLayer: cachedLayer{c, e.Layer}, rc: rc, e: e, repo: re.repo}
}

// Extra is every registry cache's section of that name, in the order the
// references were given (an earlier one wins, as for entries).
func (rc *RemoteCache) Extra(name string) []RemoteExtra {
	if rc == nil {
		return nil
	}
	return rc.extra[name]
}

// FetchBlob streams the blob d of repo to w, verifying its digest, and
// counts its bytes as pulled. It is for blobs an extra section refers to.
func (rc *RemoteCache) FetchBlob(repo name.Repository, d v1.Hash, w io.Writer) (int64, error) {
	l, err := remote.Layer(repo.Digest(d.String()), rc.reg.Options(rc.ctx)...)
	if err != nil {
		return 0, err
	}
	r, err := l.Compressed()
	if err != nil {
		return 0, err
	}
	defer r.Close()
	h := newHashWriter(w)
	n, err := io.Copy(h, r)
	rc.pulled.Add(n)
	if err != nil {
		return n, err
	}
	if h.Digest() != d {
		return n, fmt.Errorf("blob %s: content has digest %s", d, h.Digest())
	}
	return n, nil
}

// lazyLayer is a cached layer whose blob may still be in a registry.
type lazyLayer struct {
	cachedLayer
	rc   *RemoteCache
	e    Entry
	repo name.Repository
}

func (l *lazyLayer) ensure() error {
	if _, err := os.Stat(l.c.BlobPath(l.d.Digest)); err == nil {
		return nil
	}
	rl, err := remote.Layer(l.repo.Digest(l.d.Digest.String()), l.rc.reg.Options(l.rc.ctx)...)
	if err != nil {
		return fmt.Errorf("pulling layer of step %s: %w", l.e.Step, err)
	}
	r, err := rl.Compressed()
	if err != nil {
		return fmt.Errorf("pulling layer of step %s: %w", l.e.Step, err)
	}
	defer r.Close()
	start := time.Now()
	m := progress.Start(l.rc.ctx, "pulling layer of step "+l.e.Step, l.d.Size)
	defer m.Finish()
	if err := l.c.PutBlob(m.Reader(r), l.d.Digest); err != nil {
		return fmt.Errorf("pulling layer of step %s: %w", l.e.Step, err)
	}
	l.rc.pulled.Add(l.d.Size)
	l.rc.reg.log().Info("pulled layer", "step", l.e.Step, "digest", l.d.Digest.String()[:19], "bytes", l.d.Size, "rate", Rate(l.d.Size, time.Since(start)))
	e := l.e
	e.Created = time.Now().UTC()
	return l.c.Store(e)
}

func (l *lazyLayer) Compressed() (io.ReadCloser, error) {
	if err := l.ensure(); err != nil {
		return nil, err
	}
	return l.cachedLayer.Compressed()
}

func (l *lazyLayer) Uncompressed() (io.ReadCloser, error) {
	if err := l.ensure(); err != nil {
		return nil, err
	}
	return l.cachedLayer.Uncompressed()
}

// Source returns, for a layer not pulled yet, the registry layer itself, so a
// push to the same registry can mount it instead of moving its bytes.
func (l *lazyLayer) Source() v1.Layer {
	if _, err := os.Stat(l.c.BlobPath(l.d.Digest)); err == nil {
		return nil
	}
	rl, err := remote.Layer(l.repo.Digest(l.d.Digest.String()), l.rc.reg.Options(l.rc.ctx)...)
	if err != nil {
		return nil
	}
	return rl
}

// Rate is a transfer's speed as progress lines say it: n bytes in d, in
// MB/s. Layers and disk sets, pushed or pulled, report it alike.
func Rate(n int64, d time.Duration) string {
	if d <= 0 {
		d = time.Millisecond
	}
	return fmt.Sprintf("%.1f MB/s", float64(n)/1e6/d.Seconds())
}

// CacheExport is what --cache-to pushes.
type CacheExport struct {
	Recipe  string
	Entries []Entry
	Layers  []v1.Layer // the layers of Entries, in order
	// Extra sections of the index, by name, and the blobs they refer to:
	// listed after the layers, so that the registry keeps them.
	Extra map[string]json.RawMessage
	Blobs []v1.Layer
}

// PushCache writes exp as a cache artifact at ref: every blob first (a HEAD
// before each upload skips what the registry has; a blob already in another
// repository of the same registry is mounted), the index, then the manifest.
// An interrupted push leaves the local cache as it was; the next one
// uploads only what is missing.
func PushCache(ctx context.Context, ref string, exp CacheExport, reg Registry) error {
	r, err := reg.ParseRef(ref)
	if err != nil {
		return err
	}
	opts := reg.Options(ctx)
	idx := CacheIndex{Version: 1, Entries: exp.Entries, Extra: exp.Extra}
	cfg, err := json.Marshal(idx)
	if err != nil {
		return err
	}
	m := v1.Manifest{SchemaVersion: 2, MediaType: types.OCIManifestSchema1,
		Annotations: map[string]string{"dev.layerimg.recipe": exp.Recipe}}
	all := append(append([]v1.Layer(nil), exp.Layers...), exp.Blobs...)
	for i, l := range all {
		if ll, ok := l.(*lazyLayer); ok {
			if src := ll.Source(); src != nil {
				l = src
			}
		}
		start := time.Now()
		popts, wait := PushProgress(ctx, fmt.Sprintf("pushing cache blob %d of %d", i+1, len(all)))
		err := remote.WriteLayer(r.Context(), l, append(opts, popts...)...)
		wait()
		if err != nil {
			return fmt.Errorf("pushing cache blob %d of %d to %s: %w", i+1, len(all), r.Context(), err)
		}
		d, _ := l.Digest()
		size, _ := l.Size()
		mt, _ := l.MediaType()
		reg.log().Info("cache blob in place", "digest", d.String()[:19], "bytes", size, "elapsed", time.Since(start).Round(time.Millisecond))
		desc := v1.Descriptor{MediaType: mt, Digest: d, Size: size}
		if i < len(exp.Entries) {
			desc.Annotations = map[string]string{keyAnnotation: exp.Entries[i].Key}
		}
		m.Layers = append(m.Layers, desc)
	}
	cl := static.NewLayer(cfg, CacheConfigType)
	if err := remote.WriteLayer(r.Context(), cl, opts...); err != nil {
		return fmt.Errorf("pushing cache index to %s: %w", r.Context(), err)
	}
	cd, _ := cl.Digest()
	m.Config = v1.Descriptor{MediaType: CacheConfigType, Digest: cd, Size: int64(len(cfg))}
	raw, err := json.Marshal(m)
	if err != nil {
		return err
	}
	if err := remote.Put(r, rawManifest{raw, types.OCIManifestSchema1}, opts...); err != nil {
		return fmt.Errorf("pushing cache manifest %s: %w", ref, err)
	}
	reg.log().Info("cache pushed", "ref", ref, "entries", len(exp.Entries), "blobs", len(exp.Blobs))
	return nil
}

type rawManifest struct {
	b  []byte
	mt types.MediaType
}

func (m rawManifest) RawManifest() ([]byte, error)        { return m.b, nil }
func (m rawManifest) MediaType() (types.MediaType, error) { return m.mt, nil }
