package ext4

import (
	"fmt"
	"math/bits"
)

// The geometry mke2fs picks for a filesystem of this kind (its "ext4"
// profile with a 16 KiB inode ratio): every choice is fixed, so the layout
// depends only on the size.
const (
	blockSize      = 4096
	inodeSize      = 256
	blocksPerGroup = blockSize * 8
	inodeRatio     = 16384
	flexGroups     = 16 // log_groups_per_flex 4
	descSize       = 64 // 64bit feature
	firstIno       = 11
	rootIno        = 2
	journalIno     = 8
	lostFoundIno   = 11
	extraIsize     = 32 // i_extra_isize: through i_projid
	minSize        = 16 << 20
	maxBlocks      = 1 << 32 // 16 TiB
)

// geometry is where every group's metadata lies.
type geometry struct {
	blocks         uint64
	groups         uint32
	inodesPerGroup uint32
	itableBlocks   uint32 // per group
	gdtBlocks      uint32
	blockBitmap    []uint64 // per group
	inodeBitmap    []uint64
	inodeTable     []uint64
}

// hasSuper says whether group g holds a superblock copy (sparse_super:
// groups 0, 1 and powers of 3, 5 and 7).
func hasSuper(g uint32) bool {
	if g <= 1 {
		return true
	}
	for _, b := range []uint32{3, 5, 7} {
		n := b
		for n < g {
			n *= b
		}
		if n == g {
			return true
		}
	}
	return false
}

func (g *geometry) groupStart(n uint32) uint64 { return uint64(n) * blocksPerGroup }

func (g *geometry) groupBlocks(n uint32) uint64 {
	return min(g.blocks-g.groupStart(n), blocksPerGroup)
}

// superBlocks is how many blocks a group's superblock copy and descriptor
// table take at its start (0 without a copy).
func (g *geometry) superBlocks(n uint32) uint64 {
	if !hasSuper(n) {
		return 0
	}
	return 1 + uint64(g.gdtBlocks)
}

func plan(size int64) (*geometry, error) {
	if size < minSize || size%blockSize != 0 {
		return nil, fmt.Errorf("ext4: size %d bytes: need a multiple of 4096 of at least %d MiB", size, minSize>>20)
	}
	blocks := uint64(size / blockSize)
	// The writer keeps a bitmap of every block in memory (blocks/8 bytes)
	// and one descriptor table in group 0: 16 TiB keeps both small.
	if blocks > maxBlocks {
		return nil, fmt.Errorf("ext4: size %d bytes: this writer makes filesystems of at most 16 TiB", size)
	}
	for {
		g, ok := tryPlan(blocks)
		if ok {
			return g, nil
		}
		// A last group too small for its own metadata is dropped (mke2fs
		// drops one too small for its overhead; this rule drops a little
		// more often, costing at most one group's blocks).
		blocks = uint64(g.groups-1) * blocksPerGroup
	}
}

func tryPlan(blocks uint64) (*geometry, bool) {
	g := &geometry{blocks: blocks}
	g.groups = uint32((blocks + blocksPerGroup - 1) / blocksPerGroup)
	inodes := blocks * blockSize / inodeRatio
	ipg := (inodes + uint64(g.groups) - 1) / uint64(g.groups)
	const perBlock = blockSize / inodeSize
	ipg = (ipg + perBlock - 1) / perBlock * perBlock
	ipg = max(min(ipg, blocksPerGroup), perBlock)
	g.inodesPerGroup = uint32(ipg)
	g.itableBlocks = uint32(ipg * inodeSize / blockSize)
	g.gdtBlocks = uint32((uint64(g.groups)*descSize + blockSize - 1) / blockSize)
	g.blockBitmap = make([]uint64, g.groups)
	g.inodeBitmap = make([]uint64, g.groups)
	g.inodeTable = make([]uint64, g.groups)
	// flex_bg: each run of 16 groups keeps its bitmaps and inode tables
	// together at the start of the run's first group: the block bitmaps,
	// then the inode bitmaps, then the inode tables.
	for first := uint32(0); first < g.groups; first += flexGroups {
		n := min(flexGroups, g.groups-first)
		at := g.groupStart(first) + g.superBlocks(first)
		need := uint64(n)*2 + uint64(n)*uint64(g.itableBlocks)
		if at+need > g.groupStart(first)+g.groupBlocks(first) {
			if g.groups == 1 {
				return g, true // cannot shrink further: plan() refuses sizes this small
			}
			return g, false
		}
		for i := uint32(0); i < n; i++ {
			g.blockBitmap[first+i] = at + uint64(i)
			g.inodeBitmap[first+i] = at + uint64(n) + uint64(i)
			g.inodeTable[first+i] = at + 2*uint64(n) + uint64(i)*uint64(g.itableBlocks)
		}
	}
	// The last group must hold more than its superblock copy.
	last := g.groups - 1
	if g.groups > 1 && g.groupBlocks(last) < g.superBlocks(last)+64 {
		return g, false
	}
	return g, true
}

// bitmap is a set of block or inode numbers.
type bitmap []uint64

func newBitmap(n uint64) bitmap { return make(bitmap, (n+63)/64) }

func (b bitmap) set(i uint64)      { b[i/64] |= 1 << (i % 64) }
func (b bitmap) get(i uint64) bool { return b[i/64]&(1<<(i%64)) != 0 }
func (b bitmap) clear(i uint64)    { b[i/64] &^= 1 << (i % 64) }

func (b bitmap) setRange(start, n uint64) {
	for i := start; i < start+n; i++ {
		b.set(i)
	}
}

// count says how many of [start, start+n) are set.
func (b bitmap) count(start, n uint64) uint64 {
	var c uint64
	for i := start; i < start+n; {
		if i%64 == 0 && i+64 <= start+n {
			c += uint64(bits.OnesCount64(b[i/64]))
			i += 64
			continue
		}
		if b.get(i) {
			c++
		}
		i++
	}
	return c
}

// bytes renders bits [start, start+n) as an on-disk bitmap of size bytes,
// padded with ones past n as e2fsck expects.
func (b bitmap) bytes(start, n uint64, size int) []byte {
	out := make([]byte, size)
	for i := uint64(0); i < uint64(size)*8; i++ {
		if i >= n || b.get(start+i) {
			out[i/8] |= 1 << (i % 8)
		}
	}
	return out
}
