package layers

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/layerimg/layerimg/recipes"
	"github.com/layerimg/layerimg/rootfs"
)

// tarFile is a one-entry-per-file tar: name -> body (a trailing slash makes
// a directory).
func tarFile(t testing.TB, files ...string) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for i := 0; i+1 < len(files); i += 2 {
		h := &tar.Header{Name: files[i], Mode: 0o644, Typeflag: tar.TypeReg, Size: int64(len(files[i+1])), ModTime: time.Unix(1000, 0)}
		if strings.HasSuffix(files[i], "/") {
			h.Typeflag, h.Size, h.Mode = tar.TypeDir, 0, 0o755
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		tw.Write([]byte(files[i+1]))
	}
	tw.Close()
	return buf.Bytes()
}

func gz(t testing.TB, b []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&buf, gzip.BestSpeed)
	zw.Write(b)
	zw.Close()
	return buf.Bytes()
}

// baseLayer is a layer as an image describes it: the blob stored, its media
// type, and the diff_id its config claims.
type baseLayer struct {
	blob   []byte
	mt     types.MediaType
	diffID v1.Hash
}

func gzLayer(t testing.TB, tarData []byte) baseLayer {
	return baseLayer{gz(t, tarData), types.OCILayer, sha256Of(tarData)}
}

func configOf(t testing.TB, ls []baseLayer) []byte {
	t.Helper()
	cf := v1.ConfigFile{OS: "linux", Architecture: "amd64", RootFS: v1.RootFS{Type: "layers"}}
	for _, l := range ls {
		cf.RootFS.DiffIDs = append(cf.RootFS.DiffIDs, l.diffID)
	}
	b, err := json.Marshal(cf)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// writeLayout writes an OCI layout by hand, so that a test can then swap
// any blob under its name.
func writeLayout(t testing.TB, dir string, ls []baseLayer) (manifest v1.Hash, blobs []v1.Hash) {
	t.Helper()
	put := func(b []byte) v1.Hash {
		h := sha256Of(b)
		os.MkdirAll(filepath.Join(dir, "blobs/sha256"), 0o755)
		if err := os.WriteFile(filepath.Join(dir, "blobs/sha256", h.Hex), b, 0o644); err != nil {
			t.Fatal(err)
		}
		return h
	}
	cfg := configOf(t, ls)
	m := v1.Manifest{SchemaVersion: 2, MediaType: types.OCIManifestSchema1,
		Config: v1.Descriptor{MediaType: types.OCIConfigJSON, Digest: put(cfg), Size: int64(len(cfg))}}
	for _, l := range ls {
		d := put(l.blob)
		blobs = append(blobs, d)
		m.Layers = append(m.Layers, v1.Descriptor{MediaType: l.mt, Digest: d, Size: int64(len(l.blob))})
	}
	mb, _ := json.Marshal(m)
	manifest = put(mb)
	idx := v1.IndexManifest{SchemaVersion: 2, Manifests: []v1.Descriptor{{MediaType: types.OCIManifestSchema1, Digest: manifest, Size: int64(len(mb))}}}
	ib, _ := json.Marshal(idx)
	os.WriteFile(filepath.Join(dir, "index.json"), ib, 0o644)
	os.WriteFile(filepath.Join(dir, "oci-layout"), []byte(`{"imageLayoutVersion":"1.0.0"}`), 0o644)
	return manifest, blobs
}

// writeArchive writes a `docker save` tarball by hand. named stores files
// as blobs/sha256/HEX (as docker 25 does); otherwise as ID/layer.tar, whose
// ID is no digest. swap replaces layer i's file content after its name was
// chosen.
func writeArchive(t testing.TB, file string, ls []baseLayer, named bool, swap map[int][]byte) {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	add := func(name string, b []byte) {
		tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Typeflag: tar.TypeReg, Size: int64(len(b))})
		tw.Write(b)
	}
	cfg := configOf(t, ls)
	var man struct {
		Config   string
		RepoTags []string
		Layers   []string
	}
	man.Config, man.RepoTags = sha256Of(cfg).Hex+".json", []string{"example/img:1"}
	if named {
		man.Config = "blobs/sha256/" + sha256Of(cfg).Hex
	}
	add(man.Config, cfg)
	for i, l := range ls {
		p := fmt.Sprintf("%064d/layer.tar", i)
		if named {
			p = "blobs/sha256/" + sha256Of(l.blob).Hex
		}
		man.Layers = append(man.Layers, p)
		b := l.blob
		if s, ok := swap[i]; ok {
			b = s
		}
		add(p, b)
	}
	mb, _ := json.Marshal([]any{man})
	add("manifest.json", mb)
	tw.Close()
	if err := os.WriteFile(file, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
}

// outsideStamps records type, size, times (ctime too) and link count of
// every path under top but root.
func outsideStamps(top, root string) map[string]string {
	m := map[string]string{}
	filepath.WalkDir(top, func(p string, d fs.DirEntry, err error) error {
		if p == root {
			return filepath.SkipDir
		}
		var st syscall.Stat_t
		if err := syscall.Lstat(p, &st); err == nil {
			m[p] = fmt.Sprintf("%o %d %d %d.%d %d.%d", st.Mode, st.Size, st.Nlink, st.Mtim.Sec, st.Mtim.Nsec, st.Ctim.Sec, st.Ctim.Nsec)
		}
		return nil
	})
	return m
}

// TestHostileBases builds bases whose blobs, digests or compression lie and
// reads each the three ways a build does: resolving it, extracting its
// layers (as --rootfs-tar and -o do), unpacking them into the cache (as a run
// step does) and copying its blobs (as outputs do). Each is refused, naming
// the base, the layer and both digests, or accepted with nothing written
// outside the extraction root.
func TestHostileBases(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to extract layers (chown, mknod)")
	}
	good := tarFile(t, "etc/", "", "etc/os-release", "ID=test\n")
	other := tarFile(t, "etc/", "", "etc/shadow", "root::0:::::\n")
	truncated := gz(t, good)
	truncated = truncated[:len(truncated)/2]
	badCRC := gz(t, good)
	badCRC[len(badCRC)-8] ^= 0xff // the CRC32 in the gzip trailer
	bomb := func(t testing.TB) []byte {
		var buf bytes.Buffer
		zw, _ := gzip.NewWriterLevel(&buf, gzip.BestSpeed)
		tw := tar.NewWriter(zw)
		tw.WriteHeader(&tar.Header{Name: "zeros", Mode: 0o644, Typeflag: tar.TypeReg, Size: 200 << 20})
		zero := make([]byte, 1<<20)
		for range 200 {
			tw.Write(zero)
		}
		tw.Close()
		zw.Close()
		return buf.Bytes()
	}

	type setup func(t *testing.T, dir string) string // returns the base ref
	layoutOf := func(ls ...baseLayer) setup {
		return func(t *testing.T, dir string) string {
			writeLayout(t, filepath.Join(dir, "img"), ls)
			return "oci-layout:" + filepath.Join(dir, "img")
		}
	}
	for _, tc := range []struct {
		name  string
		base  setup
		want  []string // in the refusal, with DIR for the base's directory; none when accepted
		check func(t *testing.T, root string)
	}{
		{name: "layout accepted", base: layoutOf(gzLayer(t, good)), check: func(t *testing.T, root string) {
			if b, err := os.ReadFile(filepath.Join(root, "etc/os-release")); err != nil || string(b) != "ID=test\n" {
				t.Errorf("os-release: %q %v", b, err)
			}
		}},
		{name: "layout blob swapped", base: func(t *testing.T, dir string) string {
			_, blobs := writeLayout(t, filepath.Join(dir, "img"), []baseLayer{gzLayer(t, good)})
			os.WriteFile(filepath.Join(dir, "img/blobs/sha256", blobs[0].Hex), gz(t, other), 0o644)
			return "oci-layout:" + filepath.Join(dir, "img")
		}, want: []string{"base oci-layout:DIR/img: layer 1 " + sha256Of(gz(t, good)).String() + ": content has digest " + sha256Of(gz(t, other)).String() + ", the manifest says " + sha256Of(gz(t, good)).String()}},
		{name: "layout uncompressed blob swapped", base: func(t *testing.T, dir string) string {
			_, blobs := writeLayout(t, filepath.Join(dir, "img"), []baseLayer{{good, types.OCIUncompressedLayer, sha256Of(good)}})
			os.WriteFile(filepath.Join(dir, "img/blobs/sha256", blobs[0].Hex), other, 0o644)
			return "oci-layout:" + filepath.Join(dir, "img")
		}, want: []string{"layer 1 " + sha256Of(good).String() + ": content has digest " + sha256Of(other).String() + ", the manifest says " + sha256Of(good).String()}},
		{name: "layout diff_id mismatch", base: layoutOf(baseLayer{gz(t, other), types.OCILayer, sha256Of(good)}),
			want: []string{"layer 1 " + sha256Of(gz(t, other)).String() + ": uncompressed content has digest " + sha256Of(other).String() + ", the config's diff_id is " + sha256Of(good).String()}},
		{name: "layout uncompressed diff_id mismatch", base: layoutOf(baseLayer{other, types.OCIUncompressedLayer, sha256Of(good)}),
			want: []string{"uncompressed content has digest " + sha256Of(other).String() + ", the config's diff_id is " + sha256Of(good).String()}},
		{name: "layout truncated gzip", base: layoutOf(baseLayer{truncated, types.OCILayer, sha256Of(good)}),
			want: []string{"base oci-layout:DIR/img: layer 1 " + sha256Of(truncated).String() + ": ", "unexpected EOF"}},
		{name: "layout gzip with a bad checksum", base: layoutOf(baseLayer{badCRC, types.OCILayer, sha256Of(good)}),
			want: []string{"base oci-layout:DIR/img: layer 1 " + sha256Of(badCRC).String() + ": ", "gzip: invalid checksum"}},
		{name: "layout gzip media type on a plain tar", base: layoutOf(baseLayer{good, types.OCILayer, sha256Of(good)}), check: func(t *testing.T, root string) {
			if _, err := os.Stat(filepath.Join(root, "etc/os-release")); err != nil {
				t.Error(err)
			}
		}},
		{name: "layout manifest swapped", base: func(t *testing.T, dir string) string {
			m, _ := writeLayout(t, filepath.Join(dir, "img"), []baseLayer{gzLayer(t, good)})
			writeLayout(t, filepath.Join(dir, "evil"), []baseLayer{gzLayer(t, other)})
			mb, _ := os.ReadFile(filepath.Join(dir, "evil/index.json"))
			var idx v1.IndexManifest
			json.Unmarshal(mb, &idx)
			evil, _ := os.ReadFile(filepath.Join(dir, "evil/blobs/sha256", idx.Manifests[0].Digest.Hex))
			os.WriteFile(filepath.Join(dir, "img/blobs/sha256", m.Hex), evil, 0o644)
			return "oci-layout:" + filepath.Join(dir, "img")
		}, want: []string{"base oci-layout:DIR/img: manifest sha256:", "index.json says"}},
		{name: "layout config swapped", base: func(t *testing.T, dir string) string {
			writeLayout(t, filepath.Join(dir, "img"), []baseLayer{gzLayer(t, good)})
			cfg := configOf(t, []baseLayer{gzLayer(t, good)})
			os.WriteFile(filepath.Join(dir, "img/blobs/sha256", sha256Of(cfg).Hex), configOf(t, []baseLayer{gzLayer(t, other)}), 0o644)
			return "oci-layout:" + filepath.Join(dir, "img")
		}, want: []string{"base oci-layout:DIR/img: config: content has digest", "the manifest says " + sha256Of(configOf(t, []baseLayer{gzLayer(t, good)})).String()}},
		{name: "layout tar bomb", base: func(t *testing.T, dir string) string {
			b := bomb(t)
			var tarSum v1.Hash
			{
				zr, _ := gzip.NewReader(bytes.NewReader(b))
				tarSum, _, _ = v1.SHA256(zr)
			}
			writeLayout(t, filepath.Join(dir, "img"), []baseLayer{{b, types.OCILayer, tarSum}})
			return "oci-layout:" + filepath.Join(dir, "img")
		}, check: func(t *testing.T, root string) {
			if fi, err := os.Stat(filepath.Join(root, "zeros")); err != nil || fi.Size() != 200<<20 {
				t.Errorf("zeros: %v %v", fi, err)
			}
		}},
		{name: "layout whiteout of the root", base: layoutOf(gzLayer(t, tarFile(t, ".wh..", ""))), want: []string{`entry ".wh..": whiteout of no entry strictly below its directory refused`}},

		{name: "archive accepted", base: func(t *testing.T, dir string) string {
			writeArchive(t, filepath.Join(dir, "img.tar"), []baseLayer{gzLayer(t, good)}, true, nil)
			return "docker-archive:" + filepath.Join(dir, "img.tar")
		}, check: func(t *testing.T, root string) {
			if _, err := os.Stat(filepath.Join(root, "etc/os-release")); err != nil {
				t.Error(err)
			}
		}},
		{name: "archive blob swapped", base: func(t *testing.T, dir string) string {
			writeArchive(t, filepath.Join(dir, "img.tar"), []baseLayer{gzLayer(t, good)}, true, map[int][]byte{0: gz(t, other)})
			return "docker-archive:" + filepath.Join(dir, "img.tar")
		}, want: []string{"base docker-archive:DIR/img.tar: layer 1 " + sha256Of(gz(t, good)).String() + ": content has digest " + sha256Of(gz(t, other)).String() + ", manifest.json says " + sha256Of(gz(t, good)).String()}},
		{name: "archive uncompressed blob swapped", base: func(t *testing.T, dir string) string {
			writeArchive(t, filepath.Join(dir, "img.tar"), []baseLayer{{good, types.DockerUncompressedLayer, sha256Of(good)}}, true, map[int][]byte{0: other})
			return "docker-archive:" + filepath.Join(dir, "img.tar")
		}, want: []string{"base docker-archive:DIR/img.tar: layer 1 sha256:", "uncompressed content has digest " + sha256Of(other).String() + ", the config's diff_id is " + sha256Of(good).String()}},
		{name: "legacy archive tar swapped", base: func(t *testing.T, dir string) string {
			writeArchive(t, filepath.Join(dir, "img.tar"), []baseLayer{{good, types.DockerUncompressedLayer, sha256Of(good)}}, false, map[int][]byte{0: other})
			return "docker-archive:" + filepath.Join(dir, "img.tar")
		}, want: []string{"base docker-archive:DIR/img.tar: layer 1 sha256:", "uncompressed content has digest " + sha256Of(other).String() + ", the config's diff_id is " + sha256Of(good).String()}},
		{name: "archive diff_id mismatch", base: func(t *testing.T, dir string) string {
			writeArchive(t, filepath.Join(dir, "img.tar"), []baseLayer{{gz(t, other), types.DockerLayer, sha256Of(good)}}, true, nil)
			return "docker-archive:" + filepath.Join(dir, "img.tar")
		}, want: []string{"uncompressed content has digest " + sha256Of(other).String() + ", the config's diff_id is " + sha256Of(good).String()}},
		{name: "archive truncated gzip", base: func(t *testing.T, dir string) string {
			writeArchive(t, filepath.Join(dir, "img.tar"), []baseLayer{{truncated, types.DockerLayer, sha256Of(good)}}, true, nil)
			return "docker-archive:" + filepath.Join(dir, "img.tar")
		}, want: []string{"base docker-archive:DIR/img.tar: layer 1 " + sha256Of(truncated).String() + ": ", "unexpected EOF"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			top := t.TempDir()
			canary := filepath.Join(top, "canary")
			os.MkdirAll(filepath.Join(canary, "etc"), 0o755)
			os.WriteFile(filepath.Join(canary, "etc/os-release"), []byte("host"), 0o644)
			ref := tc.base(t, top)
			root := filepath.Join(top, "root")
			os.Mkdir(root, 0o755)
			before := outsideStamps(top, root)
			c := openCache(t)
			ctx := context.Background()
			errs := map[string]error{}
			b, err := ResolveBase(ctx, c, recipes.Base{Ref: ref}, BaseOptions{Platform: "linux/amd64"})
			if err != nil {
				errs["resolve"] = err
			} else {
				ls, err := b.Image.Layers()
				if err != nil {
					t.Fatal(err)
				}
				for _, l := range ls {
					d, _ := l.Digest()
					rc, err := l.Uncompressed()
					if err == nil {
						err = rootfs.Apply(ctx, root, rc, rootfs.ApplyOptions{Layer: d.String()})
						rc.Close()
					}
					if err != nil && errs["extract"] == nil {
						errs["extract"] = err
					}
					diffID, err := l.DiffID()
					if err == nil {
						_, err = c.Unpacked(ctx, diffID, diffID.String(), l.Uncompressed)
					}
					if err != nil && errs["unpack"] == nil {
						errs["unpack"] = err
					}
					rc, err = l.Compressed()
					if err == nil {
						_, err = io.Copy(io.Discard, rc)
						rc.Close()
					}
					if err != nil && errs["copy"] == nil {
						errs["copy"] = err
					}
				}
			}
			if len(tc.want) == 0 {
				for how, err := range errs {
					t.Errorf("%s refused: %v", how, err)
				}
				if tc.check != nil {
					tc.check(t, root)
				}
			} else {
				if len(errs) == 0 {
					t.Errorf("accepted")
				}
				for how, err := range errs {
					for _, w := range tc.want {
						if w = strings.ReplaceAll(w, "DIR", top); !strings.Contains(err.Error(), w) {
							t.Errorf("%s: %v\n does not say %q", how, err, w)
						}
					}
					t.Logf("%s: %v", how, err)
				}
			}
			after := outsideStamps(top, root)
			for p, s := range before {
				if after[p] != s && !strings.HasPrefix(p, c.Dir()) {
					t.Errorf("outside the root, %s changed", p)
				}
			}
		})
	}
}

// TestNormalizeTarRefusesOwners: a bootstrap tar with an owner that no file
// can have is refused, not stored cut to 32 bits or as root.
func TestNormalizeTarRefusesOwners(t *testing.T) {
	for _, tc := range []struct {
		uid, gid int
		want     string
	}{
		{1<<32 - 1, 0, `entry "f": uid 4294967295 is outside 0..4294967294`},
		{0, 99999999999, `entry "f": gid 99999999999 is outside 0..4294967294`},
	} {
		var in bytes.Buffer
		tw := tar.NewWriter(&in)
		tw.WriteHeader(&tar.Header{Name: "f", Typeflag: tar.TypeReg, Uid: tc.uid, Gid: tc.gid, Format: tar.FormatPAX})
		tw.Close()
		err := normalizeTar(&in, io.Discard, time.Unix(0, 0))
		if err == nil || err.Error() != tc.want {
			t.Errorf("uid %d gid %d: %v, want %q", tc.uid, tc.gid, err, tc.want)
		}
	}
}
