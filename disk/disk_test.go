package disk

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/layerimg/layerimg/disk/disktest"
	"github.com/layerimg/layerimg/rootfs"
)

func needRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root (loop mounts, the reference extraction); CI runs as root")
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// memLayer is a layer's uncompressed tar, held in memory.
type memLayer []byte

func (m memLayer) Uncompressed() (io.ReadCloser, error) {
	return io.NopCloser(bytes.NewReader(m)), nil
}

// ent is one entry of a test layer.
type ent struct {
	h    tar.Header
	body string
}

func reg(name, body string, mode int64) ent {
	return ent{tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: mode}, body}
}
func dir(name string) ent { return ent{tar.Header{Typeflag: tar.TypeDir, Name: name, Mode: 0o755}, ""} }
func symlink(name, target string) ent {
	return ent{tar.Header{Typeflag: tar.TypeSymlink, Name: name, Linkname: target, Mode: 0o777}, ""}
}
func hardlink(name, target string) ent {
	return ent{tar.Header{Typeflag: tar.TypeLink, Name: name, Linkname: target}, ""}
}
func special(name string, typ byte, major, minor int64) ent {
	return ent{tar.Header{Typeflag: typ, Name: name, Mode: 0o666, Devmajor: major, Devminor: minor}, ""}
}
func (e ent) owner(uid, gid int) ent { e.h.Uid, e.h.Gid = uid, gid; return e }
func (e ent) xattr(name, value string) ent {
	e.h.PAXRecords = maps.Clone(e.h.PAXRecords)
	if e.h.PAXRecords == nil {
		e.h.PAXRecords = map[string]string{}
	}
	e.h.PAXRecords["SCHILY.xattr."+name] = value
	return e
}

// layer is the tar of es, every mtime fixed.
func layer(t *testing.T, es ...ent) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range es {
		h := e.h
		h.Size, h.Format = int64(len(e.body)), tar.FormatPAX
		if h.ModTime.IsZero() {
			h.ModTime = time.Unix(1700000000, 0)
		}
		must(t, tw.WriteHeader(&h))
		io.WriteString(tw, e.body)
	}
	must(t, tw.Close())
	return buf.Bytes()
}

// baseLayer is a small rootfs with every kind of entry the root filesystem
// must keep, plus a fake kernel and systemd-boot so the boot files are
// staged.
func baseLayer(t *testing.T) []byte {
	return layer(t,
		dir("etc/"), reg("etc/hostname", "layerimg\n", 0o644).xattr("user.note", "kept"),
		// The disk replaces /etc/fstab; a hard link to the image's keeps its bytes.
		reg("etc/fstab", "# the image's own\n", 0o644), hardlink("etc/fstab.orig", "etc/fstab"), hardlink("etc/fstab.prev", "etc/fstab"),
		dir("usr/"), dir("usr/bin/"),
		reg("usr/bin/tool", strings.Repeat("binary", 50000), 0o755).xattr("security.capability", "\x01\x00\x00\x02\x00\x20\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00"),
		reg("usr/bin/suid", "s", 0o4755), hardlink("usr/bin/tool-link", "usr/bin/tool"),
		dir("boot/"),
		reg("boot/vmlinuz-6.1.0-9-cloud-amd64", "old kernel", 0o644), reg("boot/initrd.img-6.1.0-9-cloud-amd64", "old initrd", 0o644),
		reg("boot/vmlinuz-6.1.0-10-cloud-amd64", "new kernel", 0o644), reg("boot/initrd.img-6.1.0-10-cloud-amd64", "new initrd", 0o644),
		reg(x64.systemdBoot.path, "MZ fake systemd-boot", 0o644),
		dir("home/"), dir("home/user/").owner(1000, 1000), reg("home/user/"+strings.Repeat("n", 255), "long name", 0o600),
		symlink("bin", "usr/bin").owner(5, 6),
		dir("dev/"), special("dev/null", tar.TypeChar, 1, 3), special("run-fifo", tar.TypeFifo, 0, 0),
	)
}

// treeOf indexes layers into a tree.
func treeOf(t *testing.T, layers ...[]byte) (*rootfs.Tree, error) {
	t.Helper()
	tr := rootfs.NewTree()
	for i, l := range layers {
		if err := tr.Append(context.Background(), fmt.Sprint("layer ", i+1), memLayer(l)); err != nil {
			return nil, err
		}
	}
	return tr, nil
}

// diskStage runs the disk stage as the build does: Prepare on the tree of
// layers (late ones included: the image is fixed before the disk stage),
// PlanLayout and Assemble, whose top is the stage made a layer. It returns
// every layer of the final image.
func diskStage(t *testing.T, spec Spec, stage, raw string, layers [][]byte, late []byte) (all [][]byte, l Layout, p *Prepared, err error) {
	t.Helper()
	ctx := context.Background()
	all = slices.Clone(layers)
	if late != nil {
		all = append(all, late)
	}
	tree, err := treeOf(t, all...)
	if err != nil {
		return all, l, nil, err
	}
	if p, err = Prepare(ctx, tree, stage, spec); err != nil {
		return all, l, nil, err
	}
	if l, err = PlanLayout(tree, spec); err != nil {
		return all, l, p, err
	}
	top := func(ctx context.Context) (io.ReadCloser, error) {
		var gen bytes.Buffer
		epoch := time.Unix(spec.Epoch, 0)
		if err := rootfs.WriteTar(ctx, &gen, stage, rootfs.TarOptions{Epoch: &epoch, RootOwned: true}); err != nil {
			return nil, err
		}
		all = append(all, gen.Bytes())
		return io.NopCloser(bytes.NewReader(gen.Bytes())), nil
	}
	err = Assemble(ctx, tree, p, l, raw, top)
	return all, l, p, err
}

// applied is the reference: layers unpacked on the host by rootfs.Apply.
func applied(t *testing.T, layers [][]byte) string {
	t.Helper()
	root := t.TempDir()
	for i, l := range layers {
		must(t, rootfs.Apply(context.Background(), root, bytes.NewReader(l), rootfs.ApplyOptions{Layer: fmt.Sprint(i)}))
	}
	return root
}

func prepareAndAssemble(t *testing.T, spec Spec, layers ...[]byte) (tree, stage, raw string, l Layout, p *Prepared) {
	t.Helper()
	stage = t.TempDir()
	raw = filepath.Join(t.TempDir(), "disk.raw")
	all, l, p, err := diskStage(t, spec, stage, raw, append([][]byte{baseLayer(t)}, layers...), nil)
	must(t, err)
	return applied(t, all), stage, raw, l, p
}

func oracle(t *testing.T, name string, args ...string) string {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Env = append(os.Environ(), "MTOOLS_SKIP_CHECK=1")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

func TestAssembleSystemdBoot(t *testing.T) {
	needRoot(t)
	spec := Spec{Boot: BootSystemd, IDs: DeriveIDs("sha256:test", false), KernelCmdline: "quiet"}
	tree, stage, raw, l, p := prepareAndAssemble(t, spec)
	if p.Kernel.Version != "6.1.0-10-cloud-amd64" {
		t.Errorf("picked kernel %s", p.Kernel.Version)
	}
	if l.Size%gib != 0 || l.ESPStart != mib || l.RootStart%mib != 0 {
		t.Errorf("layout %+v", l)
	}
	// Outside oracles: GPT, ext4 and FAT checkers.
	v := oracle(t, "sgdisk", "-v", raw)
	if !strings.Contains(v, "No problems found") {
		t.Errorf("sgdisk -v: %s", v)
	}
	info := oracle(t, "sgdisk", "-i", "2", raw)
	if !strings.Contains(info, "4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709") || !strings.Contains(info, spec.IDs.Root) {
		t.Errorf("p2: %s", info)
	}
	oracle(t, "e2fsck", "-fn", fmt.Sprintf("%s?offset=%d", raw, l.RootStart))
	if got, err := LayoutOf(raw); got != BootSystemd {
		t.Errorf("LayoutOf a systemd-boot disk: %q, %v", got, err)
	}
	esp := extract(t, raw, l.ESPStart, l.ESPSize)
	oracle(t, "fsck.vfat", "-n", esp)

	// The ESP holds exactly the staged files. This kernel has no vfat
	// driver, so mtools reads them out.
	espMnt := t.TempDir()
	oracle(t, "mcopy", "-s", "-n", "-i", esp, "::/EFI", "::/loader", "::/vmlinuz-6.1.0-10-cloud-amd64", "::/initrd.img-6.1.0-10-cloud-amd64", espMnt)
	disktest.CompareTrees(t, filepath.Join(stage, espMount), espMnt, false)
	entry, _ := os.ReadFile(filepath.Join(espMnt, "loader/entries/layerimg.conf"))
	want := fmt.Sprintf("options root=PARTUUID=%s rw console=tty0 console=ttyS0,115200n8 quiet", strings.ToLower(spec.IDs.Root))
	if !strings.Contains(string(entry), want) || !strings.Contains(string(entry), "linux /vmlinuz-6.1.0-10-cloud-amd64") {
		t.Errorf("loader entry:\n%s", entry)
	}
	// The root holds the tree: contents, modes, owners, links, xattrs.
	rootMnt := loopMount(t, raw, l.RootStart, l.RootSize, "ext4")
	disktest.CompareTrees(t, tree, rootMnt, true, espMount+"/")
	fstab, _ := os.ReadFile(filepath.Join(rootMnt, "etc/fstab"))
	if !strings.Contains(string(fstab), "PARTUUID="+strings.ToLower(spec.IDs.Root)+"\t/\text4") {
		t.Errorf("fstab:\n%s", fstab)
	}
	// Sparse: the file takes little more room than its data.
	var st syscall.Stat_t
	must(t, syscall.Stat(raw, &st))
	if used := st.Blocks * 512; used > 80*mib {
		t.Errorf("raw disk occupies %d MiB of its %d MiB", used/mib, l.Size/mib)
	}
}

func TestAssembleReproducible(t *testing.T) {
	spec := Spec{Boot: BootGrub, IDs: DeriveIDs("sha256:same", false), Epoch: 1700000000}
	var kept []string
	grub := layer(t, reg(x64.shim.path, "shim", 0o644), reg(x64.grub.path, "grub", 0o644),
		symlink("vmlinuz", "boot/vmlinuz-6.1.0-10-cloud-amd64"), symlink("initrd.img", "boot/initrd.img-6.1.0-10-cloud-amd64"),
		reg("usr/bin/suid", "s", 0o4755).xattr("trusted.z", "v").xattr("user.b", "v").xattr("user.a", "v"))
	sum := func() string {
		stage := t.TempDir()
		raw := filepath.Join(t.TempDir(), "disk.raw")
		_, l, _, err := diskStage(t, spec, stage, raw, [][]byte{baseLayer(t), grub}, nil)
		must(t, err)
		oracle(t, "e2fsck", "-fn", fmt.Sprintf("%s?offset=%d", raw, l.RootStart))
		if got, err := LayoutOf(raw); got != BootGrub {
			t.Errorf("LayoutOf a grub disk: %q, %v", got, err)
		}
		cfg, _ := os.ReadFile(filepath.Join(stage, espMount, "EFI/BOOT/grub.cfg"))
		if !strings.Contains(string(cfg), "linux /vmlinuz root=PARTUUID=") || !strings.Contains(string(cfg), "--fs-uuid --set=root "+strings.ToLower(spec.IDs.FS)) {
			t.Errorf("grub.cfg:\n%s", cfg)
		}
		if d := os.Getenv("LAYERIMG_KEEP_DISK"); d != "" {
			exec.Command("cp", "--sparse=always", raw, filepath.Join(d, fmt.Sprint(len(kept)))).Run()
			kept = append(kept, raw)
		}
		f, _ := os.Open(raw)
		defer f.Close()
		h := sha256.New()
		io.Copy(h, f)
		return fmt.Sprintf("%x", h.Sum(nil))
	}
	a := sum()
	b := sum()
	if a != b {
		t.Errorf("two builds of one tree differ: %s vs %s", a, b)
	}
}

func TestMissingBootFiles(t *testing.T) {
	ctx := context.Background()
	empty := rootfs.NewTree()
	stage := t.TempDir()
	_, err := Prepare(ctx, empty, stage, Spec{Boot: BootGrub})
	var me *MissingError
	if !errors.As(err, &me) || !strings.Contains(err.Error(), "shim-signed grub-efi-amd64-signed") || !strings.Contains(err.Error(), "/usr/lib/shim/shimx64.efi.signed") {
		t.Errorf("grub: %v", err)
	}
	tree, err := treeOf(t, layer(t, reg(x64.systemdBoot.path, "", 0o644)))
	must(t, err)
	_, err = Prepare(ctx, tree, stage, Spec{})
	if err == nil || !strings.Contains(err.Error(), "linux-image-cloud-amd64") {
		t.Errorf("no kernel: %v", err)
	}
	if b, err := DetectBoot(empty, AMD64); b != BootNone || err != nil {
		t.Errorf("detection in an empty tree: %q, %v", b, err)
	}
	if b, err := DetectBoot(tree, AMD64); b != BootSystemd || err != nil {
		t.Errorf("detection: %q, %v", b, err)
	}
	if _, err := Prepare(ctx, tree, stage, Spec{ESPSize: 100 << 20}); err == nil {
		t.Error("a 100 MiB ESP was accepted")
	}
}

// TestPlanLayoutFromTree: the size estimate counts each file's 4 KiB blocks
// once, however many names it has, and 256 bytes per entry.
func TestPlanLayoutFromTree(t *testing.T) {
	tree, err := treeOf(t, layer(t, dir("d/"), reg("d/f", strings.Repeat("x", 5000), 0o644), hardlink("d/g", "d/f"), symlink("s", "d")))
	must(t, err)
	n, err := treeSize(tree)
	if err != nil || n != 8192+4*256 {
		t.Errorf("treeSize = %d, %v; want %d", n, err, 8192+4*256)
	}
	l, err := PlanLayout(tree, Spec{})
	if err != nil || l.Size != gib || l.RootStart != mib+DefaultESPSize {
		t.Errorf("layout %+v, %v", l, err)
	}
}

func TestVersionLess(t *testing.T) {
	vs := []string{"6.1.0-10-cloud-amd64", "5.10.0-28-amd64", "6.1.0-9-cloud-amd64", "6.10.1-1"}
	sort.Slice(vs, func(i, j int) bool { return versionLess(vs[i], vs[j]) })
	if got := strings.Join(vs, " "); got != "5.10.0-28-amd64 6.1.0-9-cloud-amd64 6.1.0-10-cloud-amd64 6.10.1-1" {
		t.Errorf("order: %s", got)
	}
}

func extract(t *testing.T, raw string, off, size int64) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "part.img")
	in, _ := os.Open(raw)
	defer in.Close()
	out, _ := os.Create(p)
	defer out.Close()
	if _, err := io.Copy(out, io.NewSectionReader(in, off, size)); err != nil {
		t.Fatal(err)
	}
	return p
}

func loopMount(t *testing.T, raw string, off, size int64, fstype string) string {
	t.Helper()
	mnt := t.TempDir()
	oracle(t, "mount", "-t", fstype, "-o", fmt.Sprintf("loop,ro,offset=%d,sizelimit=%d", off, size), raw, mnt)
	t.Cleanup(func() { exec.Command("umount", mnt).Run() })
	return mnt
}

// An image that already carries a disk's generated layer (built, pushed,
// then given to `layerimg disk`) gets a disk again: the new boot files
// replace the old ones in the ESP.
func TestDiskOfADiskedImage(t *testing.T) {
	needRoot(t)
	spec := Spec{Boot: BootSystemd, IDs: DeriveIDs("sha256:test", false)}
	all, _, _, err := diskStage(t, spec, t.TempDir(), filepath.Join(t.TempDir(), "disk.raw"), [][]byte{baseLayer(t)}, nil)
	must(t, err)
	raw := filepath.Join(t.TempDir(), "disk.raw")
	again, l, _, err := diskStage(t, spec, t.TempDir(), raw, all, nil)
	must(t, err)
	oracle(t, "e2fsck", "-fn", fmt.Sprintf("%s?offset=%d", raw, l.RootStart))
	esp := extract(t, raw, l.ESPStart, l.ESPSize)
	oracle(t, "fsck.vfat", "-n", esp)
	if got := oracle(t, "mtype", "-i", esp, "::/EFI/BOOT/BOOTX64.EFI"); got != "MZ fake systemd-boot" {
		t.Errorf("BOOTX64.EFI on the second disk: %q", got)
	}
	disktest.CompareTrees(t, applied(t, again), loopMount(t, raw, l.RootStart, l.RootSize, "ext4"), true, espMount+"/")
}

// What the ESP would hold is sized from the headers before anything is
// staged: a huge file under /boot/efi (a layer of zeros is tiny) is refused
// without a byte written on the host.
func TestESPOverflowRefusedBeforeStaging(t *testing.T) {
	spec := Spec{Boot: BootSystemd, IDs: DeriveIDs("sha256:test", false)}
	huge := layer(t, dir("boot/efi/"), reg("boot/efi/zeros", strings.Repeat("\x00", 260<<20), 0o644))
	stage := t.TempDir()
	_, _, _, err := diskStage(t, spec, stage, filepath.Join(t.TempDir(), "disk.raw"), [][]byte{baseLayer(t), huge}, nil)
	if err == nil || !strings.Contains(err.Error(), "more than the ESP's 256 MiB") {
		t.Fatalf("got %v", err)
	}
	var staged int64
	filepath.Walk(stage, func(_ string, fi os.FileInfo, err error) error {
		if err == nil && fi.Mode().IsRegular() {
			staged += fi.Size()
		}
		return nil
	})
	if staged > 1<<20 {
		t.Errorf("%d bytes staged before the refusal", staged)
	}
}
