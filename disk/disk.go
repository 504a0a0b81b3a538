package disk

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"time"

	diskfs "github.com/diskfs/go-diskfs"
	"github.com/diskfs/go-diskfs/partition/gpt"
	"golang.org/x/sys/unix"

	"github.com/layerimg/layerimg/disk/sparse"
	"github.com/layerimg/layerimg/internal/proc"
	"github.com/layerimg/layerimg/rootfs"
)

const (
	mib    = 1 << 20
	gib    = 1 << 30
	sector = 512
	// espMount is where the ESP is mounted in the rootfs: the generated layer
	// holds the ESP's files there, so the image matches the disk.
	espMount = "boot/efi"
	// DefaultESPSize is the ESP's size unless the recipe says otherwise.
	DefaultESPSize = 256 * mib
	// fatEpoch is the earliest time FAT can store (1980-01-01), plus a day
	// so that no time zone takes it below.
	fatEpoch = 315532800 + 86400
)

// Spec says what disk to make.
type Spec struct {
	Size          int64  // bytes; 0 means auto
	ESPSize       int64  // bytes; 0 means DefaultESPSize
	Boot          string // systemd-boot, grub, none, or "" to detect
	Label         string // ext4 label; default "root"
	KernelCmdline string // appended to the generated command line
	Epoch         int64  // SOURCE_DATE_EPOCH
	IDs           IDs
}

// Prepared is a disk ready to assemble: the boot mode and the files the disk
// step adds to the rootfs.
type Prepared struct {
	Spec   Spec
	Boot   string
	Kernel *Kernel
}

// Prepare decides the boot mode for the rootfs at root and writes the files
// the disk adds (/etc/fstab, and the ESP's content under /boot/efi) into
// stage, laid out as in the rootfs. The caller turns stage into a layer and
// applies it to root before Assemble.
func Prepare(root, stage string, s Spec) (*Prepared, error) {
	if s.ESPSize == 0 {
		s.ESPSize = DefaultESPSize
	}
	if s.ESPSize < DefaultESPSize || s.ESPSize%mib != 0 {
		return nil, fmt.Errorf("esp_size must be a whole number of MiB and at least 256 MiB, not %d bytes", s.ESPSize)
	}
	if s.Label == "" {
		s.Label = "root"
	}
	if len(s.Label) > 16 {
		return nil, fmt.Errorf("label %q is longer than ext4's 16 bytes", s.Label)
	}
	// Refuse a symlinked ESP mount point now, before a layer is made for it.
	if err := checkESPMount(root); err != nil {
		return nil, err
	}
	p := &Prepared{Spec: s, Boot: s.Boot}
	if p.Boot == "" {
		b, err := DetectBoot(root)
		if err != nil {
			return nil, err
		}
		p.Boot = b
	}
	switch p.Boot {
	case BootNone:
	case BootSystemd, BootGrub:
		if err := checkLoader(root, p.Boot); err != nil {
			return nil, err
		}
		k, err := findKernel(root)
		if err != nil {
			return nil, err
		}
		p.Kernel = k
	default:
		return nil, fmt.Errorf("boot %q: expected systemd-boot, grub or none", p.Boot)
	}
	files := map[string][]byte{}
	copies := map[string]string{} // stage path -> rootfs path
	ids := s.IDs
	files["etc/fstab"] = []byte(fmt.Sprintf(`# Written by layerimg: partitions by PARTUUID, so the disk boots on any controller.
PARTUUID=%s	/	ext4	rw,discard,errors=remount-ro	0	1
PARTUUID=%s	/boot/efi	vfat	umask=0077	0	2
`, strings.ToLower(ids.Root), strings.ToLower(ids.ESP)))
	cmdline := strings.TrimSpace(fmt.Sprintf("root=PARTUUID=%s rw console=tty0 console=ttyS0,115200n8 %s", strings.ToLower(ids.Root), s.KernelCmdline))
	esp := func(p string) string { return filepath.Join(espMount, p) }
	switch p.Boot {
	case BootSystemd:
		k := p.Kernel
		copies[esp("EFI/BOOT/BOOTX64.EFI")] = systemdBootEFI.path
		copies[esp("vmlinuz-"+k.Version)] = k.Vmlinuz
		copies[esp("initrd.img-"+k.Version)] = k.Initrd
		files[esp("loader/loader.conf")] = []byte("timeout 0\ndefault layerimg.conf\n")
		files[esp("loader/entries/layerimg.conf")] = []byte(fmt.Sprintf("title %s\nlinux /vmlinuz-%s\ninitrd /initrd.img-%s\noptions %s\n", "Debian GNU/Linux", k.Version, k.Version, cmdline))
	case BootGrub:
		k := p.Kernel
		copies[esp("EFI/BOOT/BOOTX64.EFI")] = shimEFI.path
		copies[esp("EFI/BOOT/grubx64.efi")] = grubEFI.path
		// /vmlinuz and /initrd.img follow the guest's kernel upgrades.
		linux, initrd := "/"+k.Vmlinuz, "/"+k.Initrd
		if k.RootSymlinks {
			linux, initrd = "/vmlinuz", "/initrd.img"
		}
		files[esp("EFI/BOOT/grub.cfg")] = []byte(fmt.Sprintf(`set timeout=0
search --no-floppy --fs-uuid --set=root %s
linux %s %s
initrd %s
boot
`, strings.ToLower(ids.FS), linux, cmdline, initrd))
	}
	mtime := time.Unix(max(s.Epoch, fatEpoch), 0)
	for p, data := range files {
		if err := stageFile(stage, p, mtime, func(w io.Writer) error { _, err := w.Write(data); return err }); err != nil {
			return nil, err
		}
	}
	for p, src := range copies {
		if err := stageFile(stage, p, mtime, func(w io.Writer) error { return copyFromImage(w, root, src) }); err != nil {
			return nil, err
		}
	}
	// Directories get the same time as files, for a reproducible ESP.
	err := filepath.WalkDir(stage, func(p string, d fs.DirEntry, err error) error {
		if err != nil || !d.IsDir() || p == stage {
			return err
		}
		return os.Chtimes(p, mtime, mtime)
	})
	return p, err
}

// copyFromImage copies the regular file at src inside the image at root to
// w. Symlinks are followed inside the image only (the kernel enforces it),
// so a link to a host file can never put that file's bytes on the disk.
func copyFromImage(w io.Writer, root, src string) error {
	f, err := rootfs.OpenInRoot(root, src)
	if err != nil {
		return fmt.Errorf("boot: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("boot: /%s is not a regular file", src)
	}
	if _, err := io.Copy(w, f); err != nil {
		return fmt.Errorf("boot: reading /%s: %w", src, err)
	}
	return nil
}

func stageFile(stage, p string, mtime time.Time, fill func(io.Writer) error) error {
	full := filepath.Join(stage, p)
	if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
		return err
	}
	mode := os.FileMode(0o644)
	if strings.HasPrefix(p, espMount) {
		mode = 0o700 // the ESP is mounted umask=0077
	}
	f, err := os.OpenFile(full, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, mode)
	if err != nil {
		return err
	}
	if err := fill(f); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Chtimes(full, mtime, mtime)
}

// Layout is where the partitions lie, in bytes.
type Layout struct {
	Size                int64
	ESPStart, ESPSize   int64
	RootStart, RootSize int64
}

// PlanLayout places a 1 MiB-aligned ESP and root on a disk of size bytes
// (or, for size 0, a size fitted to the tree: its content plus 25% and at
// least 512 MiB free, rounded up to a whole GiB).
func PlanLayout(root string, s Spec) (Layout, error) {
	esp := s.ESPSize
	if esp == 0 {
		esp = DefaultESPSize
	}
	size := s.Size
	if size == 0 {
		content, err := treeSize(root)
		if err != nil {
			return Layout{}, err
		}
		rootSize := max(content+content/4, content+512*mib)
		size = (mib + esp + rootSize + mib + gib - 1) / gib * gib
	}
	l := Layout{Size: size, ESPStart: mib, ESPSize: esp}
	l.RootStart = l.ESPStart + esp
	// The backup GPT takes the last 33 sectors; keep root whole MiB.
	l.RootSize = (size - 33*sector - l.RootStart) / mib * mib
	if l.RootSize < 64*mib {
		return l, fmt.Errorf("disk size %d bytes leaves no room for the root filesystem", size)
	}
	return l, nil
}

// treeSize estimates what the tree takes on ext4: 4 KiB blocks plus an
// inode's worth per entry. WalkDir lstats and never follows a symlink, so a
// link to a host directory counts as the link it is.
func treeSize(root string) (int64, error) {
	var n int64
	seen := map[uint64]bool{}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		if ino := inode(fi); ino != 0 && fi.Mode().IsRegular() {
			if seen[ino] {
				return nil
			}
			seen[ino] = true
		}
		n += (fi.Size()+4095)/4096*4096 + 256
		return nil
	})
	return n, err
}

// Assemble writes the raw disk at out from the rootfs at root, which must
// already hold the prepared files. The ESP's content (root/boot/efi) goes
// to p1, everything else to the ext4 root on p2. out is written beside its
// final name and renamed only when complete; it stays sparse.
func Assemble(ctx context.Context, root string, p *Prepared, l Layout, out string) error {
	s := p.Spec
	work, err := os.MkdirTemp(filepath.Dir(out), ".disk-work-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)
	// Move the ESP's content out of the tree for the FAT, and back after.
	espDir := filepath.Join(work, "esp")
	if err := os.Mkdir(espDir, 0o755); err != nil {
		return err
	}
	restore, err := moveESP(root, espDir)
	defer restore() // also after a partial move
	if err != nil {
		return err
	}
	raw := filepath.Join(work, "disk.raw")
	d, err := diskfs.Create(raw, l.Size, diskfs.SectorSizeDefault)
	if err != nil {
		return fmt.Errorf("creating disk: %w", err)
	}
	table := &gpt.Table{
		LogicalSectorSize: sector, PhysicalSectorSize: sector, ProtectiveMBR: true, GUID: s.IDs.Disk,
		Partitions: []*gpt.Partition{
			{Index: 1, Start: uint64(l.ESPStart / sector), End: uint64((l.ESPStart+l.ESPSize)/sector - 1), Type: gpt.EFISystemPartition, Name: "EFI System Partition", GUID: s.IDs.ESP},
			{Index: 2, Start: uint64(l.RootStart / sector), End: uint64((l.RootStart+l.RootSize)/sector - 1), Type: gpt.LinuxRootX86_64, Name: "root", GUID: s.IDs.Root},
		},
	}
	if err := d.Partition(table); err != nil {
		d.Close()
		return fmt.Errorf("writing GPT: %w", err)
	}
	if err := d.Close(); err != nil {
		return err
	}
	if err := makeESP(ctx, work, espDir, raw, l, s); err != nil {
		return err
	}
	if err := makeRoot(ctx, root, raw, l, s); err != nil {
		return err
	}
	// work is beside out, so this rename is atomic.
	if err := os.Chmod(raw, 0o644); err != nil {
		return err
	}
	return os.Rename(raw, out)
}

// checkESPMount checks that /boot and /boot/efi, where they exist, are real
// directories of the image: the ESP's files are moved out of /boot/efi and
// back, and through a symlink that would move some other directory's
// entries (perhaps the host's).
func checkESPMount(root string) error {
	for _, p := range []string{"boot", espMount} {
		fi, err := rootfs.LstatInRoot(root, p)
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("disk: the ESP mount point: %w", err)
		}
		switch {
		case fi.Mode()&fs.ModeSymlink != 0:
			return fmt.Errorf("disk: /%s is a symlink; the ESP mount point /%s must be a real directory", p, espMount)
		case !fi.IsDir():
			return fmt.Errorf("disk: /%s is not a directory; the ESP mount point /%s must be a real directory", p, espMount)
		}
	}
	return nil
}

// moveESP moves the entries of root's /boot/efi into espDir, after checking
// that every one of them can go on FAT, and returns the function that moves
// them back. It works on descriptors of /boot and /boot/efi opened inside
// the image (renameat), so no symlink, even one raced in, can make it touch
// a directory outside root.
func moveESP(root, espDir string) (restore func(), err error) {
	restore = func() {}
	if err := checkESPMount(root); err != nil {
		return restore, err
	}
	boot, err := rootfs.OpenInRoot(root, "boot")
	if errors.Is(err, fs.ErrNotExist) {
		return restore, nil
	}
	if err != nil {
		return restore, fmt.Errorf("disk: %w", err)
	}
	efi, err := rootfs.OpenInRoot(root, espMount)
	if errors.Is(err, fs.ErrNotExist) {
		boot.Close()
		return restore, nil
	}
	if err != nil {
		boot.Close()
		return restore, fmt.Errorf("disk: %w", err)
	}
	dst, err := os.Open(espDir)
	if err != nil {
		boot.Close()
		efi.Close()
		return restore, err
	}
	var st unix.Stat_t
	if err := unix.Fstat(int(efi.Fd()), &st); err != nil {
		boot.Close()
		efi.Close()
		dst.Close()
		return restore, err
	}
	// Moving entries changes the mount point's times: put them back, so the
	// root filesystem stays reproducible.
	setTimes := func() error {
		return unix.UtimesNanoAt(int(boot.Fd()), "efi", []unix.Timespec{st.Mtim, st.Mtim}, unix.AT_SYMLINK_NOFOLLOW)
	}
	var moved []string
	restore = func() {
		for _, n := range moved {
			unix.Renameat(int(dst.Fd()), n, int(efi.Fd()), n)
		}
		setTimes()
		dst.Close()
		efi.Close()
		boot.Close()
	}
	names, err := efi.Readdirnames(-1)
	if err != nil {
		return restore, fmt.Errorf("disk: listing /%s: %w", espMount, err)
	}
	sort.Strings(names)
	for _, n := range names {
		if err := checkFAT(int(efi.Fd()), n, "/"+espMount+"/"+n); err != nil {
			return restore, err
		}
	}
	for _, n := range names {
		if err := unix.Renameat(int(efi.Fd()), n, int(dst.Fd()), n); err != nil {
			return restore, fmt.Errorf("disk: moving /%s/%s out for the ESP: %w", espMount, n, err)
		}
		moved = append(moved, n)
	}
	return restore, setTimes()
}

// checkFAT refuses the entry name of the directory dirfd (p in errors), or
// anything below it, that FAT cannot hold: symlinks (mcopy would follow them
// on the host), devices, FIFOs and sockets.
func checkFAT(dirfd int, name, p string) error {
	var st unix.Stat_t
	if err := unix.Fstatat(dirfd, name, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return fmt.Errorf("disk: %s: %w", p, err)
	}
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFREG:
		return nil
	case unix.S_IFLNK:
		return fmt.Errorf("disk: %s is a symlink; the ESP is FAT, which holds only files and directories", p)
	case unix.S_IFDIR:
	default:
		return fmt.Errorf("disk: %s is a device, FIFO or socket; the ESP is FAT, which holds only files and directories", p)
	}
	fd, err := unix.Openat(dirfd, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("disk: %s: %w", p, err)
	}
	d := os.NewFile(uintptr(fd), p)
	defer d.Close()
	names, err := d.Readdirnames(-1)
	if err != nil {
		return fmt.Errorf("disk: listing %s: %w", p, err)
	}
	sort.Strings(names)
	for _, n := range names {
		if err := checkFAT(fd, n, p+"/"+n); err != nil {
			return err
		}
	}
	return nil
}

func run(ctx context.Context, env []string, name string, args ...string) error {
	cmd := proc.Command(ctx, name, args...)
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if _, lerr := exec.LookPath(name); lerr != nil {
			return fmt.Errorf("%s not found: install it (Debian: %s)", name, debPkg[name])
		}
		return fmt.Errorf("%s %s: %w\n%s", name, strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

var debPkg = map[string]string{"mkfs.ext4": "e2fsprogs", "mkfs.vfat": "dosfstools", "mcopy": "mtools"}

// makeESP formats a FAT32 image of the ESP's size, copies the ESP files in
// with mtools and writes it into p1. go-diskfs's FAT32 writer does not pass
// fsck.vfat (see FINDINGS), so dosfstools and mtools do this part.
func makeESP(ctx context.Context, work, espDir, raw string, l Layout, s Spec) error {
	img := filepath.Join(work, "esp.img")
	f, err := os.Create(img)
	if err != nil {
		return err
	}
	if err := f.Truncate(l.ESPSize); err != nil {
		f.Close()
		return err
	}
	f.Close()
	// FAT32 needs at least 65,525 clusters: small ESPs get small clusters.
	spc := 8
	for spc > 1 && l.ESPSize/int64(spc*sector) < 70000 {
		spc /= 2
	}
	env := []string{fmt.Sprintf("SOURCE_DATE_EPOCH=%d", max(s.Epoch, fatEpoch)), "MTOOLS_SKIP_CHECK=1", "TZ=UTC"}
	if err := run(ctx, env, "mkfs.vfat", "-F", "32", "-S", "512", "-s", fmt.Sprint(spc), "-n", "EFI", "-i", fmt.Sprintf("%08X", s.IDs.VolumeID), "--invariant", img); err != nil {
		return err
	}
	ents, err := os.ReadDir(espDir)
	if err != nil {
		return err
	}
	if len(ents) > 0 {
		args := []string{"-s", "-m", "-Q", "-i", img}
		for _, e := range ents {
			args = append(args, filepath.Join(espDir, e.Name()))
		}
		if err := run(ctx, env, "mcopy", append(args, "::/")...); err != nil {
			return err
		}
	}
	src, err := os.Open(img)
	if err != nil {
		return err
	}
	defer src.Close()
	dst, err := os.OpenFile(raw, os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	if err := sparse.Copy(dst, l.ESPStart, src, l.ESPSize); err != nil {
		dst.Close()
		return err
	}
	return dst.Close()
}

// makeRoot runs mkfs.ext4 -d in place at p2's offset, with every id and
// timestamp fixed so that the bytes are reproducible.
func makeRoot(ctx context.Context, root, raw string, l Layout, s Spec) error {
	epoch := max(s.Epoch, 1)
	env := []string{fmt.Sprintf("E2FSPROGS_FAKE_TIME=%d", epoch), "MKE2FS_CONFIG=/etc/mke2fs.conf"}
	err := run(ctx, env, "mkfs.ext4", "-q", "-F", "-b", "4096", "-L", s.Label, "-U", strings.ToLower(s.IDs.FS),
		"-E", fmt.Sprintf("offset=%d,hash_seed=%s,root_owner=0:0", l.RootStart, strings.ToLower(s.IDs.HashSeed)),
		"-d", root, raw, fmt.Sprint(l.RootSize/4096))
	if err != nil {
		return err
	}
	f, err := os.OpenFile(raw, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	if err := fixInodeTimes(f, l.RootStart, uint32(epoch)); err != nil {
		f.Close()
		return fmt.Errorf("fixing ext4 timestamps: %w", err)
	}
	return f.Close()
}
