package ext4

import (
	"cmp"
	"encoding/binary"
	"fmt"
	"slices"
)

const (
	dirTail      = 12 // the checksum's fake entry at each block's end
	dirRoom      = blockSize - dirTail
	dxRootLimit  = (blockSize-32)/8 - 1 // less the dx_tail
	dxNodeLimit  = (blockSize-8)/8 - 1
	hashHalfMD4  = 1
	lostFoundLen = 4 // mke2fs makes lost+found 16 KiB, room to reconnect files without allocating
)

type dir struct {
	parent   uint32
	children []dirent
}

type dirent struct {
	name  string
	ino   uint32
	ftype uint8
	hash  uint32
	minor uint32
}

func recLen(name string) int { return (8 + len(name) + 3) &^ 3 }

// putDirent writes one entry at b with record length rl.
func putDirent(b []byte, ino uint32, rl int, name string, ftype uint8) {
	le := binary.LittleEndian
	le.PutUint32(b[0:], ino)
	le.PutUint16(b[4:], uint16(rl))
	b[6] = uint8(len(name))
	b[7] = ftype
	copy(b[8:], name)
}

// leafBlocks packs entries into linear directory blocks, each ending in the
// checksum entry (filled in by sealLeaf).
func leafBlocks(ents []dirent) [][]byte {
	var blocks [][]byte
	var b []byte
	used, last := 0, -1
	flush := func() {
		if b == nil {
			return
		}
		if last >= 0 { // the last entry's record reaches the tail
			binary.LittleEndian.PutUint16(b[last+4:], uint16(dirRoom-last))
		}
		blocks = append(blocks, b)
		b = nil
	}
	for _, e := range ents {
		rl := recLen(e.name)
		if b == nil || used+rl > dirRoom {
			flush()
			b = make([]byte, blockSize)
			used, last = 0, -1
		}
		putDirent(b[used:], e.ino, rl, e.name, e.ftype)
		last = used
		used += rl
	}
	flush()
	return blocks
}

func emptyLeaf() []byte {
	b := make([]byte, blockSize)
	putDirent(b, 0, dirRoom, "", 0)
	return b
}

// sealLeaf writes a leaf block's checksum entry.
func (w *Writer) sealLeaf(ino uint32, b []byte) {
	le := binary.LittleEndian
	t := b[dirRoom:]
	le.PutUint32(t[0:], 0)
	le.PutUint16(t[4:], dirTail)
	t[6], t[7] = 0, 0xDE
	le.PutUint32(t[8:], crc(w.inodeSeed(ino), b[:dirRoom]))
}

// dirBlocks renders directory ino: linear when it fits in one block,
// hashed (an htree, as the kernel builds for large directories) when not.
func (w *Writer) dirBlocks(ino uint32, d *dir) ([][]byte, bool, error) {
	dots := []dirent{{name: ".", ino: ino, ftype: 2}, {name: "..", ino: d.parent, ftype: 2}}
	size := recLen(".") + recLen("..")
	for _, c := range d.children {
		size += recLen(c.name)
	}
	if size <= dirRoom {
		blocks := leafBlocks(append(dots, d.children...))
		if ino == lostFoundIno {
			for len(blocks) < lostFoundLen {
				blocks = append(blocks, emptyLeaf())
			}
		}
		for _, b := range blocks {
			w.sealLeaf(ino, b)
		}
		return blocks, false, nil
	}
	blocks, err := w.htree(ino, d)
	return blocks, true, err
}

type dxEntry struct {
	hash  uint32
	block uint32
}

func (w *Writer) htree(ino uint32, d *dir) ([][]byte, error) {
	ents := slices.Clone(d.children)
	for i := range ents {
		ents[i].hash, ents[i].minor = dirHash(ents[i].name, w.hashSeed)
	}
	slices.SortFunc(ents, func(a, b dirent) int {
		return cmp.Or(cmp.Compare(a.hash, b.hash), cmp.Compare(a.minor, b.minor), cmp.Compare(a.name, b.name))
	})
	// Leaves in hash order; a leaf that starts inside a run of equal
	// hashes carries the collision bit, as the kernel's splits do.
	var leaves [][]byte
	var index []dxEntry
	start := 0
	for start < len(ents) {
		used, end := 0, start
		for end < len(ents) && used+recLen(ents[end].name) <= dirRoom {
			used += recLen(ents[end].name)
			end++
		}
		h := ents[start].hash
		if start > 0 && ents[start-1].hash == h {
			h |= 1
		}
		if start == 0 {
			h = 0 // the first entry's hash is implicit
		}
		leaves = append(leaves, leafBlocks(ents[start:end])[0])
		index = append(index, dxEntry{hash: h})
		start = end
	}
	var blocks [][]byte
	root := make([]byte, blockSize)
	blocks = append(blocks, root)
	putDirent(root[0:], ino, 12, ".", 2)
	putDirent(root[12:], d.parent, blockSize-12, "..", 2)
	root[24+4] = hashHalfMD4
	root[24+5] = 8 // info_length
	if len(leaves) <= dxRootLimit {
		for i := range index {
			index[i].block = uint32(1 + i)
		}
		w.putDx(ino, root, 32, dxRootLimit, index)
		blocks = append(blocks, leaves...)
	} else {
		nodes := (len(leaves) + dxNodeLimit - 1) / dxNodeLimit
		if nodes > dxRootLimit {
			return nil, fmt.Errorf("directory of %d entries is beyond a two-level index", len(ents))
		}
		root[24+6] = 1 // indirect_levels
		var top []dxEntry
		for n := 0; n < nodes; n++ {
			part := slices.Clone(index[n*dxNodeLimit : min((n+1)*dxNodeLimit, len(index))])
			top = append(top, dxEntry{hash: part[0].hash, block: uint32(1 + n)})
			for i := range part {
				part[i].block = uint32(1 + nodes + n*dxNodeLimit + i)
			}
			nb := make([]byte, blockSize)
			putDirent(nb, 0, blockSize, "", 0)
			w.putDx(ino, nb, 8, dxNodeLimit, part)
			blocks = append(blocks, nb)
		}
		w.putDx(ino, root, 32, dxRootLimit, top)
		blocks = append(blocks, leaves...)
	}
	for _, b := range blocks[len(blocks)-len(leaves):] {
		w.sealLeaf(ino, b)
	}
	return blocks, nil
}

// putDx writes an index (count/limit, entries, checksummed tail) at off.
func (w *Writer) putDx(ino uint32, b []byte, off, limit int, ents []dxEntry) {
	le := binary.LittleEndian
	le.PutUint16(b[off:], uint16(limit))
	le.PutUint16(b[off+2:], uint16(len(ents)))
	le.PutUint32(b[off+4:], ents[0].block)
	for i, e := range ents[1:] {
		p := b[off+8+8*i:]
		le.PutUint32(p[0:], e.hash)
		le.PutUint32(p[4:], e.block)
	}
	tail := off + limit*8
	c := crc(w.inodeSeed(ino), b[:off+len(ents)*8])
	c = crc(c, b[tail:tail+4])
	c = crc(c, []byte{0, 0, 0, 0})
	le.PutUint32(b[tail+4:], c)
}
