package disk

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/layerimg/layerimg/disk/disktest"
)

func needRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root (device nodes, chown, loop mounts); CI runs as root")
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// makeTree makes a small rootfs with every kind of entry mkfs.ext4 -d must
// keep, plus a fake kernel and systemd-boot so the boot files are staged.
func makeTree(t *testing.T) string {
	t.Helper()
	root := t.TempDir()
	w := func(p, body string, mode os.FileMode) {
		full := filepath.Join(root, p)
		must(t, os.MkdirAll(filepath.Dir(full), 0o755))
		must(t, os.WriteFile(full, []byte(body), mode))
		must(t, os.Chmod(full, mode))
	}
	w("etc/hostname", "layerimg\n", 0o644)
	w("usr/bin/tool", strings.Repeat("binary", 50000), 0o755)
	w("usr/bin/suid", "s", 0o755|os.ModeSetuid)
	w("boot/vmlinuz-6.1.0-9-cloud-amd64", "old kernel", 0o644)
	w("boot/initrd.img-6.1.0-9-cloud-amd64", "old initrd", 0o644)
	w("boot/vmlinuz-6.1.0-10-cloud-amd64", "new kernel", 0o644)
	w("boot/initrd.img-6.1.0-10-cloud-amd64", "new initrd", 0o644)
	w(systemdBootEFI.path, "MZ fake systemd-boot", 0o644)
	w("home/user/"+strings.Repeat("n", 255), "long name", 0o600)
	must(t, os.Link(filepath.Join(root, "usr/bin/tool"), filepath.Join(root, "usr/bin/tool-link")))
	must(t, os.Symlink("usr/bin", filepath.Join(root, "bin")))
	must(t, os.MkdirAll(filepath.Join(root, "dev"), 0o755))
	must(t, unix.Mknod(filepath.Join(root, "dev/null"), unix.S_IFCHR|0o666, int(unix.Mkdev(1, 3))))
	must(t, unix.Mkfifo(filepath.Join(root, "run-fifo"), 0o600))
	must(t, os.Lchown(filepath.Join(root, "home/user"), 1000, 1000))
	must(t, os.Lchown(filepath.Join(root, "bin"), 5, 6))
	must(t, unix.Lsetxattr(filepath.Join(root, "usr/bin/tool"), "security.capability", []byte{1, 0, 0, 2, 0, 0x20, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}, 0))
	must(t, unix.Lsetxattr(filepath.Join(root, "etc/hostname"), "user.note", []byte("kept"), 0))
	return root
}

func prepareAndAssemble(t *testing.T, spec Spec) (tree, stage, raw string, l Layout, p *Prepared) {
	t.Helper()
	tree = makeTree(t)
	stage = t.TempDir()
	p, err := Prepare(tree, stage, spec)
	must(t, err)
	out, err := exec.Command("cp", "-a", stage+"/.", tree).CombinedOutput()
	if err != nil {
		t.Fatalf("cp: %v %s", err, out)
	}
	l, err = PlanLayout(tree, spec)
	must(t, err)
	raw = filepath.Join(t.TempDir(), "disk.raw")
	must(t, Assemble(context.Background(), tree, p, l, raw))
	return tree, stage, raw, l, p
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
	needRoot(t)
	spec := Spec{Boot: BootGrub, IDs: DeriveIDs("sha256:same", false), Epoch: 1700000000}
	var kept []string
	// reversed sets the extra xattrs in the other order: the host lists them
	// as set, and the disk must not care. (They fit in the inode, as a
	// directory's two POSIX ACLs do; which xattrs spill into an xattr block
	// when they do not fit still follows the host's order.)
	sum := func(reversed bool) string {
		tree := makeTree(t)
		xattrs := []string{"trusted.z", "user.b", "user.a"}
		if reversed {
			slices.Reverse(xattrs)
		}
		for _, x := range xattrs {
			must(t, unix.Lsetxattr(filepath.Join(tree, "usr/bin/suid"), x, []byte("v"), 0))
		}
		os.MkdirAll(filepath.Join(tree, filepath.Dir(shimEFI.path)), 0o755)
		must(t, os.WriteFile(filepath.Join(tree, shimEFI.path), []byte("shim"), 0o644))
		os.MkdirAll(filepath.Join(tree, filepath.Dir(grubEFI.path)), 0o755)
		must(t, os.WriteFile(filepath.Join(tree, grubEFI.path), []byte("grub"), 0o644))
		must(t, os.Symlink("boot/vmlinuz-6.1.0-10-cloud-amd64", filepath.Join(tree, "vmlinuz")))
		must(t, os.Symlink("boot/initrd.img-6.1.0-10-cloud-amd64", filepath.Join(tree, "initrd.img")))
		stage := t.TempDir()
		p, err := Prepare(tree, stage, spec)
		must(t, err)
		exec.Command("cp", "-a", stage+"/.", tree).Run()
		// Fix every mtime as a layer would have.
		filepath.Walk(tree, func(p string, fi fs.FileInfo, err error) error {
			if err == nil {
				unix.Lutimes(p, []unix.Timeval{{Sec: 1700000000}, {Sec: 1700000000}})
			}
			return nil
		})
		l, err := PlanLayout(tree, spec)
		must(t, err)
		raw := filepath.Join(t.TempDir(), "disk.raw")
		must(t, Assemble(context.Background(), tree, p, l, raw))
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
	a := sum(false)
	b := sum(true)
	if a != b {
		t.Errorf("two builds of one tree differ: %s vs %s", a, b)
	}
}

func TestMissingBootFiles(t *testing.T) {
	tree := t.TempDir()
	stage := t.TempDir()
	_, err := Prepare(tree, stage, Spec{Boot: BootGrub})
	var me *MissingError
	if !errors.As(err, &me) || !strings.Contains(err.Error(), "shim-signed grub-efi-amd64-signed") || !strings.Contains(err.Error(), "/usr/lib/shim/shimx64.efi.signed") {
		t.Errorf("grub: %v", err)
	}
	os.MkdirAll(filepath.Join(tree, filepath.Dir(systemdBootEFI.path)), 0o755)
	os.WriteFile(filepath.Join(tree, systemdBootEFI.path), nil, 0o644)
	_, err = Prepare(tree, stage, Spec{})
	if err == nil || !strings.Contains(err.Error(), "linux-image-cloud-amd64") {
		t.Errorf("no kernel: %v", err)
	}
	if b, err := DetectBoot(t.TempDir()); b != BootNone || err != nil {
		t.Errorf("detection in an empty tree: %q, %v", b, err)
	}
	if b, err := DetectBoot(tree); b != BootSystemd || err != nil {
		t.Errorf("detection: %q, %v", b, err)
	}
	if _, err := Prepare(tree, stage, Spec{ESPSize: 100 << 20}); err == nil {
		t.Error("a 100 MiB ESP was accepted")
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
