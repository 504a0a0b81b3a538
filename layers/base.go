package layers

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"

	"github.com/layerimg/layerimg/internal/proc"
	"github.com/layerimg/layerimg/recipes"
	"github.com/layerimg/layerimg/rootfs"
)

// Base is a resolved starting point: an image whose layers the steps build on.
type Base struct {
	// ID is what step keys build on: the image's manifest digest, or a
	// bootstrap's cache key, or "scratch".
	ID string
	// Ref says where it came from, for people.
	Ref string
	// Digest is the resolved manifest digest, when the base is an image.
	Digest string
	// Image holds the base's layers and config.
	Image v1.Image
	// Bootstrapped is set when the base was made by mmdebstrap in this run.
	Bootstrapped bool
	// Entry and Layer are the cache entry and layer of a bootstrap base.
	Entry *Entry
	Layer v1.Layer
	// Input is a bootstrap base's key input, mirror state included: plan
	// and build record it rather than fetch the mirrors again.
	Input KeyInput
}

// BaseOptions controls how bases are fetched.
type BaseOptions struct {
	Platform           string
	InsecureRegistries []string
	Compression        Compression
	Epoch              int64
	Log                io.Writer // mmdebstrap output
	Logger             *slog.Logger
	Remote             *RemoteCache // --cache-from, may be nil
	// Offline refuses to run mmdebstrap: plan must not build.
	Offline bool
	// Dir is the folder relative oci-layout: and docker-archive: paths are
	// read from: the recipe's. Empty means the current directory.
	Dir string
	// MirrorTimeout bounds each InRelease fetch of a bootstrap; 0 means 30s.
	MirrorTimeout time.Duration
}

// inDir resolves a relative path against dir, as a copy source resolves
// against the build context.
func inDir(dir, p string) string {
	if dir == "" || filepath.IsAbs(p) {
		return p
	}
	return filepath.Join(dir, p)
}

// ResolveBase finds (and for a bootstrap, makes or loads from cache) a base.
func ResolveBase(ctx context.Context, c *Cache, b recipes.Base, o BaseOptions) (*Base, error) {
	if b.Bootstrap != nil {
		return bootstrap(ctx, c, *b.Bootstrap, o)
	}
	ref := b.Ref
	switch {
	case ref == "scratch":
		return &Base{ID: "scratch", Ref: ref, Image: empty.Image}, nil
	case strings.HasPrefix(ref, "oci-layout:"):
		return ociLayout(strings.TrimPrefix(ref, "oci-layout:"), o)
	case strings.HasPrefix(ref, "docker-archive:"):
		return dockerArchive(ref, inDir(o.Dir, strings.TrimPrefix(ref, "docker-archive:")), o.Platform)
	}
	return remoteBase(ctx, ref, o)
}

// imageBase is img as a base whose layers verify what they read (see
// verifyBase), refused when its config names another platform than the
// build's. viaBlob is as for verifyBase.
func imageBase(ref string, img v1.Image, viaBlob bool, want string) (*Base, error) {
	d, err := img.Digest()
	if err != nil {
		return nil, fmt.Errorf("from %s: %w", ref, err)
	}
	if err := checkPlatform(ref, img, want); err != nil {
		return nil, err
	}
	vi, err := verifyBase(ref, img, viaBlob)
	if err != nil {
		return nil, err
	}
	return &Base{ID: d.String(), Ref: ref, Digest: d.String(), Image: vi}, nil
}

// dockerArchive opens a `docker save` tarball. Its manifest.json names files,
// not digests, and ggcr computes each layer's digest from the file it reads;
// the files' names are content digests in current archives
// (blobs/sha256/HEX, and HEX.json for the config), so those are checked here,
// and every layer is checked against the config's diff_id when read.
func dockerArchive(ref, file, platform string) (*Base, error) {
	img, err := tarball.ImageFromPath(file, nil)
	if err != nil {
		return nil, fmt.Errorf("from %s: %w", ref, err)
	}
	man, err := tarball.LoadManifest(func() (io.ReadCloser, error) { return os.Open(file) })
	if err != nil {
		return nil, fmt.Errorf("from %s: reading manifest.json: %w", ref, err)
	}
	if len(man) != 1 {
		return nil, fmt.Errorf("from %s: manifest.json lists %d images, want 1", ref, len(man))
	}
	m, err := img.Manifest()
	if err != nil {
		return nil, fmt.Errorf("from %s: %w", ref, err)
	}
	if want, ok := namedDigest(man[0].Config); ok && want != m.Config.Digest {
		return nil, fmt.Errorf("base %s: config %s: %w", ref, man[0].Config, &DigestMismatch{"content", m.Config.Digest, want, "its name says"})
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, fmt.Errorf("from %s: %w", ref, err)
	}
	for i, p := range man[0].Layers {
		want, ok := namedDigest(p)
		if !ok || i >= len(m.Layers) || i >= len(cf.RootFS.DiffIDs) {
			continue // verifyBase refuses a count mismatch
		}
		// A compressed layer is named by its blob's digest, an uncompressed
		// one by its tar's, which the config's diff_id must then be.
		if want != m.Layers[i].Digest && want != cf.RootFS.DiffIDs[i] {
			return nil, fmt.Errorf("base %s: layer %d %s: %w", ref, i+1, want, &DigestMismatch{"content", m.Layers[i].Digest, want, "manifest.json says"})
		}
	}
	return imageBase(ref, img, false, platform)
}

// namedDigest is the digest in a content-addressed archive file name:
// blobs/sha256/HEX, or HEX.json for a legacy config.
func namedDigest(p string) (v1.Hash, bool) {
	hexPart, ok := strings.CutPrefix(p, "blobs/sha256/")
	if !ok {
		hexPart, ok = strings.CutSuffix(p, ".json")
	}
	if !ok || len(hexPart) != 64 || strings.Trim(hexPart, "0123456789abcdef") != "" {
		return v1.Hash{}, false
	}
	return v1.Hash{Algorithm: "sha256", Hex: hexPart}, true
}

func platform(p string) (*v1.Platform, error) {
	pl, err := v1.ParsePlatform(p)
	if err != nil {
		return nil, fmt.Errorf("platform %q: %w", p, err)
	}
	return pl, nil
}

func remoteBase(ctx context.Context, ref string, o BaseOptions) (*Base, error) {
	reg := Registry{Insecure: o.InsecureRegistries, Log: o.Logger}
	r, err := reg.ParseRef(ref)
	if err != nil {
		return nil, fmt.Errorf("from %q: not an image reference: %w", ref, err)
	}
	pl, err := platform(o.Platform)
	if err != nil {
		return nil, err
	}
	img, err := remote.Image(r, append(reg.Options(ctx), remote.WithPlatform(*pl))...)
	if err != nil {
		return nil, fmt.Errorf("pulling base %s: %w", ref, err)
	}
	return imageBase(ref, img, true, o.Platform)
}

func ociLayout(spec string, o BaseOptions) (*Base, error) {
	dir, sel := spec, ""
	if i := strings.Index(spec, "@sha256:"); i >= 0 {
		dir, sel = spec[:i], spec[i+1:]
	} else if i := strings.LastIndex(spec, ":"); i > strings.LastIndex(spec, "/") {
		dir, sel = spec[:i], spec[i+1:]
	}
	ref := "oci-layout:" + spec
	idx, err := layout.ImageIndexFromPath(inDir(o.Dir, dir))
	if err != nil {
		return nil, fmt.Errorf("from %s: %w", ref, err)
	}
	im, err := idx.IndexManifest()
	if err != nil {
		return nil, fmt.Errorf("from %s: %w", ref, err)
	}
	var found []v1.Descriptor
	for _, d := range im.Manifests {
		switch {
		case sel == "":
			found = append(found, d)
		case strings.HasPrefix(sel, "sha256:"):
			if d.Digest.String() == sel {
				found = append(found, d)
			}
		case d.Annotations["org.opencontainers.image.ref.name"] == sel:
			found = append(found, d)
		}
	}
	if len(found) != 1 {
		return nil, fmt.Errorf("from %s: %d images match in %s/index.json; name one with :tag or @sha256:...", ref, len(found), dir)
	}
	d := found[0]
	if d.MediaType.IsIndex() {
		child, err := idx.ImageIndex(d.Digest)
		if err != nil {
			return nil, fmt.Errorf("from %s: %w", ref, err)
		}
		cm, err := child.IndexManifest()
		if err != nil {
			return nil, err
		}
		pl, err := platform(o.Platform)
		if err != nil {
			return nil, err
		}
		if err := checkDigest(ref, "index", child, d.Digest); err != nil {
			return nil, err
		}
		for _, cd := range cm.Manifests {
			if cd.Platform != nil && cd.Platform.Satisfies(*pl) {
				return layoutImageBase(ref, child, cd.Digest, o.Platform)
			}
		}
		return nil, fmt.Errorf("from %s: no image for platform %s", ref, o.Platform)
	}
	return layoutImageBase(ref, idx, d.Digest, o.Platform)
}

// layoutImageBase is the base made of the image d names in idx, a layout's
// index or one of its children, refused if its manifest is not d.
func layoutImageBase(ref string, idx v1.ImageIndex, d v1.Hash, platform string) (*Base, error) {
	img, err := idx.Image(d)
	if err != nil {
		return nil, fmt.Errorf("from %s: %w", ref, err)
	}
	if err := checkDigest(ref, "manifest", img, d); err != nil {
		return nil, err
	}
	return imageBase(ref, img, true, platform)
}

// checkDigest refuses a layout's manifest or index whose bytes are not those
// its index entry names: ggcr reads the blob by that name without checking.
func checkDigest(ref, what string, x interface{ Digest() (v1.Hash, error) }, want v1.Hash) error {
	got, err := x.Digest()
	if err != nil {
		return fmt.Errorf("from %s: %s %s: %w", ref, what, want, err)
	}
	if got != want {
		return fmt.Errorf("base %s: %s %s: %w", ref, what, want, &DigestMismatch{"content", got, want, "index.json says"})
	}
	return nil
}

// checkPlatform refuses a single-platform base made for another OS or
// architecture than the build's: its binaries would not run in the steps,
// and the image would claim a platform it is not. A config that names no
// architecture (hand-made images) is taken as it is.
func checkPlatform(ref string, img v1.Image, want string) error {
	if want == "" {
		return nil
	}
	pl, err := platform(want)
	if err != nil {
		return err
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return fmt.Errorf("from %s: reading its config: %w", ref, err)
	}
	if cf.Architecture == "" && cf.OS == "" {
		return nil
	}
	if cf.Architecture != pl.Architecture || (cf.OS != "" && cf.OS != pl.OS) {
		return fmt.Errorf("from %s: the image is for %s/%s, but the build's platform is %s (set platform: or --platform to match, or use a base for %s)",
			ref, cf.OS, cf.Architecture, want, pl.Architecture)
	}
	return nil
}

// ErrNotBuilt is returned by ResolveBase in offline mode for a bootstrap base
// that is not cached yet.
var ErrNotBuilt = errors.New("not built yet")

// BootstrapKey is the cache key input of a bootstrap base: its spec with
// defaults, and the state of every suite it reads (MirrorStates), fetched
// once here so that the key and the bootstrap's check agree.
func BootstrapKey(ctx context.Context, bs recipes.Bootstrap, o BaseOptions) (KeyInput, []recipes.AptSource, error) {
	bs = bs.WithDefaults()
	srcs, err := bs.Sources()
	if err != nil {
		return KeyInput{}, nil, err
	}
	in := KeyInput{Kind: "bootstrap", Spec: bs, Platform: o.Platform, Compression: o.Compression, Epoch: o.Epoch}
	if in.Mirrors, err = MirrorStates(ctx, srcs, o.MirrorTimeout); err != nil {
		return KeyInput{}, nil, err
	}
	return in, srcs, nil
}

func bootstrap(ctx context.Context, c *Cache, bs recipes.Bootstrap, o BaseOptions) (*Base, error) {
	in, srcs, err := BootstrapKey(ctx, bs, o)
	if err != nil {
		return nil, fmt.Errorf("bootstrap: %w", err)
	}
	key := in.Key()
	bs = bs.WithDefaults()
	ref := bootstrapRef(bs)
	e, err := c.Lookup(key)
	if err != nil {
		return nil, err
	}
	built := false
	var layer v1.Layer
	if e != nil {
		layer = c.Layer(e.Layer)
	} else if re, rl := o.Remote.Lookup(c, key); re != nil {
		e, layer = re, rl
	} else {
		if o.Offline {
			return &Base{ID: key, Ref: ref, Input: in}, ErrNotBuilt
		}
		desc, err := runMmdebstrap(ctx, c, bs, srcs, in.Mirrors, o)
		if errors.Is(err, ErrMirrorMoved) {
			// A mirror behind a CDN can answer the key's fetch and apt's
			// from backends a sync apart: key the base again from what the
			// mirror says now, and build once more.
			if o.Logger != nil {
				o.Logger.Warn("the mirror moved during the bootstrap; building it again", "err", err)
			}
			if in, srcs, err = BootstrapKey(ctx, bs, o); err != nil {
				return nil, fmt.Errorf("bootstrap: %w", err)
			}
			key = in.Key()
			desc, err = runMmdebstrap(ctx, c, bs, srcs, in.Mirrors, o)
		}
		if err != nil {
			return nil, err
		}
		e = &Entry{Key: key, Step: ref, Input: in, Layer: desc, Created: time.Now().UTC(), Mode: c.Mode()}
		if err := c.Store(*e); err != nil {
			return nil, err
		}
		built, layer = true, c.Layer(e.Layer)
	}
	img, err := imageFromLayers([]v1.Layer{layer}, o.Platform)
	if err != nil {
		return nil, err
	}
	return &Base{ID: key, Ref: ref, Image: img, Bootstrapped: built, Entry: e, Layer: layer, Input: in}, nil
}

// bootstrapRef names a bootstrap base for people.
func bootstrapRef(bs recipes.Bootstrap) string {
	return fmt.Sprintf("bootstrap:%s/%s", bs.Distro, bs.Suite)
}

func runMmdebstrap(ctx context.Context, c *Cache, bs recipes.Bootstrap, srcs []recipes.AptSource, state []MirrorState, o BaseOptions) (Descriptor, error) {
	if _, err := exec.LookPath("mmdebstrap"); err != nil {
		return Descriptor{}, errors.New("from.bootstrap needs mmdebstrap: apt-get install mmdebstrap")
	}
	pl, err := platform(o.Platform)
	if err != nil {
		return Descriptor{}, err
	}
	// A foreign architecture's maintainer scripts run under emulation.
	if err := rootfs.CheckEmulation("/", runtime.GOARCH, o.Platform); err != nil {
		return Descriptor{}, fmt.Errorf("bootstrap: %w", err)
	}
	arch := debArch[pl.Architecture]
	dir, err := os.MkdirTemp(c.TempDir(), "bootstrap-")
	if err != nil {
		return Descriptor{}, err
	}
	defer os.RemoveAll(dir)
	out := filepath.Join(dir, "rootfs.tar")
	seen := filepath.Join(dir, "inrelease.sha256")
	args := mmdebstrapArgs(bs, srcs, arch, c.rootless || os.Geteuid() != 0, seen, out)
	// mmdebstrap runs apt and dpkg: they must die with it.
	cmd := proc.Command(ctx, "mmdebstrap", args...)
	proc.KillTree(cmd)
	cmd.Env = append(os.Environ(), fmt.Sprintf("SOURCE_DATE_EPOCH=%d", o.Epoch))
	ap := newAptProgress(ctx, o.Log)
	cmd.Stdout, cmd.Stderr = ap, ap
	err = cmd.Run()
	ap.Close()
	if err != nil {
		ap.Replay()
		if ctx.Err() != nil {
			return Descriptor{}, ctx.Err()
		}
		return Descriptor{}, fmt.Errorf("bootstrap: mmdebstrap %s: %w", strings.Join(args, " "), err)
	}
	if err := checkMirrorState(seen, state); err != nil {
		return Descriptor{}, fmt.Errorf("bootstrap %s: %w", bootstrapRef(bs), err)
	}
	f, err := os.Open(out)
	if err != nil {
		return Descriptor{}, err
	}
	defer f.Close()
	desc, err := c.WriteLayer(o.Compression, func(w io.Writer) error {
		return normalizeTar(f, w, time.Unix(o.Epoch, 0))
	})
	if err != nil {
		return Descriptor{}, fmt.Errorf("bootstrap: layer %s: %w", bootstrapRef(bs), err)
	}
	return desc, nil
}

var debArch = map[string]string{"amd64": "amd64", "arm64": "arm64", "386": "i386", "arm": "armhf", "ppc64le": "ppc64el", "s390x": "s390x", "riscv64": "riscv64"}

// DebianArch is Debian's name of platform's architecture, "" when none.
func DebianArch(platform string) string {
	pl, err := v1.ParsePlatform(platform)
	if err != nil {
		return ""
	}
	return debArch[pl.Architecture]
}

// mmdebstrapArgs is mmdebstrap's command line: one "deb ..." line a suite,
// so that it reads exactly the sources the key names (given a MIRROR, it
// adds no -updates or -security of its own).
func mmdebstrapArgs(bs recipes.Bootstrap, srcs []recipes.AptSource, arch string, unshare bool, seen, out string) []string {
	// --verbose: apt's own lines, which aptProgress turns into a download bar.
	args := []string{"--verbose", "--variant=" + bs.Variant, "--architectures=" + arch, "--format=tar"}
	if unshare {
		// An ordinary user's mmdebstrap maps the subordinate ranges
		// itself; inside a rootless build's namespace it is root there and
		// only unshares the rest. Its tar is the same in every mode (it
		// writes /dev's entries itself, and tar sorts the rest by name).
		args = append(args, "--mode=unshare")
	}
	if len(bs.Packages) > 0 {
		args = append(args, "--include="+strings.Join(bs.Packages, ","))
	}
	// The mirrors could move between the key's InRelease fetch and apt's:
	// a hook hashes the InRelease files apt read, before mmdebstrap's
	// cleanup removes them, and checkMirrorState refuses a layer built
	// from other ones than its key names.
	args = append(args, "--customize-hook=sha256sum \"$1\"/var/lib/apt/lists/*_InRelease > "+shellQuote(seen)+" || true")
	args = append(args, bs.Suite, out)
	for _, s := range srcs {
		args = append(args, s.Line())
	}
	return args
}

// normalizeTar copies a tar with numeric owners only and mtimes clamped to
// epoch, so that its bytes depend on its content alone.
func normalizeTar(r io.Reader, w io.Writer, epoch time.Time) error {
	tr := tar.NewReader(r)
	tw := tar.NewWriter(w)
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			return tw.Close()
		}
		if err != nil {
			return err
		}
		// Refused here rather than written: tar would carry an owner that
		// chown cannot give (4294967295 means "unchanged") or that is cut
		// to 32 bits.
		if err := rootfs.CheckOwner(hdr.Uid, hdr.Gid); err != nil {
			return fmt.Errorf("entry %q: %w", hdr.Name, err)
		}
		mt := hdr.ModTime
		if mt.After(epoch) {
			mt = epoch
		}
		n := &tar.Header{
			Typeflag: hdr.Typeflag, Name: strings.TrimPrefix(hdr.Name, "./"), Linkname: hdr.Linkname,
			Size: hdr.Size, Mode: hdr.Mode, Uid: hdr.Uid, Gid: hdr.Gid,
			ModTime: time.Unix(mt.Unix(), 0), Devmajor: hdr.Devmajor, Devminor: hdr.Devminor,
			Format: tar.FormatPAX,
		}
		if hdr.Typeflag == tar.TypeLink {
			n.Linkname = strings.TrimPrefix(hdr.Linkname, "./")
		}
		for k, v := range hdr.PAXRecords {
			if strings.HasPrefix(k, "SCHILY.xattr.") {
				if n.PAXRecords == nil {
					n.PAXRecords = map[string]string{}
				}
				n.PAXRecords[k] = v
			}
		}
		if n.Name == "" || n.Name == "." || n.Name == "./" {
			continue
		}
		if err := tw.WriteHeader(n); err != nil {
			return err
		}
		if _, err := io.Copy(tw, tr); err != nil {
			return err
		}
	}
}
