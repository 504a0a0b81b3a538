package e2e_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/layerimg/layerimg"
	"github.com/layerimg/layerimg/disk/diskset"
	"github.com/layerimg/layerimg/disk/sparse"
	"github.com/layerimg/layerimg/layers"
)

const corruptRecipe = `name: corrupt
from: scratch
args: {N: one}
steps:
  - name: busybox
    copy: {src: bin, dst: /bin}
  - name: motd
    copy: {src: motd, dst: /etc/motd}
  - name: data
    run: mkdir -p /data && cat /etc/motd > /data/motd && echo ${N} > /data/n
disk: {boot: none, size: 1GiB}
`

var corruptFormats = []string{"raw", "vmdk", "qcow2"}

// outcome is what a build made that a corrupt cache must not change.
type outcome struct {
	image string
	disks map[string]string // format -> sha256 of the file
}

func outcomeOf(t *testing.T, res *layerimg.Result) outcome {
	t.Helper()
	o := outcome{image: res.Image, disks: map[string]string{}}
	for f, df := range res.Disk.Files {
		d, err := sparse.DigestFile(df.Path)
		if err != nil {
			t.Fatal(err)
		}
		o.disks[f] = d
	}
	return o
}

// cacheItems finds, in a cache a build of corruptRecipe filled, the items
// to corrupt.
type cacheItems struct {
	cache, motdKey, motdBlob, motdTree, disks string
}

func itemsOf(cache string, res *layerimg.Result) cacheItems {
	motd := res.Steps[1]
	hex := func(d string) string { return strings.TrimPrefix(d, "sha256:") }
	return cacheItems{
		cache:    cache,
		motdKey:  filepath.Join("keys", hex(motd.Key)+".json"),
		motdBlob: filepath.Join("blobs", "sha256", hex(motd.Layer)),
		motdTree: filepath.Join("unpacked", hex(motd.DiffID)),
		disks:    filepath.Join("disks", hex(res.Disk.Key)),
	}
}

// flip changes one byte of p at off (negative: from the end); keepMtime
// puts the mtime back to the nanosecond afterwards.
func flip(t *testing.T, p string, off int64, keepMtime bool) {
	t.Helper()
	fi, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	if off < 0 {
		off += fi.Size()
	}
	f, err := os.OpenFile(p, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	b := []byte{0}
	f.ReadAt(b, off)
	b[0] ^= 0x01
	f.WriteAt(b, off)
	f.Close()
	if keepMtime {
		os.Chtimes(p, fi.ModTime(), fi.ModTime())
	}
}

func truncateHalf(t *testing.T, p string, keepMtime bool) {
	t.Helper()
	fi, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	os.Truncate(p, fi.Size()/2)
	if keepMtime {
		os.Chtimes(p, fi.ModTime(), fi.ModTime())
	}
}

// editJSON rewrites a key file's layer field, digits and all, as a
// careless hand would: valid JSON, plausible values.
func editJSON(t *testing.T, p string, edit func(layer map[string]any)) {
	t.Helper()
	data, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	json.Unmarshal(data, &m)
	edit(m["layer"].(map[string]any))
	data, _ = json.MarshalIndent(m, "", "  ")
	os.WriteFile(p, data, 0o644)
}

// verifyCache runs what `cache verify` runs, through the public API.
func verifyCache(t *testing.T, cache string, repair bool) []layers.Problem {
	t.Helper()
	c, err := layers.OpenCache(cache, repair, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_, bad, err := c.Verify(context.Background(), repair)
	if err != nil {
		t.Fatal(err)
	}
	ds, err := diskset.Open(c, nil)
	if err != nil {
		t.Fatal(err)
	}
	_, dbad, err := ds.Check(context.Background(), repair)
	if err != nil {
		t.Fatal(err)
	}
	return append(bad, dbad...)
}

// TestCorruptCache corrupts each kind of cached item in turn (a byte
// flipped with the mtime kept or changed, or the file truncated), then
// checks that verify names it, that the next build warns naming it, and
// that the build's outputs are a clean build's, byte for byte.
func TestCorruptCache(t *testing.T) {
	needRoot(t)
	dir := busyboxContext(t, corruptRecipe, map[string]string{"motd": "welcome to a clean cache\n"})
	clean := map[string]outcome{}
	for _, n := range []string{"one", "two"} {
		o := layerimg.Options{CacheDir: t.TempDir(), DiskDir: t.TempDir(), Formats: corruptFormats}
		clean[n] = outcomeOf(t, build(t, load(t, dir, map[string]string{"N": n}), o))
	}

	type target struct {
		// item is the path, in the cache, of what is corrupted; named
		// is what verify's report and the build's warning must name.
		item, named func(cacheItems) string
		corrupt     func(t *testing.T, p string, keepMtime bool)
		// rerun: the item is used only when a step runs (an unpacked
		// tree), so the rebuild changes the last step's argument.
		rerun bool
	}
	key := func(i cacheItems) string { return i.motdKey }
	disk := func(f string) func(cacheItems) string {
		return func(i cacheItems) string { return filepath.Join(i.disks, diskset.FileName(f)) }
	}
	flipAt := func(off int64) func(t *testing.T, p string, keep bool) {
		return func(t *testing.T, p string, keep bool) { flip(t, p, off, keep) }
	}
	targets := map[string]target{
		"layer blob": {item: func(i cacheItems) string { return i.motdBlob }, named: func(i cacheItems) string { return filepath.Base(i.motdBlob) }, corrupt: flipAt(-10)},
		"key file diffID": {item: key, named: key, corrupt: func(t *testing.T, p string, keep bool) {
			editJSON(t, p, func(l map[string]any) {
				d := []byte(l["diffID"].(string))
				d[len(d)-1] ^= 1 // 0<->1, a<->`... keep it hex:
				if c := d[len(d)-1]; !strings.ContainsRune("0123456789abcdef", rune(c)) {
					d[len(d)-1] = '0'
				}
				l["diffID"] = string(d)
			})
		}},
		"key file size": {item: key, named: key, corrupt: func(t *testing.T, p string, keep bool) {
			editJSON(t, p, func(l map[string]any) { l["size"] = l["size"].(float64) + 1 })
		}},
		"unpacked tree file": {item: func(i cacheItems) string { return filepath.Join(i.motdTree, "etc/motd") },
			named: func(i cacheItems) string { return i.motdTree }, corrupt: flipAt(3), rerun: true},
		"disk.raw":   {item: disk("raw"), named: disk("raw"), corrupt: flipAt(1 << 20)},
		"disk.vmdk":  {item: disk("vmdk"), named: disk("vmdk"), corrupt: flipAt(-600)},
		"disk.qcow2": {item: disk("qcow2"), named: disk("qcow2"), corrupt: flipAt(-600)},
		"meta.json": {item: func(i cacheItems) string { return filepath.Join(i.disks, "meta.json") },
			named: func(i cacheItems) string { return filepath.Join(i.disks, "meta.json") }, corrupt: func(t *testing.T, p string, keep bool) {
				data, _ := os.ReadFile(p)
				data = bytes.Replace(data, []byte(`"boot": "none"`), []byte(`"boot": "bios"`), 1)
				fi, _ := os.Stat(p)
				os.WriteFile(p, data, 0o644)
				if keep {
					os.Chtimes(p, fi.ModTime(), fi.ModTime())
				}
			}},
	}
	// No commas: the cache dir is in overlayfs mount options.
	modes := []string{"flipped keeping mtime", "flipped with new mtime", "truncated keeping mtime"}
	for name, tg := range targets {
		for _, mode := range modes {
			if strings.HasPrefix(name, "key file") && mode != modes[1] {
				continue // an edit, not a flip: one mode
			}
			if name == "meta.json" && mode == modes[2] {
				continue // the same as any unreadable meta.json; the diskset tests truncate it
			}
			t.Run(name+" "+mode, func(t *testing.T) {
				cache := t.TempDir()
				o := layerimg.Options{CacheDir: cache, DiskDir: t.TempDir(), Formats: corruptFormats}
				items := itemsOf(cache, build(t, load(t, dir, map[string]string{"N": "one"}), o))
				p := filepath.Join(cache, tg.item(items))
				switch mode {
				case modes[2]:
					truncateHalf(t, p, true)
				default:
					tg.corrupt(t, p, mode == modes[0])
				}
				named := tg.named(items)

				// verify names it; with --repair (every third case) it
				// drops it before the build does.
				repair := mode == modes[2]
				bad := verifyCache(t, cache, repair)
				if len(bad) == 0 || !strings.Contains(fmt.Sprint(bad), named) {
					t.Fatalf("verify did not name %s: %v", named, bad)
				}
				t.Logf("verify: %v", bad)
				if repair {
					if bad := verifyCache(t, cache, false); len(bad) != 0 {
						t.Fatalf("after --repair: %v", bad)
					}
				}

				var logs bytes.Buffer
				o.Log, o.DiskDir = newTestLogger(&logs), t.TempDir()
				n := "one"
				if tg.rerun {
					n = "two"
				}
				got := outcomeOf(t, build(t, load(t, dir, map[string]string{"N": n}), o))
				if got.image != clean[n].image {
					t.Errorf("image %s, a clean build makes %s", got.image, clean[n].image)
				}
				for f, d := range clean[n].disks {
					if got.disks[f] != d {
						t.Errorf("%s has sha256 %s, a clean build's %s", f, got.disks[f], d)
					}
				}
				if !repair && !strings.Contains(warnings(logs.String()), named) {
					t.Errorf("no warning names %s:\n%s", named, warnings(logs.String()))
				}
				if bad := verifyCache(t, cache, false); len(bad) != 0 {
					t.Errorf("after the rebuild, verify finds %v", bad)
				}
			})
		}
	}
}

// warnings keeps the WARN lines of a log.
func warnings(log string) string {
	var out []string
	for _, l := range strings.Split(log, "\n") {
		if strings.Contains(l, "level=WARN") {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
