package layerimg

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"

	"github.com/layerimg/layerimg/disk"
	"github.com/layerimg/layerimg/disk/diskset"
	"github.com/layerimg/layerimg/disk/format"
	"github.com/layerimg/layerimg/disk/qemu"
	"github.com/layerimg/layerimg/disk/vhd"
	"github.com/layerimg/layerimg/internal/progress"
	"github.com/layerimg/layerimg/layers"
	"github.com/layerimg/layerimg/recipes"
	"github.com/layerimg/layerimg/rootfs"
)

// DiskFile is one disk written by a build.
type DiskFile = diskset.File

// DiskResult is what the disk stage made.
type DiskResult struct {
	Boot      string              `json:"boot"`
	Layer     string              `json:"generated_layer"`
	ContentID string              `json:"content_digest"` // the image digest the ids derive from
	Files     map[string]DiskFile `json:"files"`
	Cached    bool                `json:"cached"`

	// Key is the disk set's cache key: what cloud resources made from the
	// disks are tagged with. Not in the manifest.
	Key string `json:"-"`

	// For --cache-to: the generated layer's entry, and the disk set's
	// cache dir.
	entry    layers.Entry
	layer    v1.Layer
	cacheDir string
}

// diskOptions are what the disk stage needs of a build's options.
type diskOptions struct {
	Spec        recipes.Disk
	Formats     []string
	OutDir      string
	Unique      bool // random ids: never cached, handed over as is
	Digests     bool // each file's sha256 for the manifest
	Epoch       int64
	Compression layers.Compression
	Log         *slog.Logger
	// Arch is the image's architecture (amd64, arm64); "" tells it from
	// the loaders in the image.
	Arch string
}

// platformArch is the architecture of a recipe's platform, as the disk
// stage names it.
func platformArch(platform string) string { return disk.ArchOfPlatform(platform) }

func toSpec(d recipes.Disk, epoch int64, ids disk.IDs, arch string) (disk.Spec, error) {
	s := disk.Spec{Boot: d.Boot, Label: d.Label, KernelCmdline: d.KernelCmdline, Epoch: epoch, IDs: ids, Arch: arch}
	if d.Size != "" && d.Size != "auto" {
		n, err := recipes.ParseSize(d.Size)
		if err != nil {
			return s, err
		}
		s.Size = n
	}
	if d.ESPSize != "" {
		n, err := recipes.ParseSize(d.ESPSize)
		if err != nil {
			return s, err
		}
		s.ESPSize = n
	}
	return s, nil
}

// makeDisks turns img into disks in o.OutDir. The files the disk adds
// (fstab, the ESP's content under /boot/efi) become one more cached layer,
// and the returned image carries it, so the image matches the disk. Disks
// are cached by content: an unchanged image with an unchanged disk section
// is handed out of the disk-set cache (local, else a registry cache)
// without making a filesystem.
func makeDisks(ctx context.Context, c *layers.Cache, rc *layers.RemoteCache, img v1.Image, o diskOptions) (v1.Image, *DiskResult, error) {
	if o.Spec.Filesystem == "" {
		o.Spec.Filesystem = "ext4"
	}
	digest, err := img.Digest()
	if err != nil {
		return nil, nil, err
	}
	ds, err := diskset.Open(c, o.Log)
	if err != nil {
		return nil, nil, err
	}
	b := diskBuild{c: c, ds: ds, in: diskset.Key(digest.String(), o.Spec, o.Epoch, o.Compression), o: o}
	if o.Arch != "" && o.Arch != disk.AMD64 {
		// Disks made for another architecture before layerimg knew one
		// (x86-64 root type) are never reused; amd64's keys stay as they were.
		b.in.Platform = "linux/" + o.Arch
	}
	key := b.in.Key()
	entry, genLayer, err := lookupEntry(c, rc, key)
	if err != nil {
		return nil, nil, err
	}
	res := &DiskResult{ContentID: digest.String(), Key: key, cacheDir: ds.Dir(key)}
	var set *diskset.Set
	if !o.Unique && entry != nil {
		set = cachedSet(ctx, ds, diskset.NewRemote(rc, o.Log), key, o)
	}
	if set == nil {
		if entry, set, err = b.build(ctx, img); err != nil {
			return nil, nil, err
		}
		genLayer = c.Layer(entry.Layer)
	} else {
		res.Cached = true
		o.Log.Info("disks unchanged: reusing them", "key", short(key))
	}
	if o.Unique {
		defer os.RemoveAll(set.Dir)
	}
	res.Boot, res.Layer = set.Boot, entry.Layer.Digest.String()
	if res.Files, err = set.HandOut(o.OutDir, o.Formats, o.Digests); err != nil {
		return nil, nil, err
	}
	for _, f := range o.Formats {
		df := res.Files[f]
		args := []any{"format", f, "file", df.Path, "size", df.Size}
		if df.SHA256 != "" {
			args = append(args, "sha256", df.SHA256)
		}
		o.Log.Info("wrote disk", args...)
	}
	res.entry, res.layer = *entry, genLayer
	final, err := mutate.Append(img, mutate.Addendum{Layer: genLayer, MediaType: entry.Layer.MediaType, History: v1.History{
		Created: v1.Time{Time: time.Unix(o.Epoch, 0).UTC()}, CreatedBy: "layerimg disk: fstab and EFI system partition",
	}})
	return final, res, err
}

// lookupEntry finds the generated layer's entry for key: in the local
// cache, else in the registry caches.
func lookupEntry(c *layers.Cache, rc *layers.RemoteCache, key string) (*layers.Entry, v1.Layer, error) {
	e, err := c.Lookup(key)
	if err != nil {
		return nil, nil, err
	}
	if e != nil {
		return e, c.Layer(e.Layer), nil
	}
	e, l := rc.Lookup(c, key)
	return e, l, nil
}

// cachedSet is the finished set for key from the local disk-set cache, or
// else from a registry cache, so that nothing is flattened or formatted at
// all; nil when the disks must be made.
func cachedSet(ctx context.Context, ds *diskset.Cache, remote *diskset.Remote, key string, o diskOptions) *diskset.Set {
	if set, ok := ds.Lookup(ctx, key, o.Formats); ok {
		return set
	}
	if !remote.Has(key, o.Formats) {
		return nil
	}
	set, err := ds.Pull(ctx, remote, key, o.Formats)
	if err != nil {
		o.Log.Warn("could not pull the disks from the registry cache; making them here", "err", err)
		return nil
	}
	return set
}

// diskBuild makes one disk set from an image: index its layers, add the
// generated layer, stream them into the raw disk, convert it.
type diskBuild struct {
	c  *layers.Cache
	ds *diskset.Cache
	in layers.KeyInput // the disk stage's key input
	o  diskOptions
}

// build makes the set in a scratch dir and puts it in the disk-set cache
// (with random ids, leaves it in the scratch dir for the caller).
func (b diskBuild) build(ctx context.Context, img v1.Image) (*layers.Entry, *diskset.Set, error) {
	digest, err := img.Digest()
	if err != nil {
		return nil, nil, err
	}
	ids := disk.DeriveIDs(digest.String(), b.o.Unique)
	spec, err := toSpec(b.o.Spec, b.o.Epoch, ids, b.o.Arch)
	if err != nil {
		return nil, nil, err
	}
	work, err := os.MkdirTemp(b.c.TempDir(), "disk-")
	if err != nil {
		return nil, nil, err
	}
	defer os.RemoveAll(work)
	stage := filepath.Join(work, "stage")
	if err := os.Mkdir(stage, 0o755); err != nil {
		return nil, nil, err
	}
	b.o.Log.Info("indexing the image for the disk")
	phase := time.Now()
	tree, err := rootfs.Index(ctx, img, b.c)
	if err != nil {
		return nil, nil, err
	}
	b.o.Log.Debug("indexed", "elapsed", time.Since(phase).Round(time.Millisecond))
	prep, err := disk.Prepare(ctx, tree, stage, spec)
	if err != nil {
		return nil, nil, err
	}
	out, err := b.ds.Scratch()
	if err != nil {
		return nil, nil, err
	}
	var entry *layers.Entry
	top := func(ctx context.Context) (io.ReadCloser, error) {
		entry, err = b.generatedLayer(ctx, stage)
		if err != nil {
			return nil, err
		}
		return b.c.OpenLayer(entry.Layer)
	}
	var set *diskset.Set
	err = b.assemble(ctx, tree, prep, spec, out, top)
	if err == nil {
		key := entry.Key
		if b.o.Unique {
			key = "" // random ids: never cached
		}
		set, err = b.ds.Put(key, out, prep.Boot, b.o.Formats)
	}
	if err != nil {
		os.RemoveAll(out)
		return nil, nil, err
	}
	return entry, set, nil
}

// generatedLayer stores the files the disk adds (the finished stage) as the
// image's top layer, with its cache entry.
func (b diskBuild) generatedLayer(ctx context.Context, stage string) (*layers.Entry, error) {
	epoch := time.Unix(b.o.Epoch, 0)
	desc, err := b.c.WriteLayer(b.o.Compression, func(w io.Writer) error {
		return rootfs.WriteTar(ctx, w, stage, rootfs.TarOptions{Epoch: &epoch, RootOwned: true})
	})
	if err != nil {
		return nil, err
	}
	entry := &layers.Entry{Key: b.in.Key(), Step: "disk", Input: b.in, Layer: desc, Created: time.Now().UTC()}
	if err := b.c.Store(*entry); err != nil {
		return nil, err
	}
	return entry, nil
}

// assemble writes the raw disk of tree (and top on it) into out and
// converts it to every format asked for; the raw file stays only if raw was
// asked for.
func (b diskBuild) assemble(ctx context.Context, tree *rootfs.Tree, prep *disk.Prepared, spec disk.Spec, out string, top disk.Top) error {
	layout, err := disk.PlanLayout(tree, spec)
	if err != nil {
		return err
	}
	raw := filepath.Join(out, diskset.FileName("raw"))
	b.o.Log.Info("assembling disk", "boot", prep.Boot, "size", layout.Size)
	phase := time.Now()
	if err := disk.Assemble(ctx, tree, prep, layout, raw, top); err != nil {
		return err
	}
	b.o.Log.Debug("assembled", "elapsed", time.Since(phase).Round(time.Millisecond))
	for _, f := range b.o.Formats {
		start := time.Now()
		dst := filepath.Join(out, diskset.FileName(f))
		stop := watchSize(ctx, "converting to "+f, dst)
		err := convert(ctx, raw, dst, f, spec.IDs, b.o.Epoch)
		stop()
		if err != nil {
			return fmt.Errorf("converting to %s: %w", f, err)
		}
		if f != "raw" {
			b.o.Log.Info("converted", "format", f, "elapsed", time.Since(start).Round(time.Millisecond))
		}
	}
	if !slices.Contains(b.o.Formats, "raw") {
		os.Remove(raw)
	}
	return nil
}

// watchSize reports the growth of the file a writer makes at p (or beside
// it, as .tmp- files are, before the rename) as a transfer of unknown total:
// the format writers read the raw disk at offsets and compress, so the bytes
// written are the one count that moves steadily.
func watchSize(ctx context.Context, name, p string) (stop func()) {
	m := progress.Start(ctx, name, 0)
	if m == nil {
		return func() {}
	}
	done := make(chan struct{})
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		var last int64
		t := time.NewTicker(100 * time.Millisecond)
		defer t.Stop()
		for {
			stopping := false
			select {
			case <-done:
				stopping = true // one last look: the file is whole now
			case <-t.C:
			}
			if size := newestSize(p); size > last {
				m.Add(size - last)
				last = size
			}
			if stopping {
				return
			}
		}
	}()
	return func() {
		close(done)
		<-finished
		m.Finish()
	}
}

// newestSize is the size of p, or of the temporary file being written
// beside it.
func newestSize(p string) int64 {
	if fi, err := os.Stat(p); err == nil {
		return fi.Size()
	}
	tmps, _ := filepath.Glob(filepath.Join(filepath.Dir(p), ".*"+filepath.Base(p)+"*"))
	var n int64
	for _, t := range tmps {
		if fi, err := os.Stat(t); err == nil {
			n = max(n, fi.Size())
		}
	}
	return n
}

// convert writes raw as format f at dst.
func convert(ctx context.Context, raw, dst, f string, ids disk.IDs, epoch int64) error {
	if f == string(disk.Raw) {
		return nil // dst is raw itself
	}
	return disk.Convert(ctx, raw, dst, disk.Format(f), ids, time.Unix(epoch, 0))
}

// bootOptions are where boot tests report.
type bootOptions struct {
	Out io.Writer // the guests' consoles, each line prefixed
	Log *slog.Logger
}

// bootTests boots the raw disk for each boot test and controller.
func bootTests(ctx context.Context, r *recipes.Recipe, raw, boot string, o bootOptions) error {
	for i, t := range r.Tests {
		if t.Boot == nil {
			continue
		}
		b := t.Boot
		if b.SecureBoot && boot != disk.BootGrub {
			return fmt.Errorf("test %d (%s): secure_boot needs the grub boot mode (shim and signed GRUB); this disk uses %s", i+1, t.Name, boot)
		}
		opts := qemu.Options{Disk: raw, SecureBoot: b.SecureBoot, Console: prefixWriter(o.Out, "boot "+t.Name),
			Arch: platformArch(r.Platform)} // the recipe's platform's emulator and firmware
		if b.Expect != "" {
			opts.Expect = regexp.MustCompile(b.Expect) // checked by the parser
		}
		if b.Timeout != "" {
			opts.Timeout, _ = time.ParseDuration(b.Timeout)
		}
		ctrls := b.Controllers
		if len(ctrls) == 0 {
			ctrls = []string{"virtio"}
		}
		for _, ctrl := range ctrls {
			opts.NVMe = ctrl == "nvme"
			start := time.Now()
			o.Log.Info("booting", "test", t.Name, "controller", ctrl, "secure_boot", b.SecureBoot)
			if err := qemu.Boot(ctx, opts); err != nil {
				return fmt.Errorf("test %d (%s) on %s: %w", i+1, t.Name, ctrl, err)
			}
			o.Log.Info("booted", "test", t.Name, "controller", ctrl, "elapsed", time.Since(start).Round(time.Second))
		}
	}
	return nil
}

// bootable picks the disk file to boot: raw when there is one.
func bootable(d *DiskResult) string {
	for _, f := range format.BootOrder() {
		if df, ok := d.Files[string(f)]; ok {
			return df.Path
		}
	}
	return ""
}

func hasBootTests(r *recipes.Recipe) bool {
	for _, t := range r.Tests {
		if t.Boot != nil {
			return true
		}
	}
	return false
}

// DiskFromSource makes disks from an existing image or rootfs: a registry
// reference, oci-layout:DIR[:tag], docker-archive:FILE, or a rootfs .tar.
func DiskFromSource(ctx context.Context, source string, d recipes.Disk, formats []string, outDir string, unique bool, o Options) (*DiskResult, error) {
	if err := o.defaults(); err != nil {
		return nil, err
	}
	c, err := layers.OpenCache(o.CacheDir, false, o.Log)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	var img v1.Image
	arch := "" // a rootfs tar's is told from its loaders
	if strings.HasSuffix(source, ".tar") && !strings.Contains(source, ":") {
		l, err := layers.TarFileLayer(source)
		if err != nil {
			return nil, fmt.Errorf("rootfs tar %s: %w", source, err)
		}
		if img, err = mutate.AppendLayers(empty.Image, l); err != nil {
			return nil, err
		}
	} else {
		b, err := resolveAnyArch(ctx, c, source, o)
		if err != nil {
			return nil, err
		}
		img = b.Image
		// The disk is for the architecture the image's config names.
		cf, err := img.ConfigFile()
		if err != nil {
			return nil, fmt.Errorf("%s: reading the image config: %w", source, err)
		}
		arch = cf.Architecture
	}
	if len(formats) == 0 {
		formats = []string{"raw"}
	}
	img, res, err := makeDisks(ctx, c, nil, img, diskOptions{Spec: d, Formats: formats, OutDir: outDir, Unique: unique,
		Digests: o.DiskDigests, Epoch: o.Epoch, Compression: o.Compression, Log: o.Log, Arch: arch})
	if err == nil && o.SBOM != "" {
		err = diskSBOM(ctx, o, c, img, source)
	}
	return res, err
}

// resolveAnyArch resolves an image for layerimg disk: an index's amd64
// entry, else (a single image, refused for another architecture than the
// one asked) the image for the first architecture a disk can be made for
// that it is. The first error is returned when none fits.
func resolveAnyArch(ctx context.Context, c *layers.Cache, source string, o Options) (*layers.Base, error) {
	var first error
	for _, a := range disk.Arches() {
		b, err := layers.ResolveBase(ctx, c, recipes.Base{Ref: source}, layers.BaseOptions{Platform: "linux/" + a, InsecureRegistries: o.InsecureRegistries})
		if err == nil {
			return b, nil
		}
		if first == nil {
			first = err
		}
	}
	return nil, first
}

// Convert writes the raw disk src in format to dst. With inPlace, a VHD is
// made by appending the footer to src itself.
func Convert(ctx context.Context, src, format, dst string, inPlace bool) error {
	ids, err := disk.RawIDs(src)
	if err != nil {
		return err
	}
	if inPlace {
		if format != "vhd" {
			return fmt.Errorf("--in-place works only for vhd (a footer appended to the raw disk)")
		}
		return vhd.AppendInPlace(src, ids.VHD, time.Unix(0, 0))
	}
	return convert(ctx, src, dst, format, ids, 0)
}

// diskExport packs a cached disk set for --cache-to and --disk-artifact.
func diskExport(res *DiskResult) (*diskset.Packed, error) {
	if res == nil || res.Key == "" {
		return nil, nil
	}
	set := diskset.Set{Boot: res.Boot, Files: res.Files, Dir: res.cacheDir}
	return set.Pack(res.Key)
}
