package disk

import (
	"archive/tar"
	"bytes"
	"crypto/rand"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
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
	grub bool   // the image has shim and signed GRUB
	// setup is a layer on top of the base; late one on top of the
	// generated layer, to plant entries that a later layer of the image
	// would have put in the ESP.
	setup, late func(c *canary) []ent
	// refuse is what the error must say; "" means the disk is made.
	refuse string
	// esp holds the content the ESP's files must have: the image's own
	// file, reached through the link inside the image.
	esp map[string]string
}

// linkAbs makes p a symlink to the canary path target, written as an
// absolute host path: inside the image it means that path under the
// image's root, where a decoy is put.
func linkAbs(p, target, decoy string) []ent {
	es := []ent{symlink(p, target)}
	if decoy != "" {
		es = append(es, reg(strings.TrimPrefix(target, "/"), decoy, 0o644))
	}
	return es
}

// linkRel makes p a relative symlink that reaches target on the host: it
// climbs above the image's root.
func linkRel(p, target string) []ent {
	return []ent{symlink(p, strings.Repeat("../", strings.Count(p, "/")+8)+strings.TrimPrefix(target, "/"))}
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
		{"systemd-boot", x64.systemdBoot.path, "", false, "EFI/BOOT/BOOTX64.EFI"},
		{"shim", x64.shim.path, "", true, "EFI/BOOT/BOOTX64.EFI"},
		{"grub", x64.grub.path, "", true, "EFI/BOOT/grubx64.efi"},
	} {
		decoy := "decoy " + f.name + " inside the image"
		cs = append(cs, hostileCase{
			name: f.name + "-abs", boot: f.boot, grub: f.grub,
			setup: func(c *canary) []ent { return linkAbs(f.path, c.secret, decoy) },
			esp:   map[string]string{f.esp: decoy},
		}, hostileCase{
			name: f.name + "-rel", boot: f.boot, grub: f.grub,
			setup:  func(c *canary) []ent { return linkRel(f.path, c.secret) },
			refuse: "boot: /" + f.path + ": symlink " + f.path + " -> ",
		})
	}
	cs = append(cs,
		// A link to another file of the image is normal, as /vmlinuz is.
		hostileCase{
			name: "systemd-boot-in-image",
			setup: func(c *canary) []ent {
				return []ent{reg(x64.systemdBoot.path+".real", "the image's systemd-boot", 0o644), symlink(x64.systemdBoot.path, path.Base(x64.systemdBoot.path)+".real")}
			},
			esp: map[string]string{"EFI/BOOT/BOOTX64.EFI": "the image's systemd-boot"},
		},
		// /vmlinuz is only named in grub.cfg, but is still resolved.
		hostileCase{
			name: "vmlinuz-abs", boot: BootGrub, grub: true,
			setup: func(c *canary) []ent { return linkAbs("vmlinuz", c.secret, "decoy /vmlinuz") },
			esp:   map[string]string{},
		},
		hostileCase{
			name: "vmlinuz-rel", boot: BootGrub, grub: true,
			setup:  func(c *canary) []ent { return linkRel("vmlinuz", c.secret) },
			refuse: "boot: /vmlinuz: symlink vmlinuz -> ",
		},
		// The newest kernel of /boot, pointing at the host's kernel files.
		hostileCase{
			name: "new-kernel-rel", boot: BootSystemd,
			setup: func(c *canary) []ent {
				return append(linkRel("boot/vmlinuz-6.1.0-99-cloud-amd64", filepath.Join(c.dir, "vmlinuz-6.1.0-99-cloud-amd64")),
					linkRel("boot/initrd.img-6.1.0-99-cloud-amd64", filepath.Join(c.dir, "initrd.img-6.1.0-99-cloud-amd64"))...)
			},
			refuse: "boot: /boot/vmlinuz-6.1.0-99-cloud-amd64: symlink boot/vmlinuz-6.1.0-99-cloud-amd64 -> ",
		},
		// The ESP mount point, and /boot itself, as links to a host directory.
		hostileCase{
			name:   "boot-efi-abs",
			setup:  func(c *canary) []ent { return linkAbs("boot/efi", c.dir, "") },
			refuse: "disk: /boot/efi is a symlink; the ESP mount point /boot/efi must be a real directory",
		},
		hostileCase{
			name:   "boot-efi-rel",
			setup:  func(c *canary) []ent { return linkRel("boot/efi", c.dir) },
			refuse: "disk: /boot/efi is a symlink; the ESP mount point /boot/efi must be a real directory",
		},
		hostileCase{
			name:   "boot-abs",
			setup:  func(c *canary) []ent { return linkAbs("boot", c.dir, "") },
			refuse: "disk: /boot is a symlink; the ESP mount point /boot/efi must be a real directory",
		},
		hostileCase{
			name:   "boot-rel",
			setup:  func(c *canary) []ent { return linkRel("boot", c.dir) },
			refuse: "disk: /boot is a symlink; the ESP mount point /boot/efi must be a real directory",
		},
		// The mount point made a link after Prepare (a later layer could do
		// it): Assemble itself refuses.
		hostileCase{
			name: "boot-efi-late", boot: BootSystemd,
			late:   func(c *canary) []ent { return []ent{symlink("boot/efi", c.dir)} },
			refuse: "disk: /boot/efi is a symlink; the ESP mount point /boot/efi must be a real directory",
		},
		hostileCase{
			name: "boot-file-late", boot: BootSystemd,
			late:   func(c *canary) []ent { return []ent{reg("boot", "not a directory", 0o644)} },
			refuse: "disk: /boot is not a directory; the ESP mount point /boot/efi must be a real directory",
		},
		// Entries of the ESP that FAT cannot hold.
		hostileCase{
			name: "esp-file-link", boot: BootSystemd,
			late:   func(c *canary) []ent { return []ent{symlink("boot/efi/key", c.secret)} },
			refuse: "disk: /boot/efi/key is a symlink; the ESP is FAT",
		},
		hostileCase{
			name: "esp-dir-link", boot: BootSystemd,
			late:   func(c *canary) []ent { return []ent{symlink("boot/efi/EFI/host", c.dir)} },
			refuse: "disk: /boot/efi/EFI/host is a symlink; the ESP is FAT",
		},
		hostileCase{
			name: "esp-fifo", boot: BootSystemd,
			late:   func(c *canary) []ent { return []ent{special("boot/efi/loader/fifo", tar.TypeFifo, 0, 0)} },
			refuse: "disk: /boot/efi/loader/fifo is a device, FIFO or socket; the ESP is FAT",
		},
		hostileCase{
			name: "esp-device", boot: BootSystemd,
			late:   func(c *canary) []ent { return []ent{special("boot/efi/sda", tar.TypeBlock, 8, 0)} },
			refuse: "disk: /boot/efi/sda is a device, FIFO or socket; the ESP is FAT",
		},
		// Hard links: inside the ESP a copy, across its mount point refused.
		hostileCase{
			name: "esp-hardlink-inside", boot: BootSystemd,
			late: func(c *canary) []ent {
				return []ent{dir("boot/efi/extra/"), reg("boot/efi/extra/mine.conf", "mine\n", 0o644), hardlink("boot/efi/extra/copy.conf", "boot/efi/extra/mine.conf")}
			},
			esp: map[string]string{"extra/copy.conf": "mine\n", "extra/mine.conf": "mine\n", "loader/loader.conf": "timeout 0\ndefault layerimg.conf\n"},
		},
		hostileCase{
			name: "esp-hardlink-across", boot: BootSystemd,
			late:   func(c *canary) []ent { return []ent{hardlink("boot/efi/hostname", "etc/hostname")} },
			refuse: "a hard link cannot cross filesystems",
		},
		hostileCase{
			name: "esp-hardlink-from-root", boot: BootSystemd,
			late: func(c *canary) []ent {
				return []ent{reg("boot/efi/mine.conf", "mine\n", 0o644), hardlink("usr/loader.conf", "boot/efi/mine.conf")}
			},
			refuse: "a hard link cannot cross filesystems",
		},
		hostileCase{
			name: "esp-hardlink-to-root", boot: BootSystemd,
			late: func(c *canary) []ent {
				return []ent{reg("a-file", "outside the ESP", 0o644), hardlink("boot/efi/a", "a-file")}
			},
			refuse: "disk: /boot/efi/a is a hard link to /a-file, outside the ESP; a hard link cannot cross filesystems",
		},
		// Names that leave the image are refused as the layer is read.
		hostileCase{
			name:   "dotdot-entry",
			setup:  func(c *canary) []ent { return []ent{reg("../../"+strings.TrimPrefix(c.secret, "/"), "pwned", 0o644)} },
			refuse: `entry name with ".." refused`,
		},
		hostileCase{
			name:   "absolute-entry",
			setup:  func(c *canary) []ent { return []ent{reg(c.secret, "pwned", 0o644)} },
			refuse: "absolute entry name refused",
		},
		hostileCase{
			name: "write-through-abs-link", boot: BootSystemd,
			setup: func(c *canary) []ent {
				return []ent{symlink("hostdir", c.dir), reg("hostdir/secret", "inside", 0o644), reg("hostdir/new", "inside", 0o644)}
			},
			esp: map[string]string{},
		},
		hostileCase{
			name:   "write-through-rel-link",
			setup:  func(c *canary) []ent { return append(linkRel("hostdir", c.dir), reg("hostdir/new", "pwned", 0o644)) },
			refuse: "points outside the root",
		},
	)
	return cs
}

// TestHostileSymlinks runs the disk stage (Prepare, the stage as a layer on
// top, PlanLayout, Assemble) on images whose boot files and ESP are
// symlinks aimed at a host canary, and checks each outcome exactly: refused
// with an error naming the path, or made with the link followed inside the
// image. Either way the canary is untouched and unread, its bytes are in no
// stage, layer or disk, and a refused disk leaves nothing behind. Nothing
// of the image is unpacked on the host, so it needs no root.
func TestHostileSymlinks(t *testing.T) {
	for _, hc := range hostileCases() {
		t.Run(hc.name, func(t *testing.T) {
			c := newCanary(t)
			layers := [][]byte{baseLayer(t)}
			if hc.grub {
				layers = append(layers, layer(t, reg(x64.shim.path, "MZ fake "+x64.shim.pkg, 0o644), reg(x64.grub.path, "MZ fake "+x64.grub.pkg, 0o644),
					symlink("vmlinuz", "boot/vmlinuz-"+kver), symlink("initrd.img", "boot/initrd.img-"+kver)))
			}
			if hc.setup != nil {
				layers = append(layers, layer(t, hc.setup(c)...))
			}
			var late []byte
			if hc.late != nil {
				late = layer(t, hc.late(c)...)
			}
			spec := Spec{Boot: hc.boot, IDs: DeriveIDs("sha256:hostile", false), Epoch: 1700000000}
			stage := t.TempDir()
			out := t.TempDir()
			raw := filepath.Join(out, "disk.raw")
			all, l, _, err := diskStage(t, spec, stage, raw, layers, late)
			for i, data := range all {
				for j, b := range c.contents {
					if bytes.Contains(data, b) {
						t.Errorf("layer %d holds the bytes of host canary file %d", i, j)
					}
				}
			}

			c.check(t)
			c.scanDir(t, stage)
			c.scanDir(t, out)
			if hc.refuse != "" {
				if err == nil || !strings.Contains(err.Error(), hc.refuse) {
					t.Fatalf("got %v; want an error containing %q", err, hc.refuse)
				}
				t.Logf("refused: %v", err)
				if ents, _ := os.ReadDir(out); len(ents) != 0 {
					t.Errorf("a refused build left %v beside the disk", ents)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			esp := checkDisk(t, raw, l)
			for path, want := range hc.esp {
				if got := oracle(t, "mtype", "-i", esp, "::/"+path); got != want {
					t.Errorf("ESP %s holds %q, want %q", path, got, want)
				}
				if hc.late == nil {
					if got, _ := os.ReadFile(filepath.Join(stage, espMount, path)); string(got) != want {
						t.Errorf("stage %s holds %q, want %q", path, got, want)
					}
				}
			}
		})
	}
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

// TestESPMountWithoutBoot checks that an image without /boot still makes a
// data disk: no ESP mount point is not an error.
func TestESPMountWithoutBoot(t *testing.T) {
	c := newCanary(t)
	spec := Spec{IDs: DeriveIDs("sha256:data", false)}
	raw := filepath.Join(t.TempDir(), "disk.raw")
	_, l, p, err := diskStage(t, spec, t.TempDir(), raw, [][]byte{layer(t, reg("data", "data", 0o644))}, nil)
	must(t, err)
	if p.Boot != BootNone {
		t.Errorf("boot %q for an image without a loader", p.Boot)
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
