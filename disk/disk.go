package disk

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"time"

	diskfs "github.com/diskfs/go-diskfs"
	"github.com/diskfs/go-diskfs/partition/gpt"

	"github.com/layerimg/layerimg/disk/ext4"
	"github.com/layerimg/layerimg/disk/sparse"
	"github.com/layerimg/layerimg/internal/proc"
	"github.com/layerimg/layerimg/internal/progress"
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
	// Arch is the image's architecture (amd64, arm64): the loader's name
	// on the ESP, the root partition's type and the serial console follow
	// it. "" tells it from the loaders in the image (a rootfs tar).
	Arch  string
	Epoch int64 // SOURCE_DATE_EPOCH
	IDs   IDs
}

// Prepared is a disk ready to assemble: the boot mode and the files the disk
// step adds to the rootfs.
type Prepared struct {
	Spec   Spec
	Boot   string
	Arch   string // the disk's architecture: Spec.Arch, or the one detected
	Kernel *Kernel
	// Stage is the host dir holding the files the disk adds, laid out as in
	// the rootfs. Copies are those whose bytes come from the image: stage
	// path -> the name the image's stream hands their content out under.
	// Assemble fills them as the image streams past, so no layer is read
	// twice.
	Stage  string
	Copies map[string]string
}

// Image is the image's final tree, read-only, as the disk stage checks it:
// paths inside the image, symlinks resolved inside it (never on the host).
// ContentName is the name a regular file's content passes under in the
// image's stream (symlinks followed, a hard link group's first path).
// *rootfs.Tree is one.
type Image interface {
	Lstat(name string) (fs.FileInfo, error)
	Stat(name string) (fs.FileInfo, error)
	ReadDir(name string) ([]fs.DirEntry, error)
	ContentName(name string) (string, error)
}

// Entries is the image's final tree as one stream of tar entries: each
// once, with a clean relative name, parents before children, a hard link
// after its target. *rootfs.Tree is one.
type Entries interface {
	// Headers hands out every header in Walk's order, reading no content.
	Headers(fn func(hdr *tar.Header) error) error
	Walk(ctx context.Context, fn func(hdr *tar.Header, r io.Reader) error) error
}

// Prepare decides the boot mode for the image img and writes the files the
// disk adds (/etc/fstab, and the ESP's content under /boot/efi) into stage,
// a host dir laid out as in the rootfs; the copies of the image's kernel,
// initrd and loader are filled in by Assemble. Assemble's top turns the
// stage into the image's top layer.
func Prepare(ctx context.Context, img Image, stage string, s Spec) (*Prepared, error) {
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
	if err := checkESPMount(img); err != nil {
		return nil, err
	}
	p := &Prepared{Spec: s, Boot: s.Boot, Arch: s.Arch, Stage: stage, Copies: map[string]string{}}
	if p.Arch == "" {
		a, err := detectArch(img)
		if err != nil {
			return nil, err
		}
		p.Arch = a
	}
	a, err := lookupArch(p.Arch)
	if err != nil {
		return nil, err
	}
	if p.Boot == "" {
		b, err := DetectBoot(img, a.name)
		if err != nil {
			return nil, err
		}
		p.Boot = b
	}
	switch p.Boot {
	case BootNone:
	case BootSystemd, BootGrub:
		if err := checkLoader(img, p.Boot, a); err != nil {
			return nil, err
		}
		k, err := findKernel(img, a)
		if err != nil {
			return nil, err
		}
		p.Kernel = k
	default:
		return nil, fmt.Errorf("boot %q: expected systemd-boot, grub or none", p.Boot)
	}
	files := map[string][]byte{}
	sources := map[string]string{} // stage path -> rootfs path
	ids := s.IDs
	files["etc/fstab"] = []byte(fmt.Sprintf(`# Written by layerimg: partitions by PARTUUID, so the disk boots on any controller.
PARTUUID=%s	/	ext4	rw,discard,errors=remount-ro	0	1
PARTUUID=%s	/boot/efi	vfat	umask=0077	0	2
`, strings.ToLower(ids.Root), strings.ToLower(ids.ESP)))
	cmdline := strings.TrimSpace(fmt.Sprintf("root=PARTUUID=%s rw console=tty0 console=%s,115200n8 %s", strings.ToLower(ids.Root), a.serial, s.KernelCmdline))
	esp := func(p string) string { return filepath.Join(espMount, p) }
	switch p.Boot {
	case BootSystemd:
		k := p.Kernel
		sources[esp("EFI/BOOT/"+a.bootName())] = a.systemdBoot.path
		sources[esp("vmlinuz-"+k.Version)] = k.Vmlinuz
		sources[esp("initrd.img-"+k.Version)] = k.Initrd
		files[esp("loader/loader.conf")] = []byte("timeout 0\ndefault layerimg.conf\n")
		files[esp("loader/entries/layerimg.conf")] = []byte(fmt.Sprintf("title %s\nlinux /vmlinuz-%s\ninitrd /initrd.img-%s\noptions %s\n", "Debian GNU/Linux", k.Version, k.Version, cmdline))
	case BootGrub:
		k := p.Kernel
		sources[esp("EFI/BOOT/"+a.bootName())] = a.shim.path
		sources[esp("EFI/BOOT/"+a.grubName())] = a.grub.path
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
	// Everything bound for the ESP is staged on the host: refuse what
	// cannot fit before a byte is written (a layer of zeros compresses to
	// nothing and would fill the host's disk).
	need, err := espBytes(img, espMount)
	if err != nil {
		return nil, err
	}
	for _, data := range files {
		need += int64(len(data))
	}
	for sp, src := range sources {
		// Symlinks are followed inside the image only: the content will
		// come from the image's layers, never from a host file.
		name, err := img.ContentName(src)
		if err != nil {
			return nil, fmt.Errorf("boot: %w", err)
		}
		fi, err := img.Stat(src)
		if err != nil {
			return nil, fmt.Errorf("boot: %w", err)
		}
		need += fi.Size()
		p.Copies[sp] = name
		if err := os.MkdirAll(filepath.Join(stage, filepath.Dir(sp)), 0o755); err != nil {
			return nil, err
		}
	}
	if need > s.ESPSize {
		return nil, fmt.Errorf("disk: the ESP's files take %d MiB, more than the ESP's %d MiB: raise esp_size", (need+mib-1)/mib, s.ESPSize/mib)
	}
	return p, nil
}

// espBytes sums the sizes of the regular files under dir in the image.
func espBytes(img Image, dir string) (int64, error) {
	ents, err := img.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("disk: reading /%s: %w", dir, err)
	}
	var n int64
	for _, e := range ents {
		p := dir + "/" + e.Name()
		fi, err := img.Lstat(p)
		if err != nil {
			return 0, fmt.Errorf("disk: reading /%s: %w", p, err)
		}
		switch {
		case fi.IsDir():
			m, err := espBytes(img, p)
			if err != nil {
				return 0, err
			}
			n += m
		case fi.Mode().IsRegular():
			n += fi.Size()
		}
	}
	return n, nil
}

// finishStage sets the times and modes of the stage's directories once
// every file is in: the same for all, for a reproducible ESP, whatever
// the umask.
func (p *Prepared) finishStage() error {
	mtime := time.Unix(max(p.Spec.Epoch, fatEpoch), 0)
	return filepath.WalkDir(p.Stage, func(path string, d fs.DirEntry, err error) error {
		if err != nil || !d.IsDir() || path == p.Stage {
			return err
		}
		if err := os.Chmod(path, 0o755); err != nil {
			return err
		}
		return os.Chtimes(path, mtime, mtime)
	})
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
	if err := os.Chmod(full, mode); err != nil { // whatever the umask
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
func PlanLayout(e Entries, s Spec) (Layout, error) {
	esp := s.ESPSize
	if esp == 0 {
		esp = DefaultESPSize
	}
	size := s.Size
	if size == 0 {
		content, err := treeSize(e)
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

// treeSize estimates what the tree takes on ext4: 4 KiB blocks of each
// regular file's content (a hard link group's once) plus an inode's worth
// per entry.
func treeSize(e Entries) (int64, error) {
	var n int64
	err := e.Headers(func(hdr *tar.Header) error {
		if hdr.Typeflag == tar.TypeReg || hdr.Typeflag == tar.TypeRegA {
			n += (hdr.Size + 4095) / 4096 * 4096
		}
		n += 256
		return nil
	})
	return n, err
}

// Top makes the image's top layer, the files the disk adds, from the
// finished stage (the caller keeps it: it is part of the image) and returns
// its uncompressed tar.
type Top func(ctx context.Context) (io.ReadCloser, error)

// Assemble writes the raw disk at out from the image's entries and the
// files Prepare staged. It streams the image once: what is under /boot/efi
// goes to a host staging dir for the ESP on p1 (FAT: files and directories
// only), everything else to the ext4 root on p2, written in place; the
// kernel, initrd and loader are copied into the stage as they pass. Then
// top's entries go on top, replacing the image's files of the same names.
// out is written beside its final name and renamed only when complete; it
// stays sparse.
func Assemble(ctx context.Context, e Entries, p *Prepared, l Layout, out string, top Top) error {
	s := p.Spec
	a, err := lookupArch(p.Arch)
	if err != nil {
		return err
	}
	work, err := os.MkdirTemp(filepath.Dir(out), ".disk-work-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)
	raw := filepath.Join(work, "disk.raw")
	d, err := diskfs.Create(raw, l.Size, diskfs.SectorSizeDefault)
	if err != nil {
		return fmt.Errorf("creating disk: %w", err)
	}
	table := &gpt.Table{
		LogicalSectorSize: sector, PhysicalSectorSize: sector, ProtectiveMBR: true, GUID: s.IDs.Disk,
		Partitions: []*gpt.Partition{
			{Index: 1, Start: uint64(l.ESPStart / sector), End: uint64((l.ESPStart+l.ESPSize)/sector - 1), Type: gpt.EFISystemPartition, Name: "EFI System Partition", GUID: s.IDs.ESP},
			{Index: 2, Start: uint64(l.RootStart / sector), End: uint64((l.RootStart+l.RootSize)/sector - 1), Type: a.rootType, Name: "root", GUID: s.IDs.Root},
		},
	}
	if err := d.Partition(table); err != nil {
		d.Close()
		return fmt.Errorf("writing GPT: %w", err)
	}
	if err := d.Close(); err != nil {
		return err
	}
	espDir := filepath.Join(work, "esp")
	if err := os.Mkdir(espDir, 0o755); err != nil {
		return err
	}
	if err := writeRoot(ctx, e, p, top, work, raw, espDir, l); err != nil {
		return err
	}
	if err := makeESP(ctx, work, espDir, raw, l, s); err != nil {
		return err
	}
	// work is beside out, so this rename is atomic.
	if err := os.Chmod(raw, 0o644); err != nil {
		return err
	}
	return os.Rename(raw, out)
}

// router sends each entry to the ext4 root or, under /boot/efi, to the
// ESP's staging dir.
type router struct {
	fs  *ext4.Writer
	esp *espStage
}

func (rt router) add(hdr *tar.Header, r io.Reader) error {
	if err := checkMountEntry(hdr); err != nil {
		return err
	}
	if rel, ok := strings.CutPrefix(hdr.Name, espMount+"/"); ok {
		return rt.esp.add(rel, hdr, r)
	}
	if hdr.Typeflag == tar.TypeLink && strings.HasPrefix(hdr.Linkname, espMount+"/") {
		return fmt.Errorf("disk: /%s is a hard link to /%s in the ESP; a hard link cannot cross filesystems", hdr.Name, hdr.Linkname)
	}
	return rt.fs.Add(hdr, r)
}

// writeRoot streams the image into the ext4 root at p2 of raw and the ESP
// staging dir, taking the copies Prepare asked for as they pass, then puts
// the top layer's entries on top.
func writeRoot(ctx context.Context, e Entries, p *Prepared, top Top, work, raw, espDir string, l Layout) error {
	s := p.Spec
	uuid, err := uuidBytes(s.IDs.FS)
	if err != nil {
		return fmt.Errorf("disk: the filesystem UUID: %w", err)
	}
	seed, err := uuidBytes(s.IDs.HashSeed)
	if err != nil {
		return fmt.Errorf("disk: the directory hash seed: %w", err)
	}
	a, err := newAssembler(p, filepath.Join(work, "held"))
	if err != nil {
		return err
	}
	f, err := os.OpenFile(raw, os.O_RDWR, 0)
	if err != nil {
		return fmt.Errorf("disk: opening the disk being written: %w", err)
	}
	defer f.Close()
	// Epoch 0 would put 1970-01-01 in the superblock's times, which some
	// tools read as "never"; 1 s later is as reproducible.
	fsw, err := ext4.New(f, l.RootStart, ext4.Options{Size: l.RootSize, Label: s.Label, UUID: uuid, HashSeed: seed, Epoch: max(s.Epoch, 1)})
	if err != nil {
		return fmt.Errorf("disk: %w", err)
	}
	a.rt = router{fs: fsw, esp: &espStage{dir: espDir, mtime: time.Unix(max(s.Epoch, fatEpoch), 0), dirs: map[string]time.Time{}}}
	var total int64
	if err := e.Headers(func(h *tar.Header) error {
		if isRegular(h) {
			total += h.Size
		}
		return nil
	}); err != nil {
		return err
	}
	a.meter = progress.Start(ctx, "writing the disk", total)
	defer a.meter.Finish()
	if err := e.Walk(ctx, a.entry); err != nil {
		return err
	}
	for sp, name := range p.Copies {
		if !a.copied[sp] {
			return fmt.Errorf("disk: /%s did not pass in the image's stream", name)
		}
	}
	if err := p.checkKernel(); err != nil {
		return err
	}
	if err := p.finishStage(); err != nil {
		return fmt.Errorf("disk: staging: %w", err)
	}
	if err := addTop(ctx, top, a.rt); err != nil {
		return err
	}
	if err := fsw.Close(); err != nil {
		return fmt.Errorf("disk: %w", err)
	}
	if err := a.rt.esp.setDirTimes(); err != nil {
		return fmt.Errorf("disk: staging the ESP: %w", err)
	}
	return f.Close()
}

// assembler routes the image's stream: the copies Prepare asked for are
// teed into the stage as they pass, and the files the top layer replaces
// are left out.
type assembler struct {
	p        *Prepared
	rt       router
	meter    *progress.Meter
	taps     map[string][]string // content name -> stage paths copied from it
	copied   map[string]bool     // stage paths filled
	replaced map[string]bool     // names the top layer writes
	// A file the top layer replaces keeps its bytes for the hard links to
	// it (as copy-up does): they are held in heldDir until its links have
	// passed. held maps its name to its header, then to the first link's
	// name once that link has taken the content.
	heldDir string
	held    map[string]*tar.Header
	heir    map[string]string
}

func newAssembler(p *Prepared, heldDir string) (*assembler, error) {
	a := &assembler{p: p, taps: map[string][]string{}, copied: map[string]bool{}, heldDir: heldDir,
		held: map[string]*tar.Header{}, heir: map[string]string{}}
	replaced, err := stagedFiles(p.Stage)
	if err != nil {
		return nil, fmt.Errorf("disk: listing the stage: %w", err)
	}
	for sp, name := range p.Copies {
		a.taps[name] = append(a.taps[name], sp)
		replaced[sp] = true // not written yet, but the top layer will hold them
	}
	a.replaced = replaced
	return a, nil
}

// entry is Walk's callback.
func (a *assembler) entry(hdr *tar.Header, r io.Reader) (err error) {
	if isRegular(hdr) {
		r = a.meter.Reader(r)
	}
	if sps, ok := a.taps[hdr.Name]; ok && isRegular(hdr) {
		cw, err := a.p.openCopies(sps)
		if err != nil {
			return err
		}
		defer func() {
			if cerr := cw.Close(); err == nil {
				err = cerr
			}
		}()
		r = io.TeeReader(r, cw)
		for _, sp := range sps {
			a.copied[sp] = true
		}
	}
	if a.replaced[hdr.Name] && hdr.Typeflag != tar.TypeDir {
		if !isRegular(hdr) {
			return nil
		}
		a.held[hdr.Name] = hdr
		return holdFile(a.heldDir, hdr.Name, r)
	}
	if hdr.Typeflag == tar.TypeLink {
		if heir, ok := a.heir[hdr.Linkname]; ok { // the group lives on under heir
			h := *hdr
			h.Linkname = heir
			return a.rt.add(&h, r)
		}
		if target, ok := a.held[hdr.Linkname]; ok { // the first link takes the bytes
			h := *target
			h.Name = hdr.Name
			hf, err := os.Open(filepath.Join(a.heldDir, filepath.FromSlash(target.Name)))
			if err != nil {
				return fmt.Errorf("disk: the held copy of /%s: %w", target.Name, err)
			}
			defer hf.Close()
			a.heir[hdr.Linkname] = hdr.Name
			return a.rt.add(&h, hf)
		}
	}
	return a.rt.add(hdr, r)
}

// addTop routes the top layer's entries (files and directories only).
func addTop(ctx context.Context, top Top, rt router) error {
	rc, err := top(ctx)
	if err != nil {
		return err
	}
	defer rc.Close()
	tr := tar.NewReader(rc)
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return fmt.Errorf("disk: reading the generated layer: %w", err)
		}
		hdr.Name = strings.Trim(strings.TrimPrefix(hdr.Name, "./"), "/")
		if hdr.Name == "" || hdr.Name == "." {
			continue // the root keeps the image's metadata, as Apply keeps it
		}
		if err := rt.add(hdr, tr); err != nil {
			return err
		}
	}
	// To the end, where a cached layer's digest is checked.
	if _, err := io.Copy(io.Discard, rc); err != nil {
		return fmt.Errorf("disk: reading the generated layer: %w", err)
	}
	return rc.Close()
}

func isRegular(hdr *tar.Header) bool {
	return hdr.Typeflag == tar.TypeReg || hdr.Typeflag == tar.TypeRegA
}

// stagedFiles lists the stage's files by their names in the rootfs.
func stagedFiles(stage string) (map[string]bool, error) {
	names := map[string]bool{}
	err := filepath.WalkDir(stage, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, err := filepath.Rel(stage, p)
		names[filepath.ToSlash(rel)] = true
		return err
	})
	return names, err
}

// holdFile keeps a copy of the content of the image's file name under dir.
func holdFile(dir, name string, r io.Reader) error {
	p := filepath.Join(dir, filepath.FromSlash(name))
	if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
		return fmt.Errorf("disk: holding /%s: %w", name, err)
	}
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("disk: holding /%s: %w", name, err)
	}
	_, err = io.Copy(f, r)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("disk: holding /%s: %w", name, err)
	}
	return nil
}

// copies writes one stream into the stage files copied from it; Close
// gives them their mode and time.
type copies struct {
	files []*os.File
	p     *Prepared
}

func (p *Prepared) openCopies(sps []string) (*copies, error) {
	c := &copies{p: p}
	for _, sp := range sps {
		f, err := os.OpenFile(filepath.Join(p.Stage, sp), os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
		if err != nil {
			c.Close()
			return nil, err
		}
		c.files = append(c.files, f)
	}
	return c, nil
}

func (c *copies) Write(b []byte) (int, error) {
	for _, f := range c.files {
		if _, err := f.Write(b); err != nil {
			return 0, fmt.Errorf("disk: staging %s: %w", f.Name(), err)
		}
	}
	return len(b), nil
}

func (c *copies) Close() error {
	var first error
	mtime := time.Unix(max(c.p.Spec.Epoch, fatEpoch), 0)
	for _, f := range c.files {
		err := f.Close()
		if err == nil {
			err = setStaged(c.p.Stage, f.Name(), mtime)
		}
		if first == nil {
			first = err
		}
	}
	return first
}

// setStaged gives a staged file its mode and time: 0700 under the ESP
// (mounted umask=0077), else 0644, whatever the umask.
func setStaged(stage, full string, mtime time.Time) error {
	mode := os.FileMode(0o644)
	if rel, err := filepath.Rel(stage, full); err == nil && strings.HasPrefix(filepath.ToSlash(rel), espMount) {
		mode = 0o700
	}
	if err := os.Chmod(full, mode); err != nil {
		return err
	}
	return os.Chtimes(full, mtime, mtime)
}

// checkMountEntry refuses /boot or /boot/efi as anything but a directory:
// the ESP is mounted there.
func checkMountEntry(hdr *tar.Header) error {
	if (hdr.Name == "boot" || hdr.Name == espMount) && hdr.Typeflag != tar.TypeDir {
		what := "is not a directory"
		if hdr.Typeflag == tar.TypeSymlink {
			what = "is a symlink"
		}
		return fmt.Errorf("disk: /%s %s; the ESP mount point /%s must be a real directory", hdr.Name, what, espMount)
	}
	return nil
}

// espStage is the host dir the ESP's files are staged in for mcopy. Names
// come clean from the stream (no "..", no symlink is ever made here), so
// nothing is written outside it.
type espStage struct {
	dir   string
	mtime time.Time            // for directories no layer named
	dirs  map[string]time.Time // staged directories' times, set last
}

func (e *espStage) add(rel string, hdr *tar.Header, r io.Reader) error {
	p := "/" + hdr.Name
	host := filepath.Join(e.dir, filepath.FromSlash(rel))
	if err := e.mkdirAll(filepath.Dir(host)); err != nil {
		return err
	}
	switch hdr.Typeflag {
	case tar.TypeDir:
		if err := e.mkdirAll(host); err != nil {
			return err
		}
		e.dirs[host] = hdr.ModTime
		return nil
	case tar.TypeReg, tar.TypeRegA:
		f, err := os.OpenFile(host, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if err != nil {
			return fmt.Errorf("disk: staging %s for the ESP: %w", p, err)
		}
		_, err = io.Copy(f, r)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return fmt.Errorf("disk: staging %s for the ESP: %w", p, err)
		}
		return os.Chtimes(host, hdr.ModTime, hdr.ModTime)
	case tar.TypeLink:
		target, ok := strings.CutPrefix(hdr.Linkname, espMount+"/")
		if !ok {
			return fmt.Errorf("disk: %s is a hard link to /%s, outside the ESP; a hard link cannot cross filesystems", p, hdr.Linkname)
		}
		// FAT has no hard links: mcopy copies each name's content.
		if err := os.Link(filepath.Join(e.dir, filepath.FromSlash(target)), host); err != nil {
			return fmt.Errorf("disk: staging %s for the ESP: %w", p, err)
		}
		return nil
	case tar.TypeSymlink:
		return fmt.Errorf("disk: %s is a symlink; the ESP is FAT, which holds only files and directories", p)
	}
	return fmt.Errorf("disk: %s is a device, FIFO or socket; the ESP is FAT, which holds only files and directories", p)
}

// mkdirAll makes dir and its missing parents, noting their time.
func (e *espStage) mkdirAll(dir string) error {
	if dir == e.dir {
		return nil
	}
	if _, ok := e.dirs[dir]; ok {
		return nil
	}
	if err := e.mkdirAll(filepath.Dir(dir)); err != nil {
		return err
	}
	if err := os.Mkdir(dir, 0o755); err != nil {
		return fmt.Errorf("disk: staging the ESP: %w", err)
	}
	e.dirs[dir] = e.mtime
	return nil
}

// setDirTimes sets the staged directories' times, children first: adding
// to a directory changed its time.
func (e *espStage) setDirTimes() error {
	dirs := slices.Sorted(maps.Keys(e.dirs))
	slices.Reverse(dirs)
	for _, d := range dirs {
		if err := os.Chtimes(d, e.dirs[d], e.dirs[d]); err != nil {
			return err
		}
	}
	return nil
}

// checkESPMount checks that /boot and /boot/efi, where they exist, are real
// directories of the image, before a layer is made for them.
func checkESPMount(img Image) error {
	for _, p := range []string{"boot", espMount} {
		fi, err := img.Lstat(p)
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

var debPkg = map[string]string{"mkfs.vfat": "dosfstools", "mcopy": "mtools"}

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
