package ext4

import "encoding/binary"

const (
	extentMagic   = 0xF30A
	maxExtentLen  = 32768 // an initialized extent's limit
	inodeExtents  = 4     // entries that fit in i_block after the header
	blockExtents  = (blockSize - 12 - 4) / 12
	extentHdrSize = 12
)

// extent maps n logical blocks from logical to physical blocks at start.
type extent struct {
	logical uint32
	start   uint64
	n       uint32
}

// addExtent appends blocks [start, start+n) at logical, merging with the
// last extent where they continue it.
func addExtent(exts []extent, logical uint32, start, n uint64) []extent {
	for n > 0 {
		if k := len(exts); k > 0 {
			last := &exts[k-1]
			if last.logical+last.n == logical && last.start+uint64(last.n) == start && last.n < maxExtentLen {
				take := min(uint64(maxExtentLen-last.n), n)
				last.n += uint32(take)
				logical += uint32(take)
				start += take
				n -= take
				continue
			}
		}
		take := min(n, maxExtentLen)
		exts = append(exts, extent{logical: logical, start: start, n: uint32(take)})
		logical += uint32(take)
		start += take
		n -= take
	}
	return exts
}

// node is one entry of an extent tree level: a leaf extent, or an index
// entry pointing at a block of the level below.
type node struct {
	logical uint32
	start   uint64 // physical block: of the data (leaf) or of the child
	n       uint32 // leaf only
}

// extentTree builds the inode's i_block for exts, writing any tree blocks
// it needs (with their checksums) and returning how many it wrote.
func (w *Writer) extentTree(ino uint32, exts []extent) (iblock [60]byte, blocks uint64, err error) {
	level := make([]node, len(exts))
	for i, e := range exts {
		level[i] = node{logical: e.logical, start: e.start, n: e.n}
	}
	depth := uint16(0)
	for len(level) > inodeExtents {
		var up []node
		for i := 0; i < len(level); i += blockExtents {
			chunk := level[i:min(i+blockExtents, len(level))]
			s, _, err := w.alloc.alloc(1)
			if err != nil {
				return iblock, 0, err
			}
			b := make([]byte, blockSize)
			putExtentNode(b, chunk, depth, blockExtents)
			binary.LittleEndian.PutUint32(b[blockSize-4:], crc(w.inodeSeed(ino), b[:blockSize-4]))
			if err := w.writeBlock(s, b); err != nil {
				return iblock, 0, err
			}
			blocks++
			up = append(up, node{logical: chunk[0].logical, start: s})
		}
		level = up
		depth++
	}
	putExtentNode(iblock[:], level, depth, inodeExtents)
	return iblock, blocks, nil
}

// putExtentNode writes a header and entries (leaf extents at depth 0,
// index entries above) into b.
func putExtentNode(b []byte, entries []node, depth uint16, limit int) {
	le := binary.LittleEndian
	le.PutUint16(b[0:], extentMagic)
	le.PutUint16(b[2:], uint16(len(entries)))
	le.PutUint16(b[4:], uint16(limit))
	le.PutUint16(b[6:], depth)
	for i, e := range entries {
		p := b[extentHdrSize+12*i:]
		le.PutUint32(p[0:], e.logical)
		if depth == 0 {
			le.PutUint16(p[4:], uint16(e.n))
			le.PutUint16(p[6:], uint16(e.start>>32))
			le.PutUint32(p[8:], uint32(e.start))
		} else {
			le.PutUint32(p[4:], uint32(e.start))
			le.PutUint16(p[8:], uint16(e.start>>32))
		}
	}
}
