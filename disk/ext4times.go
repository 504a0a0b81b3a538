package disk

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"os"
	"slices"
	"strings"
)

// fixInodeTimes sets the atime and ctime of every used inode of the ext4
// filesystem at off in f to epoch, and clears their nanoseconds, puts the
// xattrs stored in the inode in a fixed order, then recomputes each inode's
// checksum.
//
// mkfs.ext4 -d copies atime and ctime from the source tree, and a process
// cannot set a file's ctime, so without this two builds of one tree differ.
// E2FSPROGS_FAKE_TIME only covers the times mkfs makes up itself. It also
// stores xattrs in the order the host lists them, which is the order they
// were set on some filesystems and a hash order on others.
func fixInodeTimes(f *os.File, off int64, epoch uint32) error {
	sb := make([]byte, 1024)
	if _, err := f.ReadAt(sb, off+1024); err != nil {
		return err
	}
	le := binary.LittleEndian
	if le.Uint16(sb[0x38:]) != 0xEF53 {
		return errors.New("ext4: bad superblock magic")
	}
	blockSize := int64(1024) << le.Uint32(sb[0x18:])
	inodesPerGroup := int64(le.Uint32(sb[0x28:]))
	inodesCount := int64(le.Uint32(sb[0x00:]))
	inodeSize := int64(le.Uint16(sb[0x58:]))
	firstIno := int64(le.Uint32(sb[0x54:]))
	firstData := int64(le.Uint32(sb[0x14:]))
	incompat, roCompat := le.Uint32(sb[0x60:]), le.Uint32(sb[0x64:])
	descSize := int64(32)
	if incompat&0x80 != 0 { // 64bit
		descSize = int64(le.Uint16(sb[0xFE:]))
	}
	csum := roCompat&0x400 != 0 // metadata_csum
	var seed uint32
	if incompat&0x2000 != 0 { // csum_seed
		seed = le.Uint32(sb[0x270:])
	} else {
		seed = crcRaw(^uint32(0), sb[0x68:0x78])
	}
	groups := (inodesCount + inodesPerGroup - 1) / inodesPerGroup
	gdt := make([]byte, groups*descSize)
	if _, err := f.ReadAt(gdt, off+(firstData+1)*blockSize); err != nil {
		return fmt.Errorf("ext4: reading group descriptors: %w", err)
	}
	bitmap := make([]byte, inodesPerGroup/8)
	table := make([]byte, inodesPerGroup*inodeSize)
	for g := int64(0); g < groups; g++ {
		d := gdt[g*descSize : (g+1)*descSize]
		if le.Uint16(d[0x12:])&0x1 != 0 { // INODE_UNINIT: no inode in use
			continue
		}
		bm, it := int64(le.Uint32(d[0x04:])), int64(le.Uint32(d[0x08:]))
		if descSize >= 64 {
			bm |= int64(le.Uint32(d[0x24:])) << 32
			it |= int64(le.Uint32(d[0x28:])) << 32
		}
		if _, err := f.ReadAt(bitmap, off+bm*blockSize); err != nil {
			return err
		}
		if _, err := f.ReadAt(table, off+it*blockSize); err != nil {
			return err
		}
		dirty := false
		for i := int64(0); i < inodesPerGroup; i++ {
			ino := g*inodesPerGroup + i + 1
			if bitmap[i/8]&(1<<(i%8)) == 0 || (ino < firstIno && ino != 2) {
				continue
			}
			in := table[i*inodeSize : (i+1)*inodeSize]
			le.PutUint32(in[0x08:], epoch) // atime
			le.PutUint32(in[0x0C:], epoch) // ctime
			extra := int64(0)
			if inodeSize > 128 {
				extra = int64(le.Uint16(in[0x80:]))
			}
			for _, o := range []int64{0x84, 0x8C} { // ctime_extra, atime_extra
				if 128+extra >= o+4 {
					le.PutUint32(in[o:], 0)
				}
			}
			if inodeSize > 128 {
				sortInodeXattrs(in[min(128+extra, inodeSize):])
			}
			if csum {
				hasHi := 128+extra >= 0x84
				in[0x7C], in[0x7D] = 0, 0
				if hasHi {
					in[0x82], in[0x83] = 0, 0
				}
				var n [4]byte
				le.PutUint32(n[:], uint32(ino))
				c := crcRaw(seed, n[:])
				c = crcRaw(c, in[0x64:0x68]) // generation
				c = crcRaw(c, in)
				le.PutUint16(in[0x7C:], uint16(c))
				if hasHi {
					le.PutUint16(in[0x82:], uint16(c>>16))
				}
			}
			dirty = true
		}
		if dirty {
			if _, err := f.WriteAt(table, off+it*blockSize); err != nil {
				return err
			}
		}
	}
	return nil
}

// sortInodeXattrs rewrites the xattrs stored in an inode's extra space (b
// starts after i_extra_isize) in one canonical layout: entries ordered by
// name index, name length and name (the order ext4 keeps in xattr blocks),
// then their values packed from the end of the space in the same order.
// mkfs.ext4 lays both out in the order the host listed the xattrs. Entry
// hashes cover only names and values, so they stay valid. Anything that does
// not parse, or a value kept in its own inode, leaves b as it is.
func sortInodeXattrs(b []byte) {
	le := binary.LittleEndian
	if len(b) < 8 || le.Uint32(b) != 0xEA020000 {
		return
	}
	area := b[4:] // value offsets count from here
	type xattr struct{ entry, value []byte }
	var xs []xattr
	pos := 0
	for {
		if pos+4 > len(area) {
			return
		}
		if le.Uint32(area[pos:]) == 0 {
			break
		}
		e := area[pos:]
		size := (16 + int(e[0]) + 3) &^ 3
		off, vlen := int(le.Uint16(e[2:])), int(le.Uint32(e[8:]))
		if pos+size > len(area) || le.Uint32(e[4:]) != 0 || off+vlen > len(area) {
			return
		}
		xs = append(xs, xattr{slices.Clone(e[:size]), slices.Clone(area[off : off+vlen])})
		pos += size
	}
	key := func(e []byte) string { return string([]byte{e[1], e[0]}) + string(e[16:16+int(e[0])]) }
	slices.SortStableFunc(xs, func(x, y xattr) int { return strings.Compare(key(x.entry), key(y.entry)) })
	out := make([]byte, len(area))
	at, end := 0, len(area)
	for _, x := range xs {
		if len(x.value) > 0 {
			end -= (len(x.value) + 3) &^ 3
			le.PutUint16(x.entry[2:], uint16(end))
			copy(out[end:], x.value)
		}
		at += copy(out[at:], x.entry)
	}
	if at+4 > end {
		return // cannot happen for a valid inode; keep it as it was
	}
	copy(area, out)
}

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// crcRaw is CRC-32C without the usual inversions, as ext4 chains it.
func crcRaw(c uint32, p []byte) uint32 { return ^crc32.Update(^c, castagnoli, p) }
