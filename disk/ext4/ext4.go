// Package ext4 writes an ext4 filesystem from a stream of tar entries,
// straight into a byte range of a disk file: nothing is unpacked on the
// host, so no privileges are needed, and the bytes depend only on the
// entries and the options.
//
// The layout is mke2fs's for the size (4 KiB blocks, 256-byte inodes,
// flex_bg, 64bit, extents, huge_file, dir_nlink, extra_isize,
// sparse_super, metadata_csum, dir_index, a journal sized as mke2fs sizes
// it), without the resize inode: an image is grown by resize2fs offline or
// online through the kernel's meta_bg path, which needs none.
package ext4

import (
	"archive/tar"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"path"
	"strings"
	"time"
)

// Options fixes everything about the filesystem that is not in the entries.
type Options struct {
	// Size of the filesystem in bytes: a multiple of 4096, at least 16 MiB.
	Size int64
	// Label is the volume label (at most 16 bytes).
	Label string
	// UUID and HashSeed (the directory index's seed) make the bytes
	// reproducible: derive them from the build's ids.
	UUID, HashSeed [16]byte
	// Epoch (SOURCE_DATE_EPOCH) is every time the writer makes up: the
	// superblock's, atime, ctime and crtime of every inode, and the mtime of
	// directories the stream did not name (the root, lost+found, parents).
	Epoch int64
}

// Writer builds one filesystem. The byte range it is given must read as
// zeros (a new sparse file does): unused inodes and holes are not written.
type Writer struct {
	w        io.WriterAt
	off      int64
	o        Options
	geo      *geometry
	alloc    allocator
	seed     uint32 // metadata checksum seed
	hashSeed [4]uint32
	inodes   []*inode // by number; 0..10 reserved
	paths    map[string]uint32
	buf      []byte
	err      error // sticky: a failed write leaves the filesystem unusable
}

// New starts a filesystem at byte off of w.
func New(w io.WriterAt, off int64, o Options) (*Writer, error) {
	if len(o.Label) > 16 {
		return nil, fmt.Errorf("ext4: label %q is longer than 16 bytes", o.Label)
	}
	if err := checkTime(time.Unix(o.Epoch, 0)); err != nil {
		return nil, fmt.Errorf("ext4: epoch: %w", err)
	}
	geo, err := plan(o.Size)
	if err != nil {
		return nil, err
	}
	fw := &Writer{w: w, off: off, o: o, geo: geo, paths: map[string]uint32{}, buf: make([]byte, 1<<20)}
	fw.seed = crc(^uint32(0), o.UUID[:])
	for i := range fw.hashSeed {
		fw.hashSeed[i] = binary.LittleEndian.Uint32(o.HashSeed[4*i:])
	}
	fw.alloc = allocator{used: newBitmap(geo.blocks), blocks: geo.blocks}
	for g := uint32(0); g < geo.groups; g++ {
		fw.alloc.used.setRange(geo.groupStart(g), geo.superBlocks(g))
		fw.alloc.used.set(geo.blockBitmap[g])
		fw.alloc.used.set(geo.inodeBitmap[g])
		fw.alloc.used.setRange(geo.inodeTable[g], uint64(geo.itableBlocks))
	}
	fw.inodes = make([]*inode, firstIno+1)
	epoch := time.Unix(o.Epoch, 0)
	fw.inodes[rootIno] = &inode{mode: sIFDIR | 0o755, mtime: epoch, dir: &dir{parent: rootIno}}
	fw.inodes[lostFoundIno] = &inode{mode: sIFDIR | 0o700, mtime: epoch, dir: &dir{parent: rootIno}}
	fw.inodes[rootIno].dir.children = []dirent{{name: "lost+found", ino: lostFoundIno, ftype: 2}}
	fw.paths[""] = rootIno
	fw.paths["lost+found"] = lostFoundIno
	if err := fw.makeJournal(); err != nil {
		return nil, err
	}
	return fw, nil
}

// Add puts one entry in the filesystem. After an error that leaves the
// filesystem as it was (a bad name, type, owner, time, xattr or link) the
// caller may go on; after any other, every call returns that error. hdr.Name is a slash-separated path
// relative to the root ("./" prefix allowed, "." or "" is the root itself);
// missing parent directories are made (0755, root, Epoch) and take the
// metadata of their own entry if one comes later. Typeflag is one of Reg,
// Dir, Symlink, Link (hdr.Linkname names an earlier entry), Char, Block,
// Fifo; a Reg entry whose Mode has the socket type bits (0140000) is a
// socket. r holds a regular file's hdr.Size bytes; all-zero 4 KiB blocks
// become holes. Xattrs come from PAXRecords "SCHILY.xattr.NAME" (POSIX ACLs
// in the kernel's xattr form). mtime comes from hdr.ModTime, nanoseconds
// included; 1901 to 2446 round-trip. Names are cleaned ("a//b", "a/./b" and
// "/a" name "a/b" and "a"); a directory named twice takes its last entry's
// metadata, any other path named twice is refused.
func (w *Writer) Add(hdr *tar.Header, r io.Reader) error {
	if w.err != nil {
		return w.err
	}
	inodes := len(w.inodes)
	name, err := clean(hdr.Name)
	if err == nil {
		err = w.add(name, hdr, r)
	}
	if err != nil {
		err = fmt.Errorf("ext4: %s: %w", display(hdr.Name), err)
		// Past a full filesystem, a failed write or an inode half made,
		// the filesystem cannot be finished: every later call says so.
		if errors.Is(err, ErrFull) || errors.Is(err, errWrite) || len(w.inodes) != inodes {
			w.err = err
		}
	}
	return err
}

var errWrite = errors.New("writing the filesystem")

func display(name string) string {
	return "/" + strings.TrimPrefix(strings.TrimPrefix(name, "./"), "/")
}

// clean turns a tar name into a path relative to the root ("" for the
// root), refusing what cannot name a file inside it.
func clean(name string) (string, error) {
	n := strings.Trim(name, "/")
	if n == "" || n == "." {
		return "", nil
	}
	for _, c := range strings.Split(n, "/") {
		if c == ".." {
			return "", errors.New("a path with .. cannot be written")
		}
		if len(c) > 255 {
			return "", fmt.Errorf("a name of %d bytes is longer than ext4's 255", len(c))
		}
		if strings.IndexByte(c, 0) >= 0 {
			return "", errors.New("a name with a NUL byte cannot be written")
		}
	}
	n = path.Clean(n)
	if n == "." {
		return "", nil
	}
	return n, nil
}

func (w *Writer) add(name string, hdr *tar.Header, r io.Reader) error {
	mtime := hdr.ModTime
	if hdr.Typeflag != tar.TypeLink { // a link's own header time is not used
		if err := checkTime(mtime); err != nil {
			return err
		}
	}
	// 2^32-1 is Linux's "no id": the kernel would show it as the overflow id.
	if hdr.Uid < 0 || hdr.Gid < 0 || int64(hdr.Uid) > 1<<32-2 || int64(hdr.Gid) > 1<<32-2 {
		return fmt.Errorf("owner %d:%d is outside 0 to 4294967294", hdr.Uid, hdr.Gid)
	}
	xs, err := xattrsOf(hdr)
	if err != nil {
		return err
	}
	perm := uint16(hdr.Mode & 0o7777)
	if hdr.Typeflag == tar.TypeDir {
		if ino, ok := w.paths[name]; ok {
			in := w.inodes[ino]
			if in.dir == nil {
				return errors.New("a directory cannot replace a file already written")
			}
			// A directory made for a child, or named twice: the last
			// entry's metadata wins, as extracting a layer over another
			// does; xattrs it does not name stay, as setxattr leaves them.
			in.mode, in.uid, in.gid, in.mtime = sIFDIR|perm, uint32(hdr.Uid), uint32(hdr.Gid), mtime
			return w.setXattrs(ino, in, mergeXattrs(in.allXattrs, xs))
		}
	} else if name == "" {
		return errors.New("the root must be a directory")
	} else if _, ok := w.paths[name]; ok {
		return errors.New("the path is already written: a stream holds each path once")
	}
	parent, err := w.mkdirAll(path.Dir(name))
	if err != nil {
		return err
	}
	if hdr.Typeflag == tar.TypeLink {
		return w.link(name, hdr.Linkname, parent)
	}
	in := &inode{uid: uint32(hdr.Uid), gid: uint32(hdr.Gid), mtime: mtime, links: 1}
	ino, err := w.newInode(in)
	if err != nil {
		return err
	}
	switch hdr.Typeflag {
	case tar.TypeDir:
		in.mode, in.dir, in.links = sIFDIR|perm, &dir{parent: parent}, 0
	case tar.TypeReg, tar.TypeRegA:
		if hdr.Mode&0o170000 == sIFSOCK {
			in.mode = sIFSOCK | perm
			break
		}
		in.mode = sIFREG | perm
		if err := w.writeFile(ino, in, r, hdr.Size); err != nil {
			return err
		}
	case tar.TypeSymlink:
		in.mode = sIFLNK | 0o777
		if err := w.symlink(ino, in, hdr.Linkname); err != nil {
			return err
		}
	case tar.TypeChar, tar.TypeBlock:
		in.mode = sIFCHR | perm
		if hdr.Typeflag == tar.TypeBlock {
			in.mode = sIFBLK | perm
		}
		if err := setDevice(in, hdr.Devmajor, hdr.Devminor); err != nil {
			return err
		}
	case tar.TypeFifo:
		in.mode = sIFIFO | perm
	default:
		return fmt.Errorf("entry type %q cannot be written", hdr.Typeflag)
	}
	if err := w.setXattrs(ino, in, xs); err != nil {
		return err
	}
	w.paths[name] = ino
	pd := w.inodes[parent].dir
	pd.children = append(pd.children, dirent{name: path.Base(name), ino: ino, ftype: fileType(in.mode)})
	return nil
}

func (w *Writer) newInode(in *inode) (uint32, error) {
	ino := uint32(len(w.inodes))
	if uint64(ino) > uint64(w.geo.groups)*uint64(w.geo.inodesPerGroup) {
		return 0, fmt.Errorf("%w: no free inodes (the filesystem has %d)", ErrFull, uint64(w.geo.groups)*uint64(w.geo.inodesPerGroup))
	}
	w.inodes = append(w.inodes, in)
	return ino, nil
}

// mkdirAll returns the inode of directory p, making it and its parents
// where missing.
func (w *Writer) mkdirAll(p string) (uint32, error) {
	if p == "." {
		p = ""
	}
	if ino, ok := w.paths[p]; ok {
		if w.inodes[ino].dir == nil {
			return 0, fmt.Errorf("%s is not a directory", display(p))
		}
		return ino, nil
	}
	parent, err := w.mkdirAll(path.Dir(p))
	if err != nil {
		return 0, err
	}
	in := &inode{mode: sIFDIR | 0o755, mtime: time.Unix(w.o.Epoch, 0), dir: &dir{parent: parent}}
	ino, err := w.newInode(in)
	if err != nil {
		return 0, err
	}
	w.paths[p] = ino
	pd := w.inodes[parent].dir
	pd.children = append(pd.children, dirent{name: path.Base(p), ino: ino, ftype: 2})
	return ino, nil
}

func (w *Writer) link(name, target string, parent uint32) error {
	t, err := clean(target)
	if err != nil {
		return fmt.Errorf("hard link target %q: %w", target, err)
	}
	ino, ok := w.paths[t]
	if !ok {
		return fmt.Errorf("hard link target %s is not in the filesystem (a link must follow its target)", display(target))
	}
	in := w.inodes[ino]
	if in.dir != nil {
		return fmt.Errorf("hard link target %s is a directory", display(target))
	}
	if in.links >= 65000 {
		return fmt.Errorf("hard link target %s has ext4's maximum of 65000 links", display(target))
	}
	in.links++
	w.paths[name] = ino
	pd := w.inodes[parent].dir
	pd.children = append(pd.children, dirent{name: path.Base(name), ino: ino, ftype: fileType(in.mode)})
	return nil
}

func setDevice(in *inode, major, minor int64) error {
	if major < 0 || minor < 0 || major > 0xfff || minor > 0xfffff {
		return fmt.Errorf("device number %d,%d does not fit in Linux's 12+20 bits", major, minor)
	}
	le := binary.LittleEndian
	if major < 256 && minor < 256 {
		le.PutUint32(in.iblock[0:], uint32(major<<8|minor))
	} else {
		le.PutUint32(in.iblock[4:], uint32(minor&0xff|major<<8|(minor&^0xff)<<12))
	}
	return nil
}

func (w *Writer) symlink(ino uint32, in *inode, target string) error {
	switch {
	case target == "":
		return errors.New("a symlink needs a target")
	case strings.IndexByte(target, 0) >= 0:
		return errors.New("a symlink target with a NUL byte cannot be written")
	case len(target) >= blockSize:
		return fmt.Errorf("a symlink target of %d bytes is longer than Linux's 4095", len(target))
	case len(target) < 60: // fast: the target sits in i_block
		copy(in.iblock[:], target)
		in.size = uint64(len(target))
		return nil
	}
	return w.writeFile(ino, in, strings.NewReader(target), int64(len(target)))
}

// setXattrs stores xs in the inode and, for what does not fit, a block.
func (w *Writer) setXattrs(ino uint32, in *inode, xs []xattr) error {
	inInode, inBlock, err := placeXattrs(xs)
	if err != nil {
		return err
	}
	in.xattrs, in.allXattrs = inInode, xs
	if len(inBlock) == 0 {
		if in.xblock != 0 { // named again with less: the block goes
			w.alloc.used.clear(in.xblock)
			in.xblock, in.blocks = 0, in.blocks-1
		}
		return nil
	}
	if in.xblock == 0 {
		s, _, err := w.alloc.alloc(1)
		if err != nil {
			return err
		}
		in.xblock = s
		in.blocks++
	}
	return w.writeBlock(in.xblock, w.xattrBlock(in.xblock, inBlock))
}

// writeFile writes size bytes from r as the file's data, leaving all-zero
// blocks as holes, and maps them with an extent tree.
func (w *Writer) writeFile(ino uint32, in *inode, r io.Reader, size int64) error {
	if size < 0 || size > (1<<32-1)*blockSize {
		return fmt.Errorf("a file of %d bytes is beyond ext4's limit", size)
	}
	in.size = uint64(size)
	in.flags |= flagExtents
	var exts []extent
	var logical uint64
	zero := make([]byte, blockSize)
	for left := size; left > 0; {
		n := min(int64(len(w.buf)), left)
		if got, err := io.ReadFull(r, w.buf[:n]); err != nil {
			if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
				return fmt.Errorf("the content ends %d bytes short of the %d its header gives", left-int64(got), size)
			}
			return fmt.Errorf("reading the content: %w", err)
		}
		nb := (n + blockSize - 1) / blockSize
		clear(w.buf[n : nb*blockSize])
		for i := int64(0); i < nb; {
			if bytes.Equal(w.buf[i*blockSize:(i+1)*blockSize], zero) {
				i++
				continue
			}
			j := i + 1
			for j < nb && !bytes.Equal(w.buf[j*blockSize:(j+1)*blockSize], zero) {
				j++
			}
			for i < j {
				s, got, err := w.alloc.alloc(uint64(j - i))
				if err != nil {
					return err
				}
				if _, err := w.w.WriteAt(w.buf[i*blockSize:(i+int64(got))*blockSize], w.off+int64(s)*blockSize); err != nil {
					return fmt.Errorf("%w: %w", errWrite, err)
				}
				exts = addExtent(exts, uint32(logical+uint64(i)), s, got)
				in.blocks += got
				i += int64(got)
			}
		}
		logical += uint64(nb)
		left -= n
	}
	iblock, tree, err := w.extentTree(ino, exts)
	if err != nil {
		return err
	}
	in.iblock = iblock
	in.blocks += tree
	return nil
}

func (w *Writer) writeBlock(blk uint64, b []byte) error {
	if _, err := w.w.WriteAt(b, w.off+int64(blk)*blockSize); err != nil {
		return fmt.Errorf("%w: %w", errWrite, err)
	}
	return nil
}

// Close lays out directories, inodes, bitmaps, group descriptors and the
// superblocks. The filesystem is not valid before Close returns nil.
func (w *Writer) Close() error {
	if w.err != nil {
		return w.err
	}
	err := w.finish()
	if err != nil {
		w.err = fmt.Errorf("ext4: %w", err)
		return w.err
	}
	w.err = errors.New("ext4: the writer is closed")
	return nil
}

func (w *Writer) finish() error {
	if err := w.writeDirs(); err != nil {
		return err
	}
	if err := w.writeInodes(); err != nil {
		return err
	}
	return w.writeGroups()
}

// writeDirs writes every directory's blocks and sets link counts: 2 plus
// one per subdirectory, or 1 past ext4's limit (dir_nlink).
func (w *Writer) writeDirs() error {
	for ino, in := range w.inodes {
		if in == nil || in.dir == nil {
			continue
		}
		links := uint32(2)
		for _, c := range in.dir.children {
			if c.ftype == 2 {
				links++
			}
		}
		if links >= 65000 {
			links = 1
		}
		in.links = links
		blocks, indexed, err := w.dirBlocks(uint32(ino), in.dir)
		if err != nil {
			return fmt.Errorf("%s: %w", w.pathOf(uint32(ino)), err)
		}
		runs, err := w.alloc.allocAll(uint64(len(blocks)))
		if err != nil {
			return fmt.Errorf("directories: %w", err)
		}
		var exts []extent
		k := 0
		for _, r := range runs {
			buf := make([]byte, 0, int(r.n)*blockSize)
			for i := uint64(0); i < r.n; i++ {
				buf = append(buf, blocks[k+int(i)]...)
			}
			if err := w.writeBlock(r.start, buf); err != nil {
				return err
			}
			exts = addExtent(exts, uint32(k), r.start, r.n)
			k += int(r.n)
		}
		iblock, tree, err := w.extentTree(uint32(ino), exts)
		if err != nil {
			return err
		}
		in.iblock, in.size, in.flags = iblock, uint64(len(blocks))*blockSize, in.flags|flagExtents
		in.blocks += uint64(len(blocks)) + tree
		if indexed {
			in.flags |= flagIndex
		}
	}
	return nil
}

// pathOf finds a directory's path, for errors.
func (w *Writer) pathOf(ino uint32) string {
	for p, i := range w.paths {
		if i == ino {
			return display(p)
		}
	}
	return fmt.Sprintf("inode %d", ino)
}

func (w *Writer) writeInodes() error {
	g := w.geo
	for grp := uint32(0); grp < g.groups; grp++ {
		first := uint64(grp)*uint64(g.inodesPerGroup) + 1
		if first >= uint64(len(w.inodes)) {
			break
		}
		last := min(uint64(len(w.inodes))-1, first+uint64(g.inodesPerGroup)-1)
		table := make([]byte, (last-first+1)*inodeSize)
		for ino := first; ino <= last; ino++ {
			if in := w.inodes[ino]; in != nil {
				copy(table[(ino-first)*inodeSize:], w.encode(uint32(ino), in))
			}
		}
		if _, err := w.w.WriteAt(table, w.off+int64(g.inodeTable[grp])*blockSize); err != nil {
			return fmt.Errorf("%w: %w", errWrite, err)
		}
	}
	return nil
}

// journalBlocks is ext2fs_default_journal_size: the journal mke2fs makes
// for a filesystem of this many blocks.
func journalBlocks(blocks uint64) uint64 {
	switch {
	case blocks < 32768:
		return 1024
	case blocks < 256*1024:
		return 4096
	case blocks < 512*1024:
		return 8192
	case blocks < 4096*1024:
		return 16384
	case blocks < 8192*1024:
		return 32768
	case blocks < 16384*1024:
		return 65536
	case blocks < 32768*1024:
		return 131072
	}
	return 262144
}

// makeJournal allocates the journal (inode 8) and writes its superblock: a
// clean, empty jbd2 journal.
func (w *Writer) makeJournal() error {
	n := journalBlocks(w.geo.blocks)
	runs, err := w.alloc.allocAll(n)
	if err != nil {
		return err
	}
	var exts []extent
	var logical uint32
	for _, r := range runs {
		exts = addExtent(exts, logical, r.start, r.n)
		logical += uint32(r.n)
	}
	in := &inode{mode: sIFREG | 0o600, mtime: time.Unix(w.o.Epoch, 0), links: 1, size: n * blockSize, flags: flagExtents, blocks: n}
	iblock, tree, err := w.extentTree(journalIno, exts)
	if err != nil {
		return err
	}
	in.iblock, in.blocks = iblock, in.blocks+tree
	w.inodes[journalIno] = in
	be := binary.BigEndian
	jsb := make([]byte, blockSize)
	be.PutUint32(jsb[0:], 0xC03B3998) // JBD2 magic
	be.PutUint32(jsb[4:], 4)          // superblock v2
	be.PutUint32(jsb[12:], blockSize)
	be.PutUint32(jsb[16:], uint32(n)) // s_maxlen
	be.PutUint32(jsb[20:], 1)         // s_first
	be.PutUint32(jsb[24:], 1)         // s_sequence
	copy(jsb[48:], w.o.UUID[:])
	be.PutUint32(jsb[64:], 1) // s_nr_users
	return w.writeBlock(runs[0].start, jsb)
}

// writeGroups writes the bitmaps, the group descriptors and the
// superblock with its backups.
func (w *Writer) writeGroups() error {
	g := w.geo
	le := binary.LittleEndian
	inodeCount := uint64(g.groups) * uint64(g.inodesPerGroup)
	usedInodes := newBitmap(inodeCount + 1)
	usedInodes.setRange(1, uint64(len(w.inodes))-1) // reserved inodes count as used
	gdt := make([]byte, int(g.gdtBlocks)*blockSize)
	var freeBlocks, freeInodes uint64
	for grp := uint32(0); grp < g.groups; grp++ {
		start, n := g.groupStart(grp), g.groupBlocks(grp)
		bb := w.alloc.used.bytes(start, n, blockSize)
		firstIno := uint64(grp)*uint64(g.inodesPerGroup) + 1
		ib := usedInodes.bytes(firstIno, uint64(g.inodesPerGroup), blockSize)
		if err := w.writeBlock(g.blockBitmap[grp], bb); err != nil {
			return err
		}
		if err := w.writeBlock(g.inodeBitmap[grp], ib); err != nil {
			return err
		}
		fb := n - w.alloc.used.count(start, n)
		usedIn := usedInodes.count(firstIno, uint64(g.inodesPerGroup))
		fi := uint64(g.inodesPerGroup) - usedIn
		var dirs uint64
		for ino := firstIno; ino < firstIno+uint64(g.inodesPerGroup) && ino < uint64(len(w.inodes)); ino++ {
			if in := w.inodes[ino]; in != nil && in.dir != nil {
				dirs++
			}
		}
		freeBlocks += fb
		freeInodes += fi
		d := gdt[int(grp)*descSize:][:descSize]
		put64 := func(lo, hi int, v uint64) {
			le.PutUint32(d[lo:], uint32(v))
			le.PutUint32(d[hi:], uint32(v>>32))
		}
		put32 := func(lo, hi int, v uint64) {
			le.PutUint16(d[lo:], uint16(v))
			le.PutUint16(d[hi:], uint16(v>>16))
		}
		put64(0x00, 0x20, g.blockBitmap[grp])
		put64(0x04, 0x24, g.inodeBitmap[grp])
		put64(0x08, 0x28, g.inodeTable[grp])
		put32(0x0C, 0x2C, fb)
		put32(0x0E, 0x2E, fi)
		put32(0x10, 0x30, dirs)
		flags := uint16(0x4) // ITABLE_ZEROED
		unused := uint64(g.inodesPerGroup)
		if usedIn > 0 {
			unused = uint64(g.inodesPerGroup) - (min(uint64(len(w.inodes))-1, firstIno+uint64(g.inodesPerGroup)-1) - firstIno + 1)
		} else {
			flags |= 0x1 // INODE_UNINIT
		}
		le.PutUint16(d[0x12:], flags)
		put32(0x1C, 0x32, unused)
		bc, ic := crc(w.seed, bb), crc(w.seed, ib[:g.inodesPerGroup/8])
		put32(0x18, 0x38, uint64(bc))
		put32(0x1A, 0x3A, uint64(ic))
		c := crcU32(w.seed, grp)
		c = crc(c, d[:0x1E])
		c = crc(c, []byte{0, 0})
		c = crc(c, d[0x20:])
		le.PutUint16(d[0x1E:], uint16(c))
	}
	sb := w.superblock(freeBlocks, freeInodes)
	for grp := uint32(0); grp < g.groups; grp++ {
		if !hasSuper(grp) {
			continue
		}
		start := g.groupStart(grp)
		s := bytes.Clone(sb)
		le.PutUint16(s[0x5A:], uint16(grp))
		le.PutUint32(s[0x3FC:], crc(^uint32(0), s[:0x3FC]))
		at := w.off + int64(start)*blockSize
		if grp == 0 {
			at += 1024 // block 0 keeps the boot sector
		}
		if _, err := w.w.WriteAt(s, at); err != nil {
			return fmt.Errorf("%w: %w", errWrite, err)
		}
		if err := w.writeBlock(start+1, gdt); err != nil {
			return err
		}
	}
	return nil
}

func (w *Writer) superblock(freeBlocks, freeInodes uint64) []byte {
	g := w.geo
	le := binary.LittleEndian
	s := make([]byte, 1024)
	inodes := uint64(g.groups) * uint64(g.inodesPerGroup)
	reserved := g.blocks * 5 / 100
	epoch := uint32(w.o.Epoch)
	le.PutUint32(s[0x00:], uint32(inodes))
	le.PutUint32(s[0x04:], uint32(g.blocks))
	le.PutUint32(s[0x08:], uint32(reserved))
	le.PutUint32(s[0x0C:], uint32(freeBlocks))
	le.PutUint32(s[0x10:], uint32(freeInodes))
	le.PutUint32(s[0x14:], 0) // first data block
	le.PutUint32(s[0x18:], 2) // 4 KiB blocks
	le.PutUint32(s[0x1C:], 2)
	le.PutUint32(s[0x20:], blocksPerGroup)
	le.PutUint32(s[0x24:], blocksPerGroup)
	le.PutUint32(s[0x28:], g.inodesPerGroup)
	le.PutUint32(s[0x30:], epoch) // wtime
	le.PutUint16(s[0x36:], 0xFFFF)
	le.PutUint16(s[0x38:], 0xEF53)
	le.PutUint16(s[0x3A:], 1) // clean
	le.PutUint16(s[0x3C:], 1) // errors=continue
	le.PutUint32(s[0x40:], epoch)
	le.PutUint32(s[0x4C:], 1) // dynamic inode sizes
	le.PutUint32(s[0x54:], firstIno)
	le.PutUint16(s[0x58:], inodeSize)
	le.PutUint32(s[0x5C:], 0x4|0x8|0x20)                // has_journal, ext_attr, dir_index
	le.PutUint32(s[0x60:], 0x2|0x40|0x80|0x200)         // filetype, extents, 64bit, flex_bg
	le.PutUint32(s[0x64:], 0x1|0x2|0x8|0x20|0x40|0x400) // sparse_super, large_file, huge_file, dir_nlink, extra_isize, metadata_csum
	copy(s[0x68:], w.o.UUID[:])
	copy(s[0x78:], w.o.Label)
	le.PutUint32(s[0xE0:], journalIno)
	copy(s[0xEC:], w.o.HashSeed[:])
	s[0xFC] = hashHalfMD4
	s[0xFD] = 1 // s_jnl_blocks holds a copy of the journal's i_block
	le.PutUint16(s[0xFE:], descSize)
	le.PutUint32(s[0x100:], 0x4|0x8) // default mount options: user_xattr, acl
	le.PutUint32(s[0x108:], epoch)   // mkfs time
	j := w.inodes[journalIno]
	copy(s[0x10C:0x10C+60], j.iblock[:])
	le.PutUint32(s[0x10C+60:], uint32(j.size>>32))
	le.PutUint32(s[0x10C+64:], uint32(j.size))
	le.PutUint32(s[0x150:], uint32(g.blocks>>32))
	le.PutUint32(s[0x154:], uint32(reserved>>32))
	le.PutUint32(s[0x158:], uint32(freeBlocks>>32))
	le.PutUint16(s[0x15C:], extraIsize)
	le.PutUint16(s[0x15E:], extraIsize)
	le.PutUint32(s[0x160:], 1) // signed directory hash
	s[0x174] = 4               // log_groups_per_flex
	s[0x175] = 1               // crc32c
	return s
}
