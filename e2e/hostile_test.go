package e2e_test

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"

	"github.com/layerimg/layerimg"
)

// The end-to-end half of the hostile-input suite: small OCI images used as
// a recipe's base, built with --rootfs-tar and -o DIR as a user would, with
// a canary directory and a host secret beside the build. Entry-level cases
// live in rootfs and layers; the sandbox's in rootfs too; the disk stage's
// in disk.

// hostEntry is one entry of a generated layer.
type hostEntry struct {
	name, link, body string
	typ              byte
	mode             int64
}

func hostileTar(t *testing.T, entries []hostEntry) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		h := &tar.Header{Name: e.name, Linkname: e.link, Typeflag: e.typ, Mode: e.mode, Size: int64(len(e.body)), ModTime: time.Unix(1700000000, 0), Format: tar.FormatPAX}
		if h.Typeflag == 0 {
			h.Typeflag = tar.TypeReg
		}
		if h.Mode == 0 {
			h.Mode = 0o644
			if h.Typeflag == tar.TypeDir {
				h.Mode = 0o755
			}
		}
		if h.Typeflag != tar.TypeReg {
			h.Size = 0
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if h.Typeflag == tar.TypeReg {
			io.WriteString(tw, e.body)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// hostileImage writes an OCI layout of the given layers at dir and returns
// the recipe reference to it.
func hostileImage(t *testing.T, dir string, layerEntries ...[]hostEntry) string {
	t.Helper()
	var ls []v1.Layer
	for _, es := range layerEntries {
		data := hostileTar(t, es)
		l, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(data)), nil })
		if err != nil {
			t.Fatal(err)
		}
		ls = append(ls, l)
	}
	img, err := mutate.AppendLayers(empty.Image, ls...)
	if err != nil {
		t.Fatal(err)
	}
	cf, _ := img.ConfigFile()
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture = "linux", "amd64"
	if img, err = mutate.ConfigFile(img, cf); err != nil {
		t.Fatal(err)
	}
	p, err := layout.Write(dir, empty.Index)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.AppendImage(img); err != nil {
		t.Fatal(err)
	}
	return "oci-layout:" + dir
}

// canary is a host directory outside every build directory, and a secret
// file in it, whose entries must be neither changed nor read into output.
type canary struct {
	dir, secretPath string
	secret          []byte
	before          map[string]string
}

func newCanary(t *testing.T) *canary {
	t.Helper()
	c := &canary{dir: t.TempDir()}
	b := make([]byte, 24)
	rand.Read(b)
	c.secret = []byte("host-secret-" + hex.EncodeToString(b))
	c.secretPath = filepath.Join(c.dir, "secret")
	os.WriteFile(c.secretPath, c.secret, 0o600)
	os.Mkdir(filepath.Join(c.dir, "sub"), 0o755)
	os.WriteFile(filepath.Join(c.dir, "sub", "file"), c.secret, 0o644)
	// ctimes only move forward: a later change shows even within a tick.
	time.Sleep(10 * time.Millisecond)
	c.before = c.snapshot(t)
	return c
}

func (c *canary) snapshot(t *testing.T) map[string]string {
	t.Helper()
	m := map[string]string{}
	filepath.Walk(c.dir, func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			t.Errorf("canary: %v", err)
			return nil
		}
		st := fi.Sys().(*syscall.Stat_t)
		m[p] = fmt.Sprintf("ino=%d mode=%v size=%d mtime=%d ctime=%d.%d", st.Ino, fi.Mode(), fi.Size(), fi.ModTime().UnixNano(), st.Ctim.Sec, st.Ctim.Nsec)
		return nil
	})
	return m
}

// check fails the test if the canary changed, or if the secret's bytes are
// in any regular file under roots (gzip members decompressed too).
func (c *canary) check(t *testing.T, roots ...string) {
	t.Helper()
	after := c.snapshot(t)
	for p, b := range c.before {
		if after[p] != b {
			t.Errorf("canary %s changed:\n  before %s\n  after  %s", p, b, after[p])
		}
	}
	for p := range after {
		if _, ok := c.before[p]; !ok {
			t.Errorf("canary: %s was created", p)
		}
	}
	for _, root := range roots {
		filepath.Walk(root, func(p string, fi os.FileInfo, err error) error {
			if err != nil || !fi.Mode().IsRegular() {
				return nil
			}
			data, _ := os.ReadFile(p)
			if bytes.Contains(data, c.secret) {
				t.Errorf("the host secret's bytes are in %s", p)
			}
			if zr, err := gunzip(data); err == nil && bytes.Contains(zr, c.secret) {
				t.Errorf("the host secret's bytes are in %s (decompressed)", p)
			}
			return nil
		})
	}
}

// fakeBootFiles is what disk detection looks for, as plain files: enough for
// the disk stage to lay out a systemd-boot ESP (nothing boots it here).
func fakeBootFiles(except ...string) []hostEntry {
	skip := map[string]bool{}
	for _, e := range except {
		skip[e] = true
	}
	var es []hostEntry
	for _, d := range []string{"boot/", "boot/efi/", "etc/", "usr/", "usr/lib/", "usr/lib/systemd/", "usr/lib/systemd/boot/", "usr/lib/systemd/boot/efi/"} {
		if !skip[d] {
			es = append(es, hostEntry{name: d, typ: tar.TypeDir})
		}
	}
	for _, f := range []string{"boot/vmlinuz-6.1.0-9-cloud-amd64", "boot/initrd.img-6.1.0-9-cloud-amd64", "usr/lib/systemd/boot/efi/systemd-bootx64.efi"} {
		if !skip[f] {
			es = append(es, hostEntry{name: f, body: "image's own " + filepath.Base(f)})
		}
	}
	return es
}

// climbingOut is a layer of boot files in which path is a relative symlink
// that climbs out of the image to the host's secret.
func climbingOut(c *canary, path string) [][]hostEntry {
	rel := strings.Repeat("../", 12) + strings.TrimPrefix(c.secretPath, "/")
	return [][]hostEntry{append(fakeBootFiles(path), hostEntry{name: path, typ: tar.TypeSymlink, link: rel})}
}

func TestHostileBases(t *testing.T) {
	needRoot(t)
	if testing.Short() {
		t.Skip("-short")
	}
	for _, tc := range []struct {
		name string
		// layers builds the base's layers given the canary.
		layers func(c *canary) [][]hostEntry
		// wantErr is the error's text, or "" for a build that succeeds.
		wantErr []string
		// wantInDisk are bytes the disk must hold when the build succeeds:
		// proof that a link was followed inside the image.
		wantInDisk string
		// wantBoot is the boot layout of a disk that was made.
		wantBoot string
	}{
		{
			name: "boot/efi links to a host directory",
			layers: func(c *canary) [][]hostEntry {
				return [][]hostEntry{append(fakeBootFiles("boot/efi/"), hostEntry{name: "boot/efi", typ: tar.TypeSymlink, link: c.dir})}
			},
			wantErr: []string{"/boot/efi is a symlink", "must be a real directory"},
		},
		{
			name: "boot links to a host directory",
			layers: func(c *canary) [][]hostEntry {
				return [][]hostEntry{{{name: "boot", typ: tar.TypeSymlink, link: c.dir}}}
			},
			wantErr: []string{"/boot is a symlink"},
		},
		{
			// Absolute links mean the image's own paths, where nothing is:
			// no loader is found, and the disk is a data disk.
			name: "kernel and loader link to a host file by absolute path",
			layers: func(c *canary) [][]hostEntry {
				es := fakeBootFiles("boot/vmlinuz-6.1.0-9-cloud-amd64", "usr/lib/systemd/boot/efi/systemd-bootx64.efi")
				return [][]hostEntry{append(es,
					hostEntry{name: "boot/vmlinuz-6.1.0-9-cloud-amd64", typ: tar.TypeSymlink, link: c.secretPath},
					hostEntry{name: "usr/lib/systemd/boot/efi/systemd-bootx64.efi", typ: tar.TypeSymlink, link: c.secretPath},
				)}
			},
			wantBoot: "none",
		},
		{
			name: "the kernel climbs out of the image to a host file",
			layers: func(c *canary) [][]hostEntry {
				return climbingOut(c, "boot/vmlinuz-6.1.0-9-cloud-amd64")
			},
			wantErr: []string{"/boot/vmlinuz-6.1.0-9-cloud-amd64", "points outside the root"},
		},
		{
			name: "the initrd climbs out of the image to a host file",
			layers: func(c *canary) [][]hostEntry {
				return climbingOut(c, "boot/initrd.img-6.1.0-9-cloud-amd64")
			},
			wantErr: []string{"/boot/initrd.img-6.1.0-9-cloud-amd64", "points outside the root"},
		},
		{
			name: "a loader linked inside the image is followed inside it",
			layers: func(c *canary) [][]hostEntry {
				es := fakeBootFiles("usr/lib/systemd/boot/efi/systemd-bootx64.efi")
				// The same absolute path as the host secret, but in the image.
				return [][]hostEntry{append(es,
					hostEntry{name: strings.TrimPrefix(c.secretPath, "/"), body: "decoy in the image"},
					hostEntry{name: "usr/lib/systemd/boot/efi/systemd-bootx64.efi", typ: tar.TypeSymlink, link: c.secretPath},
				)}
			},
			wantInDisk: "decoy in the image",
			wantBoot:   "systemd-boot",
		},
		{
			name: "a whiteout of the root",
			layers: func(c *canary) [][]hostEntry {
				return [][]hostEntry{fakeBootFiles(), {{name: ".wh.."}}}
			},
			wantErr: []string{`".wh.."`, "layer"},
		},
		{
			name: "a whiteout of the root's parent",
			layers: func(c *canary) [][]hostEntry {
				return [][]hostEntry{fakeBootFiles(), {{name: ".wh..."}}}
			},
			wantErr: []string{`".wh..."`, "layer"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := newCanary(t)
			ctx := t.TempDir()
			ref := hostileImage(t, filepath.Join(ctx, "img"), tc.layers(c)...)
			os.WriteFile(filepath.Join(ctx, "recipe.yaml"), []byte("name: hostile\nfrom: "+ref+"\ndisk: {size: 1GiB}\n"), 0o644)
			out, cache := t.TempDir(), t.TempDir()
			o := layerimg.Options{CacheDir: cache, DiskDir: out, RootfsTar: filepath.Join(out, "rootfs.tar"), Formats: []string{"raw"}}
			res, err := layerimg.Build(context.Background(), load(t, ctx, nil), o)
			c.check(t, out, cache)
			if tc.wantErr != nil {
				if err == nil {
					t.Fatalf("built %v, want an error naming %q", res.Disk, tc.wantErr)
				}
				for _, w := range tc.wantErr {
					if !strings.Contains(err.Error(), w) {
						t.Errorf("error %q does not name %q", err, w)
					}
				}
				if _, serr := os.Stat(filepath.Join(out, "disk.raw")); serr == nil {
					t.Errorf("a failed build left disk.raw behind")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			raw, err := os.ReadFile(filepath.Join(out, "disk.raw"))
			if err != nil {
				t.Fatal(err)
			}
			if res.Disk.Boot != tc.wantBoot {
				t.Errorf("boot layout %q, want %q", res.Disk.Boot, tc.wantBoot)
			}
			if !bytes.Contains(raw, []byte(tc.wantInDisk)) {
				t.Errorf("disk.raw lacks %q: the link was not followed inside the image", tc.wantInDisk)
			}
		})
	}
}

// A layout whose layer blob was swapped for another tar is refused before
// anything of it reaches the rootfs tar or a disk, naming both digests.
func TestHostileBaseDigestMismatch(t *testing.T) {
	needRoot(t)
	ctx := t.TempDir()
	dir := filepath.Join(ctx, "img")
	ref := hostileImage(t, dir, []hostEntry{{name: "etc/", typ: tar.TypeDir}, {name: "etc/good", body: "good"}})
	ls, _ := layoutImage(t, dir).Layers()
	want, _ := ls[0].Digest()
	// Another layer, in the good one's place.
	evil := hostileTar(t, []hostEntry{{name: "etc/", typ: tar.TypeDir}, {name: "etc/evil", body: "evil"}})
	el, _ := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(evil)), nil })
	rc, _ := el.Compressed()
	data, _ := io.ReadAll(rc)
	got, _ := el.Digest()
	if err := os.WriteFile(filepath.Join(dir, "blobs", "sha256", want.Hex), data, 0o644); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(ctx, "recipe.yaml"), []byte("name: hostile\nfrom: "+ref+"\n"), 0o644)
	out := t.TempDir()
	o := layerimg.Options{CacheDir: t.TempDir(), RootfsTar: filepath.Join(out, "rootfs.tar")}
	_, err := layerimg.Build(context.Background(), load(t, ctx, nil), o)
	if err == nil {
		t.Fatal("a swapped blob was built")
	}
	for _, w := range []string{want.String(), got.String(), "the manifest says"} {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error %q does not name %s", err, w)
		}
	}
	if _, err := os.Stat(o.RootfsTar); err == nil {
		t.Error("a refused base left rootfs.tar behind")
	}
}

// A step that swaps the directory the sandbox made for a secret's mount
// point for a link to a host directory cannot make layerimg delete the
// host's file of that name when it takes its mount points out of the layer.
func TestHostileStepSwapsMountPoint(t *testing.T) {
	needRoot(t)
	c := newCanary(t)
	os.WriteFile(filepath.Join(c.dir, "tok"), []byte("host file"), 0o600)
	c.before = c.snapshot(t)
	dir := busyboxContext(t, fixture(t, "bb-header.yaml")+`  - name: swap
    secrets: [{id: tok, src: token.txt}]
    run: /bin/busybox mv /run/secrets /run/moved && ln -s `+c.dir+` /run/secrets
`, map[string]string{"token.txt": "a-secret-value\n"})
	out, cache := t.TempDir(), t.TempDir()
	_, err := layerimg.Build(context.Background(), load(t, dir, nil), layerimg.Options{CacheDir: cache, RootfsTar: filepath.Join(out, "rootfs.tar")})
	if err != nil {
		t.Fatal(err)
	}
	c.check(t, out, cache)
}

// The last lines a failed step's error quotes are redacted as its streamed
// output is.
func TestSecretNotInFailureTail(t *testing.T) {
	needRoot(t)
	const secret = "tok-failing-step-4d1e"
	dir := busyboxContext(t, fixture(t, "bb-header.yaml")+`  - name: fail
    secrets: [{id: tok, src: token.txt}]
    run: cat /run/secrets/tok; exit 3
`, map[string]string{"token.txt": secret + "\n"})
	_, err := layerimg.Build(context.Background(), load(t, dir, nil), layerimg.Options{CacheDir: t.TempDir(), Output: io.Discard})
	if err == nil || !strings.Contains(err.Error(), "exit status 3") {
		t.Fatalf("err = %v", err)
	}
	if strings.Contains(err.Error(), secret) || !strings.Contains(err.Error(), "***") {
		t.Errorf("the error quotes the secret: %v", err)
	}
}

// A mount point that is a symlink in the image is refused: mount(2) would
// follow it from the host's root.
func TestHostileMountPointSymlink(t *testing.T) {
	needRoot(t)
	bb, err := os.ReadFile("/bin/busybox")
	if err != nil {
		t.Fatal("busybox not found: apt-get install busybox-static")
	}
	ctx := t.TempDir()
	ref := hostileImage(t, filepath.Join(ctx, "img"), []hostEntry{
		{name: "bin/", typ: tar.TypeDir},
		{name: "bin/busybox", body: string(bb), mode: 0o755},
		{name: "bin/sh", typ: tar.TypeSymlink, link: "busybox"},
		{name: "etc/", typ: tar.TypeDir},
		{name: "proc", typ: tar.TypeSymlink, link: "/etc"},
	})
	os.WriteFile(filepath.Join(ctx, "recipe.yaml"), []byte("name: hostile\nfrom: "+ref+"\nsteps:\n  - run: echo hi\n"), 0o644)
	_, err = layerimg.Build(context.Background(), load(t, ctx, nil), layerimg.Options{CacheDir: t.TempDir(), Output: io.Discard})
	if err == nil || !strings.Contains(err.Error(), "proc is a symlink in the image") {
		t.Fatalf("err = %v", err)
	}
}
