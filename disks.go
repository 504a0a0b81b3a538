package layerimg

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"golang.org/x/sync/errgroup"

	"github.com/layerimg/layerimg/disk"
	"github.com/layerimg/layerimg/disk/qcow2"
	"github.com/layerimg/layerimg/disk/qemu"
	"github.com/layerimg/layerimg/disk/sparse"
	"github.com/layerimg/layerimg/disk/vhd"
	"github.com/layerimg/layerimg/disk/vmdk"
	"github.com/layerimg/layerimg/layers"
	"github.com/layerimg/layerimg/recipes"
	"github.com/layerimg/layerimg/rootfs"
)

// diskFormatVersion changes whenever the bytes a disk step writes change for
// the same input, so cached disks are never reused wrongly.
const diskFormatVersion = 2 // 2: xattrs in the inode in canonical order

// DiskFile is one disk written by a build.
type DiskFile struct {
	Path   string `json:"path"`
	Size   int64  `json:"size"`
	SHA256 string `json:"sha256,omitempty"` // when Options.DiskDigests
	// Stamp identifies the cached file's state, to notice a write through a
	// hardlink without hashing gigabytes.
	Stamp string `json:"stamp,omitempty"`
}

// DiskResult is what the disk stage made.
type DiskResult struct {
	Boot      string              `json:"boot"`
	Layer     string              `json:"generated_layer"`
	ContentID string              `json:"content_digest"` // the image digest the ids derive from
	Files     map[string]DiskFile `json:"files"`
	Cached    bool                `json:"cached"`

	// For --cache-to: the generated layer's entry, and the disk set's key
	// and cache dir (empty with --unique-ids).
	entry    layers.Entry
	layer    v1.Layer
	key      string
	cacheDir string
}

// diskExt maps an output format to its file extension.
var diskExt = map[string]string{"raw": "raw", "vmdk": "vmdk", "vhd": "vhd", "qcow2": "qcow2"}

// diskSpec is what the disk stage's cache key covers.
type diskSpec struct {
	Version int          `json:"v"`
	Disk    recipes.Disk `json:"disk"`
	Image   string       `json:"image"`
	Epoch   int64        `json:"epoch"`
}

func toSpec(d recipes.Disk, epoch int64, ids disk.IDs) (disk.Spec, error) {
	s := disk.Spec{Boot: d.Boot, Label: d.Label, KernelCmdline: d.KernelCmdline, Epoch: epoch, IDs: ids}
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

// makeDisks turns img into disks in outDir, in the given formats. The files
// the disk adds (fstab, the ESP's content under /boot/efi) become one more
// cached layer, and the returned image carries it, so the image matches the
// disk. Disks are cached by content: an unchanged image with an unchanged
// disk section is copied out without making a filesystem.
func makeDisks(ctx context.Context, c *layers.Cache, rc *layers.RemoteCache, img v1.Image, d recipes.Disk, formats []string, outDir string, unique bool, o *Options) (v1.Image, *DiskResult, error) {
	if d.Filesystem == "" {
		d.Filesystem = "ext4"
	}
	digest, err := img.Digest()
	if err != nil {
		return nil, nil, err
	}
	res := &DiskResult{ContentID: digest.String(), Files: map[string]DiskFile{}}
	in := layers.KeyInput{Kind: "disk", Parent: digest.String(), Spec: diskSpec{Version: diskFormatVersion, Disk: d, Image: digest.String(), Epoch: o.Epoch}, Compression: o.Compression, Epoch: o.Epoch}
	key := in.Key()
	cacheDir := filepath.Join(c.Dir(), "disks", strings.TrimPrefix(key, "sha256:"))

	entry, err := c.Lookup(key)
	if err != nil {
		return nil, nil, err
	}
	var genLayer v1.Layer
	if entry != nil {
		genLayer = c.Layer(entry.Layer)
	} else if re, rl := rc.Lookup(c, key); re != nil {
		entry, genLayer = re, rl
	}
	meta, cached := readDiskMeta(cacheDir)
	if !unique && entry != nil && !(cached && hasFormats(meta, formats) && verifyDisks(meta, formats, o)) {
		// Not here, or not whole: a registry cache may have the finished
		// disks, and then nothing is flattened or formatted at all.
		if rd, ok := rc.Disk(key); ok && remoteHasFormats(rd, formats) {
			if meta, err = pullDisks(ctx, c, rc, rd, formats, cacheDir, o); err != nil {
				o.Log.Warn("could not pull the disks from the registry cache; making them here", "err", err)
			} else {
				cached = true
			}
		}
	}
	res.key, res.cacheDir = key, cacheDir
	if unique || entry == nil || !cached || !hasFormats(meta, formats) || !verifyDisks(meta, formats, o) {
		entry, meta, err = buildDisks(ctx, c, img, d, formats, unique, key, in, cacheDir, o)
		if err != nil {
			return nil, nil, err
		}
		genLayer = c.Layer(entry.Layer)
	} else {
		res.Cached = true
		o.Log.Info("disks unchanged: reusing them", "key", short(key))
	}
	res.Boot, res.Layer = meta.Boot, entry.Layer.Digest.String()
	if err := os.MkdirAll(outDir, 0o755); err != nil {
		return nil, nil, err
	}
	for _, f := range formats {
		src := filepath.Join(cacheDir, "disk."+diskExt[f])
		if unique {
			src = filepath.Join(meta.dir, "disk."+diskExt[f])
		}
		dst := filepath.Join(outDir, "disk."+diskExt[f])
		if err := copyOut(src, dst); err != nil {
			return nil, nil, fmt.Errorf("writing %s: %w", dst, err)
		}
		df := meta.Files[f]
		if o.DiskDigests && df.SHA256 == "" {
			if df.SHA256, err = sparse.DigestFile(src); err != nil {
				return nil, nil, err
			}
		}
		df.Path, df.Stamp = dst, ""
		res.Files[f] = df
		o.Log.Info("wrote disk", "format", f, "file", dst, "size", df.Size, "sha256", df.SHA256)
	}
	if unique {
		os.RemoveAll(meta.dir)
	}
	res.entry, res.layer = *entry, genLayer
	final, err := mutate.Append(img, mutate.Addendum{Layer: genLayer, MediaType: entry.Layer.MediaType, History: v1.History{
		Created: v1.Time{Time: time.Unix(o.Epoch, 0).UTC()}, CreatedBy: "layerimg disk: fstab and EFI system partition",
	}})
	return final, res, err
}

type diskMeta struct {
	Boot  string              `json:"boot"`
	Files map[string]DiskFile `json:"files"`
	dir   string
}

func readDiskMeta(dir string) (diskMeta, bool) {
	var m diskMeta
	data, err := os.ReadFile(filepath.Join(dir, "meta.json"))
	if err != nil || json.Unmarshal(data, &m) != nil {
		return m, false
	}
	m.dir = dir
	return m, true
}

func hasFormats(m diskMeta, formats []string) bool {
	for _, f := range formats {
		if _, ok := m.Files[f]; !ok {
			return false
		}
		if _, err := os.Stat(filepath.Join(m.dir, "disk."+diskExt[f])); err != nil {
			return false
		}
	}
	return true
}

// buildDisks flattens img, adds the generated layer, assembles the raw disk
// and converts it, all into a scratch dir renamed to cacheDir when complete.
func buildDisks(ctx context.Context, c *layers.Cache, img v1.Image, d recipes.Disk, formats []string, unique bool, key string, in layers.KeyInput, cacheDir string, o *Options) (*layers.Entry, diskMeta, error) {
	meta := diskMeta{Files: map[string]DiskFile{}}
	digest, err := img.Digest()
	if err != nil {
		return nil, meta, err
	}
	ids := disk.DeriveIDs(digest.String(), unique)
	spec, err := toSpec(d, o.Epoch, ids)
	if err != nil {
		return nil, meta, err
	}
	work, err := os.MkdirTemp(c.TempDir(), "disk-")
	if err != nil {
		return nil, meta, err
	}
	defer os.RemoveAll(work)
	tree, stage := filepath.Join(work, "rootfs"), filepath.Join(work, "stage")
	for _, dir := range []string{tree, stage} {
		if err := os.Mkdir(dir, 0o755); err != nil {
			return nil, meta, err
		}
	}
	o.Log.Info("flattening the image for the disk")
	phase := time.Now()
	if err := rootfs.Flatten(ctx, img, tree); err != nil {
		return nil, meta, err
	}
	o.Log.Debug("flattened", "elapsed", time.Since(phase).Round(time.Millisecond))
	prep, err := disk.Prepare(tree, stage, spec)
	if err != nil {
		return nil, meta, err
	}
	meta.Boot = prep.Boot
	epoch := time.Unix(o.Epoch, 0)
	desc, err := c.WriteLayer(o.Compression, func(w io.Writer) error {
		return rootfs.WriteTar(ctx, w, stage, rootfs.TarOptions{Epoch: &epoch})
	})
	if err != nil {
		return nil, meta, err
	}
	entry := &layers.Entry{Key: key, Step: "disk", Input: in, Layer: desc, Created: time.Now().UTC()}
	if err := c.Store(*entry); err != nil {
		return nil, meta, err
	}
	rc, err := c.OpenLayer(desc)
	if err != nil {
		return nil, meta, err
	}
	err = rootfs.Apply(ctx, tree, rc, rootfs.ApplyOptions{Layer: "disk (generated)"})
	rc.Close()
	if err != nil {
		return nil, meta, err
	}
	layout, err := disk.PlanLayout(tree, spec)
	if err != nil {
		return nil, meta, err
	}
	out := filepath.Join(work, "disks")
	if err := os.Mkdir(out, 0o755); err != nil {
		return nil, meta, err
	}
	raw := filepath.Join(out, "disk.raw")
	o.Log.Info("assembling disk", "boot", prep.Boot, "size", layout.Size)
	phase = time.Now()
	if err := disk.Assemble(ctx, tree, prep, layout, raw); err != nil {
		return nil, meta, err
	}
	o.Log.Debug("assembled", "elapsed", time.Since(phase).Round(time.Millisecond))
	for _, f := range formats {
		dst := filepath.Join(out, "disk."+diskExt[f])
		start := time.Now()
		if err := convert(ctx, raw, dst, f, ids, o.Epoch); err != nil {
			return nil, meta, fmt.Errorf("converting to %s: %w", f, err)
		}
		if f != "raw" {
			o.Log.Info("converted", "format", f, "elapsed", time.Since(start).Round(time.Millisecond))
		}
	}
	for _, f := range formats {
		df, err := describe(filepath.Join(out, "disk."+diskExt[f]))
		if err != nil {
			return nil, meta, err
		}
		meta.Files[f] = df
	}
	if !slices.Contains(formats, "raw") {
		os.Remove(raw)
	}
	data, _ := json.MarshalIndent(meta, "", "  ")
	if err := os.WriteFile(filepath.Join(out, "meta.json"), data, 0o644); err != nil {
		return nil, meta, err
	}
	if unique { // random ids: never cached, handed over as is
		kept, err := os.MkdirTemp(c.TempDir(), "unique-")
		if err != nil {
			return nil, meta, err
		}
		os.Remove(kept)
		meta.dir = kept
		return entry, meta, os.Rename(out, kept)
	}
	os.MkdirAll(filepath.Dir(cacheDir), 0o755)
	os.RemoveAll(cacheDir) // an incomplete or older set
	if err := os.Rename(out, cacheDir); err != nil {
		return nil, meta, err
	}
	meta.dir = cacheDir
	return entry, meta, nil
}

// convert writes raw as format f at dst.
func convert(ctx context.Context, raw, dst, f string, ids disk.IDs, epoch int64) error {
	switch f {
	case "raw":
		return nil // dst is raw itself
	case "vmdk":
		return vmdk.Convert(ctx, raw, dst, vmdk.Options{CID: ids.VMDKCID})
	case "vhd":
		return vhd.Convert(raw, dst, ids.VHD, time.Unix(epoch, 0))
	case "qcow2":
		return qcow2.Convert(ctx, raw, dst)
	}
	return fmt.Errorf("unknown disk format %q", f)
}

func describe(p string) (DiskFile, error) {
	fi, err := os.Stat(p)
	if err != nil {
		return DiskFile{}, err
	}
	return DiskFile{Path: p, Size: fi.Size(), Stamp: stamp(fi)}, nil
}

// stamp is a file's inode, size and mtime: a write changes it. (Not ctime:
// handing the file out as a hardlink changes that.)
func stamp(fi os.FileInfo) string {
	st := fi.Sys().(*syscall.Stat_t)
	return fmt.Sprintf("%d/%d/%d.%d", st.Ino, st.Size, st.Mtim.Sec, st.Mtim.Nsec)
}

// verifyDisks checks that cached disks are as they were made. Outputs are
// hardlinks to the cache where possible, so a user who wrote into one
// changed the cached copy too; such a set is made again.
func verifyDisks(m diskMeta, formats []string, o *Options) bool {
	for _, f := range formats {
		fi, err := os.Stat(filepath.Join(m.dir, "disk."+diskExt[f]))
		if err != nil || stamp(fi) != m.Files[f].Stamp {
			o.Log.Warn("a cached disk changed since it was made (written to through a link?); making it again", "format", f)
			return false
		}
	}
	return true
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
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	fi, err := in.Stat()
	if err != nil {
		return err
	}
	return sparse.WriteAtomic(dst, func(out *os.File) error {
		if err := out.Truncate(fi.Size()); err != nil {
			return err
		}
		return sparse.Copy(out, 0, in, fi.Size())
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

// bootTests boots the raw disk for each boot test and controller.
func bootTests(ctx context.Context, r *recipes.Recipe, raw, boot string, o *Options) error {
	for i, t := range r.Tests {
		if t.Boot == nil {
			continue
		}
		b := t.Boot
		if b.SecureBoot && boot != disk.BootGrub {
			return fmt.Errorf("test %d (%s): secure_boot needs the grub boot mode (shim and signed GRUB); this disk uses %s", i+1, t.Name, boot)
		}
		opts := qemu.Options{Disk: raw, SecureBoot: b.SecureBoot, Console: prefixWriter(o.Output, "boot "+t.Name)}
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
	for _, f := range []string{"raw", "qcow2", "vmdk", "vhd"} {
		if df, ok := d.Files[f]; ok {
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
	if strings.HasSuffix(source, ".tar") && !strings.Contains(source, ":") {
		l, err := tarball.LayerFromFile(source)
		if err != nil {
			return nil, fmt.Errorf("rootfs tar %s: %w", source, err)
		}
		if img, err = mutate.AppendLayers(empty.Image, l); err != nil {
			return nil, err
		}
	} else {
		b, err := layers.ResolveBase(ctx, c, recipes.Base{Ref: source}, layers.BaseOptions{Platform: "linux/amd64", InsecureRegistries: o.InsecureRegistries})
		if err != nil {
			return nil, err
		}
		img = b.Image
	}
	if len(formats) == 0 {
		formats = []string{"raw"}
	}
	_, res, err := makeDisks(ctx, c, nil, img, d, formats, outDir, unique, &o)
	return res, err
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

// diskMediaType is the media type of a disk file in a registry: the file,
// zstd-compressed, so a sparse raw disk travels as about its data.
func diskMediaType(format string) types.MediaType {
	return types.MediaType("application/vnd.layerimg.disk." + format + ".v1+zstd")
}

func remoteHasFormats(rd *layers.RemoteDisk, formats []string) bool {
	for _, f := range formats {
		if _, ok := rd.Files[f]; !ok {
			return false
		}
	}
	return true
}

// pullDisks fetches a finished disk set from a registry cache into cacheDir,
// unpacking each file sparse.
func pullDisks(ctx context.Context, c *layers.Cache, rc *layers.RemoteCache, rd *layers.RemoteDisk, formats []string, cacheDir string, o *Options) (diskMeta, error) {
	meta := diskMeta{Boot: rd.Boot, Files: map[string]DiskFile{}}
	work, err := os.MkdirTemp(c.TempDir(), "pull-disks-")
	if err != nil {
		return meta, err
	}
	defer os.RemoveAll(work)
	// Each format in parallel: the pulls wait on the network, the unpacking
	// on a core.
	var mu sync.Mutex
	g, _ := errgroup.WithContext(ctx)
	for _, f := range formats {
		g.Go(func() error {
			p := filepath.Join(work, "disk."+diskExt[f])
			out, err := os.Create(p)
			if err != nil {
				return err
			}
			pr, pw := io.Pipe()
			go func() { pw.CloseWithError(rc.FetchDiskBlob(rd.Key, f, pw)) }()
			err = layers.DecompressSparse(pr, out)
			pr.CloseWithError(err)
			if cerr := out.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				return fmt.Errorf("%s: %w", f, err)
			}
			df, err := describe(p)
			if err != nil {
				return err
			}
			if df.Size != rd.Files[f].FileSize {
				return fmt.Errorf("%s: unpacked to %d bytes, the cache says %d", f, df.Size, rd.Files[f].FileSize)
			}
			mu.Lock()
			meta.Files[f] = df
			mu.Unlock()
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return meta, err
	}
	data, _ := json.MarshalIndent(meta, "", "  ")
	if err := os.WriteFile(filepath.Join(work, "meta.json"), data, 0o644); err != nil {
		return meta, err
	}
	os.MkdirAll(filepath.Dir(cacheDir), 0o755)
	os.RemoveAll(cacheDir)
	if err := os.Rename(work, cacheDir); err != nil {
		return meta, err
	}
	os.MkdirAll(work, 0o700) // for the deferred RemoveAll
	meta.dir = cacheDir
	return meta, nil
}

// diskExport packs a cached disk set for --cache-to: each file compressed
// once (kept beside it) and described as a blob.
func diskExport(res *DiskResult) (*layers.RemoteDisk, []v1.Layer, error) {
	if res == nil || res.key == "" {
		return nil, nil, nil
	}
	rd := &layers.RemoteDisk{Key: res.key, Boot: res.Boot, Files: map[string]layers.DiskBlob{}}
	var blobs []v1.Layer
	for _, f := range sortedFormats(res.Files) {
		src := filepath.Join(res.cacheDir, "disk."+diskExt[f])
		zst := src + ".zst"
		if _, err := os.Stat(zst); err != nil {
			if err := layers.CompressFile(src, zst+".tmp"); err != nil {
				return nil, nil, err
			}
			if err := os.Rename(zst+".tmp", zst); err != nil {
				return nil, nil, err
			}
		}
		b, err := layers.NewFileBlob(zst, diskMediaType(f))
		if err != nil {
			return nil, nil, err
		}
		fi, err := os.Stat(src)
		if err != nil {
			return nil, nil, err
		}
		rd.Files[f] = layers.DiskBlob{Digest: b.Hash, Size: b.Length, FileSize: fi.Size(), MediaType: b.Type}
		blobs = append(blobs, b)
	}
	return rd, blobs, nil
}

func sortedFormats(m map[string]DiskFile) []string {
	var out []string
	for _, f := range recipes.OutputFormats {
		if _, ok := m[f]; ok {
			out = append(out, f)
		}
	}
	return out
}

// DigestFile is the sha256 of a (sparse) file.
//
// Deprecated: use sparse.DigestFile; this stays until cmd/layerimg calls it.
func DigestFile(p string) (string, error) { return sparse.DigestFile(p) }
