package ext4

import (
	"encoding/binary"
	"fmt"
	"time"
)

const (
	sIFSOCK = 0o140000
	sIFLNK  = 0o120000
	sIFREG  = 0o100000
	sIFBLK  = 0o060000
	sIFDIR  = 0o040000
	sIFCHR  = 0o020000
	sIFIFO  = 0o010000

	flagIndex   = 0x1000
	flagExtents = 0x80000
)

// inode is what the writer keeps of each inode until Close.
type inode struct {
	mode      uint16
	uid, gid  uint32
	size      uint64
	mtime     time.Time
	links     uint32
	flags     uint32
	iblock    [60]byte
	blocks    uint64  // filesystem blocks: data, tree and xattr block
	xattrs    []xattr // those in the inode
	allXattrs []xattr // and those in the block too
	xblock    uint64  // external xattr block
	dir       *dir
}

// fileType is the directory entry's file type for mode.
func fileType(mode uint16) uint8 {
	switch mode & 0o170000 {
	case sIFREG:
		return 1
	case sIFDIR:
		return 2
	case sIFCHR:
		return 3
	case sIFBLK:
		return 4
	case sIFIFO:
		return 5
	case sIFSOCK:
		return 6
	case sIFLNK:
		return 7
	}
	return 0
}

// Times ext4 can store: a signed 32-bit second count plus two epoch bits.
var (
	minTime = time.Unix(-1<<31, 0)
	maxTime = time.Unix(3<<32+1<<31-1, 999999999)
)

// encodeTime splits t into i_*time and i_*time_extra.
func encodeTime(t time.Time) (uint32, uint32) {
	sec := t.Unix()
	lo := int64(int32(sec))
	epoch := uint32((sec-lo)>>32) & 3
	return uint32(lo), epoch | uint32(t.Nanosecond())<<2
}

func checkTime(t time.Time) error {
	if t.Before(minTime) || t.After(maxTime) {
		return fmt.Errorf("time %s is outside what ext4 stores (1901-12-13 to 2446-05-10)", t.UTC().Format(time.RFC3339))
	}
	return nil
}

// inodeSeed is the checksum seed of inode ino (generation 0).
func (w *Writer) inodeSeed(ino uint32) uint32 { return crcU32(crcU32(w.seed, ino), 0) }

// encode renders in as inode ino.
func (w *Writer) encode(ino uint32, in *inode) []byte {
	le := binary.LittleEndian
	b := make([]byte, inodeSize)
	le.PutUint16(b[0x00:], in.mode)
	le.PutUint16(b[0x02:], uint16(in.uid))
	le.PutUint32(b[0x04:], uint32(in.size))
	at, atx := encodeTime(time.Unix(w.o.Epoch, 0))
	mt, mtx := encodeTime(in.mtime)
	le.PutUint32(b[0x08:], at) // atime
	le.PutUint32(b[0x0C:], at) // ctime
	le.PutUint32(b[0x10:], mt)
	le.PutUint16(b[0x18:], uint16(in.gid))
	le.PutUint16(b[0x1A:], uint16(in.links))
	sectors := in.blocks * (blockSize / 512)
	le.PutUint32(b[0x1C:], uint32(sectors))
	le.PutUint32(b[0x20:], in.flags)
	copy(b[0x28:0x64], in.iblock[:])
	le.PutUint32(b[0x68:], uint32(in.xblock))
	le.PutUint32(b[0x6C:], uint32(in.size>>32))
	le.PutUint16(b[0x74:], uint16(sectors>>32))
	le.PutUint16(b[0x76:], uint16(in.xblock>>32))
	le.PutUint16(b[0x78:], uint16(in.uid>>16))
	le.PutUint16(b[0x7A:], uint16(in.gid>>16))
	le.PutUint16(b[0x80:], extraIsize)
	le.PutUint32(b[0x84:], atx) // ctime_extra
	le.PutUint32(b[0x88:], mtx)
	le.PutUint32(b[0x8C:], atx) // atime_extra
	le.PutUint32(b[0x90:], at)  // crtime
	le.PutUint32(b[0x94:], atx)
	if len(in.xattrs) > 0 {
		le.PutUint32(b[xattrInodeOff:], xattrMagic)
		putXattrs(b[xattrInodeOff+4:], in.xattrs, 0)
	}
	c := crc(w.inodeSeed(ino), b)
	le.PutUint16(b[0x7C:], uint16(c))
	le.PutUint16(b[0x82:], uint16(c>>16))
	return b
}
