package disk

import (
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/layerimg/layerimg/rootfs"
)

// canary is a host directory outside every tree: files of random bytes
// (one of them "secret") whose contents must never reach a stage, a layer or
// a disk, and whose entries and times must never change.
type canary struct {
	dir, secret string
	contents    [][]byte
	before      map[string]canaryEntry
}

type canaryEntry struct {
	mode                fs.FileMode
	size                int64
	ctime, mtime, atime unix.Timespec
}

func newCanary(t *testing.T) *canary {
	t.Helper()
	c := &canary{dir: t.TempDir()}
	c.secret = filepath.Join(c.dir, "secret")
	for _, p := range []string{"secret", "id_rsa", "EFI/BOOT/BOOTX64.EFI", "vmlinuz-6.1.0-99-cloud-amd64", "initrd.img-6.1.0-99-cloud-amd64"} {
		b := make([]byte, 256)
		rand.Read(b)
		full := filepath.Join(c.dir, p)
		must(t, os.MkdirAll(filepath.Dir(full), 0o755))
		must(t, os.WriteFile(full, b, 0o600))
		c.contents = append(c.contents, b)
	}
	// Times in the past, so that a read under relatime would move atime.
	old := time.Unix(1600000000, 0)
	filepath.Walk(c.dir, func(p string, _ fs.FileInfo, err error) error {
		if err == nil {
			os.Chtimes(p, old, old)
		}
		return nil
	})
	c.before = c.snapshot(t)
	return c
}

func (c *canary) snapshot(t *testing.T) map[string]canaryEntry {
	t.Helper()
	m := map[string]canaryEntry{}
	err := filepath.Walk(c.dir, func(p string, fi fs.FileInfo, err error) error {
		if err != nil {
			return err
		}
		var st unix.Stat_t
		if err := unix.Lstat(p, &st); err != nil {
			return err
		}
		rel, _ := filepath.Rel(c.dir, p)
		m[rel] = canaryEntry{fi.Mode(), fi.Size(), st.Ctim, st.Mtim, st.Atim}
		return nil
	})
	must(t, err)
	return m
}

// check fails t if any entry of the canary was added, removed, changed,
// moved (ctime) or read (atime).
func (c *canary) check(t *testing.T) {
	t.Helper()
	after := c.snapshot(t)
	for p, b := range c.before {
		if a, ok := after[p]; !ok {
			t.Errorf("host canary %s is gone", p)
		} else if a != b {
			t.Errorf("host canary %s changed: %+v, was %+v", p, a, b)
		}
	}
	for p := range after {
		if _, ok := c.before[p]; !ok {
			t.Errorf("host canary %s appeared", p)
		}
	}
}

// scan fails t if any canary content occurs in the data of file p (holes
// skipped, so a sparse disk is read quickly).
func (c *canary) scan(t *testing.T, p string) {
	t.Helper()
	f, err := os.Open(p)
	must(t, err)
	defer f.Close()
	fi, err := f.Stat()
	must(t, err)
	const chunk = 4 << 20
	buf := make([]byte, chunk)
	for off := int64(0); off < fi.Size(); {
		data, err := unix.Seek(int(f.Fd()), off, unix.SEEK_DATA)
		if err != nil { // ENXIO: no data after off
			return
		}
		hole, err := unix.Seek(int(f.Fd()), data, unix.SEEK_HOLE)
		must(t, err)
		// Overlap the chunks by a little, so content split across two is found.
		for at := max(data-256, 0); at < hole; at += chunk - 256 {
			n, err := f.ReadAt(buf[:min(chunk, hole-at)], at)
			if err != nil && err != io.EOF {
				t.Fatal(err)
			}
			for i, b := range c.contents {
				if bytes.Contains(buf[:n], b) {
					t.Errorf("%s holds the bytes of host canary file %d at about offset %d", p, i, at)
				}
			}
		}
		off = hole
	}
}

// scanDir scans every regular file under dir.
func (c *canary) scanDir(t *testing.T, dir string) {
	t.Helper()
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			c.scan(t, p)
		}
		return nil
	})
}

// hostileCase is an image in which some path is a symlink aimed at the host.
type hostileCase struct {
	name string
	boot string // Spec.Boot; "" detects
	grub bool   // the tree has shim and signed GRUB
	// setup makes the hostile entries; mutate runs after the stage is
	// applied, to plant entries in the ESP that the image's own layers
	// would have put there.
	setup, mutate func(t *testing.T, tree string, c *canary)
	// refuse is what the error must say; "" means the disk is made.
	refuse string
	// esp holds the content the ESP's files must have: the image's own
	// file, reached through the link inside the image.
	esp map[string]string
}

// linkAbs makes p a symlink to the canary path target, written as an
// absolute host path: inside the image it means tree+target, where a decoy
// is put.
func linkAbs(t *testing.T, tree, p, target, decoy string) {
	t.Helper()
	full := filepath.Join(tree, p)
	must(t, os.RemoveAll(full))
	must(t, os.MkdirAll(filepath.Dir(full), 0o755))
	must(t, os.Symlink(target, full))
	if decoy != "" {
		d := filepath.Join(tree, target)
		must(t, os.MkdirAll(filepath.Dir(d), 0o755))
		must(t, os.WriteFile(d, []byte(decoy), 0o644))
	}
}

// linkRel makes p a relative symlink that reaches target on the host: it
// climbs above the image's root.
func linkRel(t *testing.T, tree, p, target string) {
	t.Helper()
	full := filepath.Join(tree, p)
	must(t, os.RemoveAll(full))
	must(t, os.MkdirAll(filepath.Dir(full), 0o755))
	rel, err := filepath.Rel(filepath.Dir(full), target)
	must(t, err)
	must(t, os.Symlink(rel, full))
}

const kver = "6.1.0-10-cloud-amd64"

func hostileCases() []hostileCase {
	var cs []hostileCase
	// Files the disk stage copies into the ESP, each as an absolute link
	// (followed inside the image, to a decoy) and as a relative link that
	// climbs out (refused).
	for _, f := range []struct {
		name, path, boot string
		grub             bool
		esp              string
	}{
		{"kernel", "boot/vmlinuz-" + kver, BootSystemd, false, "vmlinuz-" + kver},
		{"initrd", "boot/initrd.img-" + kver, BootSystemd, false, "initrd.img-" + kver},
		{"systemd-boot", systemdBootEFI.path, "", false, "EFI/BOOT/BOOTX64.EFI"},
		{"shim", shimEFI.path, "", true, "EFI/BOOT/BOOTX64.EFI"},
		{"grub", grubEFI.path, "", true, "EFI/BOOT/grubx64.efi"},
	} {
		decoy := "decoy " + f.name + " inside the image"
		cs = append(cs, hostileCase{
			name: f.name + "-abs", boot: f.boot, grub: f.grub,
			setup: func(t *testing.T, tree string, c *canary) { linkAbs(t, tree, f.path, c.secret, decoy) },
			esp:   map[string]string{f.esp: decoy},
		}, hostileCase{
			name: f.name + "-rel", boot: f.boot, grub: f.grub,
			setup:  func(t *testing.T, tree string, c *canary) { linkRel(t, tree, f.path, c.secret) },
			refuse: "boot: /" + f.path + ": symlink " + f.path + " -> ",
		})
	}
	cs = append(cs,
		// A link to another file of the image is normal, as /vmlinuz is.
		hostileCase{
			name: "systemd-boot-in-image",
			setup: func(t *testing.T, tree string, c *canary) {
				p := filepath.Join(tree, systemdBootEFI.path)
				must(t, os.Rename(p, p+".real"))
				must(t, os.WriteFile(p+".real", []byte("the image's systemd-boot"), 0o644))
				must(t, os.Symlink(filepath.Base(p)+".real", p))
			},
			esp: map[string]string{"EFI/BOOT/BOOTX64.EFI": "the image's systemd-boot"},
		},
		// /vmlinuz is only named in grub.cfg, but is still resolved.
		hostileCase{
			name: "vmlinuz-abs", boot: BootGrub, grub: true,
			setup: func(t *testing.T, tree string, c *canary) { linkAbs(t, tree, "vmlinuz", c.secret, "decoy /vmlinuz") },
			esp:   map[string]string{},
		},
		hostileCase{
			name: "vmlinuz-rel", boot: BootGrub, grub: true,
			setup:  func(t *testing.T, tree string, c *canary) { linkRel(t, tree, "vmlinuz", c.secret) },
			refuse: "boot: /vmlinuz: symlink vmlinuz -> ",
		},
		// The newest kernel of /boot, pointing at the host's kernel files.
		hostileCase{
			name: "new-kernel-rel", boot: BootSystemd,
			setup: func(t *testing.T, tree string, c *canary) {
				linkRel(t, tree, "boot/vmlinuz-6.1.0-99-cloud-amd64", filepath.Join(c.dir, "vmlinuz-6.1.0-99-cloud-amd64"))
				linkRel(t, tree, "boot/initrd.img-6.1.0-99-cloud-amd64", filepath.Join(c.dir, "initrd.img-6.1.0-99-cloud-amd64"))
			},
			refuse: "boot: /boot/vmlinuz-6.1.0-99-cloud-amd64: symlink boot/vmlinuz-6.1.0-99-cloud-amd64 -> ",
		},
		// The ESP mount point, and /boot itself, as links to a host directory.
		hostileCase{
			name:   "boot-efi-abs",
			setup:  func(t *testing.T, tree string, c *canary) { linkAbs(t, tree, "boot/efi", c.dir, "") },
			refuse: "disk: /boot/efi is a symlink; the ESP mount point /boot/efi must be a real directory",
		},
		hostileCase{
			name:   "boot-efi-rel",
			setup:  func(t *testing.T, tree string, c *canary) { linkRel(t, tree, "boot/efi", c.dir) },
			refuse: "disk: /boot/efi is a symlink; the ESP mount point /boot/efi must be a real directory",
		},
		hostileCase{
			name: "boot-abs",
			setup: func(t *testing.T, tree string, c *canary) {
				linkAbs(t, tree, "boot", c.dir, "")
			},
			refuse: "disk: /boot is a symlink; the ESP mount point /boot/efi must be a real directory",
		},
		hostileCase{
			name:   "boot-rel",
			setup:  func(t *testing.T, tree string, c *canary) { linkRel(t, tree, "boot", c.dir) },
			refuse: "disk: /boot is a symlink; the ESP mount point /boot/efi must be a real directory",
		},
		// The mount point made a link after Prepare (a layer could do it):
		// Assemble itself refuses.
		hostileCase{
			name: "boot-efi-late", boot: BootSystemd,
			mutate: func(t *testing.T, tree string, c *canary) {
				must(t, os.Rename(filepath.Join(tree, "boot/efi"), filepath.Join(tree, "boot/efi.real")))
				must(t, os.Symlink(c.dir, filepath.Join(tree, "boot/efi")))
			},
			refuse: "disk: /boot/efi is a symlink; the ESP mount point /boot/efi must be a real directory",
		},
		// Entries of the ESP that FAT cannot hold: mcopy would follow a link
		// on the host.
		hostileCase{
			name: "esp-file-link", boot: BootSystemd,
			mutate: func(t *testing.T, tree string, c *canary) {
				must(t, os.Symlink(c.secret, filepath.Join(tree, "boot/efi/key")))
			},
			refuse: "disk: /boot/efi/key is a symlink; the ESP is FAT",
		},
		hostileCase{
			name: "esp-dir-link", boot: BootSystemd,
			mutate: func(t *testing.T, tree string, c *canary) {
				must(t, os.Symlink(c.dir, filepath.Join(tree, "boot/efi/EFI/host")))
			},
			refuse: "disk: /boot/efi/EFI/host is a symlink; the ESP is FAT",
		},
		hostileCase{
			name: "esp-fifo", boot: BootSystemd,
			mutate: func(t *testing.T, tree string, c *canary) {
				must(t, unix.Mkfifo(filepath.Join(tree, "boot/efi/loader/fifo"), 0o600))
			},
			refuse: "disk: /boot/efi/loader/fifo is a device, FIFO or socket; the ESP is FAT",
		},
	)
	return cs
}

// TestHostileSymlinks runs the disk stage (Prepare, the stage applied as a
// layer, PlanLayout, Assemble) on trees whose boot files and ESP are
// symlinks aimed at a host canary, and checks each outcome exactly: refused
// with an error naming the path, or made with the link followed inside the
// image. Either way the canary is untouched and unread, and its bytes are in
// no stage, layer or disk.
func TestHostileSymlinks(t *testing.T) {
	needRoot(t)
	for _, hc := range hostileCases() {
		t.Run(hc.name, func(t *testing.T) {
			c := newCanary(t)
			tree := makeTree(t)
			if hc.grub {
				for _, f := range []file{shimEFI, grubEFI} {
					must(t, os.MkdirAll(filepath.Join(tree, filepath.Dir(f.path)), 0o755))
					must(t, os.WriteFile(filepath.Join(tree, f.path), []byte("MZ fake "+f.pkg), 0o644))
				}
				must(t, os.Symlink("boot/vmlinuz-"+kver, filepath.Join(tree, "vmlinuz")))
				must(t, os.Symlink("boot/initrd.img-"+kver, filepath.Join(tree, "initrd.img")))
			}
			if hc.setup != nil {
				hc.setup(t, tree, c)
			}
			spec := Spec{Boot: hc.boot, IDs: DeriveIDs("sha256:hostile", false), Epoch: 1700000000}
			stage := t.TempDir()
			raw := filepath.Join(t.TempDir(), "disk.raw")
			l, p, err := runDiskStage(t, tree, stage, raw, spec, c, hc.mutate)

			c.check(t)
			c.scanDir(t, stage)
			c.scanDir(t, filepath.Dir(raw))
			if hc.refuse != "" {
				if err == nil || !strings.Contains(err.Error(), hc.refuse) {
					t.Fatalf("got %v; want an error containing %q", err, hc.refuse)
				}
				t.Logf("refused: %v", err)
				if _, serr := os.Stat(raw); serr == nil {
					t.Error("a refused build left disk.raw")
				}
				if hc.mutate != nil && !strings.Contains(hc.name, "late") {
					// Refused before anything moved: the ESP is still in the tree.
					if _, err := os.Stat(filepath.Join(tree, "boot/efi/loader/loader.conf")); err != nil {
						t.Errorf("the tree lost its ESP: %v", err)
					}
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			// Assemble moved the ESP's files back into the tree.
			if p.Boot != BootNone {
				if _, err := os.Stat(filepath.Join(tree, "boot/efi/EFI/BOOT/BOOTX64.EFI")); err != nil {
					t.Errorf("ESP not moved back: %v", err)
				}
			}
			esp := checkDisk(t, raw, l)
			for path, want := range hc.esp {
				if got := oracle(t, "mtype", "-i", esp, "::/"+path); got != want {
					t.Errorf("ESP %s holds %q, want %q", path, got, want)
				}
				if got, _ := os.ReadFile(filepath.Join(stage, espMount, path)); string(got) != want {
					t.Errorf("stage %s holds %q, want %q", path, got, want)
				}
			}
		})
	}
}

// runDiskStage runs the disk stage as the build does, the stage going
// through a layer tar (written to stage's parent dir too, for the scan).
func runDiskStage(t *testing.T, tree, stage, raw string, spec Spec, c *canary, mutate func(*testing.T, string, *canary)) (Layout, *Prepared, error) {
	t.Helper()
	ctx := context.Background()
	p, err := Prepare(tree, stage, spec)
	if err != nil {
		return Layout{}, nil, err
	}
	var layer bytes.Buffer
	epoch := time.Unix(spec.Epoch, 0)
	must(t, rootfs.WriteTar(ctx, &layer, stage, rootfs.TarOptions{Epoch: &epoch}))
	must(t, os.WriteFile(filepath.Join(filepath.Dir(raw), "layer.tar"), layer.Bytes(), 0o644))
	if err := rootfs.Apply(ctx, tree, &layer, rootfs.ApplyOptions{Layer: "disk (generated)"}); err != nil {
		return Layout{}, p, err
	}
	if mutate != nil {
		mutate(t, tree, c)
	}
	l, err := PlanLayout(tree, spec)
	if err != nil {
		return l, p, err
	}
	return l, p, Assemble(ctx, tree, p, l, raw)
}

// checkDisk runs the outside checkers on a finished disk and returns its
// ESP, extracted.
func checkDisk(t *testing.T, raw string, l Layout) string {
	t.Helper()
	if v := oracle(t, "sgdisk", "-v", raw); !strings.Contains(v, "No problems found") {
		t.Errorf("sgdisk -v: %s", v)
	}
	esp := extract(t, raw, l.ESPStart, l.ESPSize)
	oracle(t, "fsck.vfat", "-n", esp)
	oracle(t, "e2fsck", "-fn", fmt.Sprintf("%s?offset=%d", raw, l.RootStart))
	return esp
}

// TestESPMountWithoutBoot checks that a tree without /boot still makes a
// data disk: no ESP mount point is not an error.
func TestESPMountWithoutBoot(t *testing.T) {
	needRoot(t)
	c := newCanary(t)
	tree := t.TempDir()
	must(t, os.WriteFile(filepath.Join(tree, "data"), []byte("data"), 0o644))
	spec := Spec{IDs: DeriveIDs("sha256:data", false)}
	raw := filepath.Join(t.TempDir(), "disk.raw")
	l, p, err := runDiskStage(t, tree, t.TempDir(), raw, spec, c, nil)
	must(t, err)
	if p.Boot != BootNone {
		t.Errorf("boot %q for a tree without a loader", p.Boot)
	}
	checkDisk(t, raw, l)
	c.check(t)
	if _, err := exec.LookPath("debugfs"); err == nil {
		out := oracle(t, "debugfs", "-R", "ls -l /", fmt.Sprintf("%s?offset=%d", raw, l.RootStart))
		if !strings.Contains(out, "data") {
			t.Errorf("root fs lacks /data:\n%s", out)
		}
	}
}
