package ext4

import (
	"archive/tar"
	"cmp"
	"encoding/binary"
	"fmt"
	"slices"
	"strings"
)

const (
	xattrMagic     = 0xEA020000
	xattrInodeOff  = 128 + extraIsize              // the in-inode area's magic
	xattrInodeRoom = inodeSize - xattrInodeOff - 8 // less the magic and the end marker
	paxXattr       = "SCHILY.xattr."
)

// xattr is one extended attribute as ext4 stores it: the name's namespace
// as an index, the rest of the name, the value in the on-disk form.
type xattr struct {
	index uint8
	name  string
	value []byte
}

func (x xattr) entrySize() int { return (16 + len(x.name) + 3) &^ 3 }
func (x xattr) valueSize() int { return (len(x.value) + 3) &^ 3 }

var xattrPrefixes = []struct {
	prefix string
	index  uint8
}{
	{"user.", 1},
	{"system.posix_acl_access", 2},
	{"system.posix_acl_default", 3},
	{"trusted.", 4},
	{"security.", 6},
}

// xattrsOf reads hdr's xattrs, sorted as ext4 keeps them in a block (by
// index, name length, name).
func xattrsOf(hdr *tar.Header) ([]xattr, error) {
	var xs []xattr
	for k, v := range hdr.PAXRecords {
		full, ok := strings.CutPrefix(k, paxXattr)
		if !ok {
			continue
		}
		x, err := toXattr(full, []byte(v))
		if err != nil {
			return nil, err
		}
		xs = append(xs, x)
	}
	sortXattrs(xs)
	return xs, nil
}

func toXattr(full string, value []byte) (xattr, error) {
	if len(full) > 255 { // Linux's XATTR_NAME_MAX counts the namespace too
		return xattr{}, fmt.Errorf("xattr name %.40q... is %d bytes, longer than Linux's 255", full, len(full))
	}
	for _, p := range xattrPrefixes {
		rest, ok := strings.CutPrefix(full, p.prefix)
		if !ok {
			continue
		}
		if p.index == 2 || p.index == 3 {
			if rest != "" {
				break
			}
			v, err := aclToDisk(value)
			if err != nil {
				return xattr{}, fmt.Errorf("xattr %s: %w", full, err)
			}
			return xattr{index: p.index, value: v}, nil
		}
		if rest == "" || len(rest) > 255 {
			break
		}
		return xattr{index: p.index, name: rest, value: value}, nil
	}
	return xattr{}, fmt.Errorf("xattr %q cannot be stored on ext4", full)
}

// aclToDisk turns a POSIX ACL from the kernel's xattr form (version 2,
// 8-byte entries) into ext4's (version 1; the owner, group, mask and other
// entries without an id).
func aclToDisk(v []byte) ([]byte, error) {
	le := binary.LittleEndian
	if len(v) < 4 || (len(v)-4)%8 != 0 || le.Uint32(v) != 2 {
		return nil, fmt.Errorf("not a POSIX ACL (version 2)")
	}
	out := le.AppendUint32(nil, 1)
	for p := v[4:]; len(p) > 0; p = p[8:] {
		tag, perm, id := le.Uint16(p), le.Uint16(p[2:]), le.Uint32(p[4:])
		out = le.AppendUint16(out, tag)
		out = le.AppendUint16(out, perm)
		switch tag {
		case 0x01, 0x04, 0x10, 0x20: // USER_OBJ, GROUP_OBJ, MASK, OTHER
		case 0x02, 0x08: // USER, GROUP
			out = le.AppendUint32(out, id)
		default:
			return nil, fmt.Errorf("unknown ACL tag %#x", tag)
		}
	}
	return out, nil
}

// mergeXattrs is old with xs set over it, in ext4's order.
func mergeXattrs(old, xs []xattr) []xattr {
	out := slices.Clone(xs)
	for _, o := range old {
		if !slices.ContainsFunc(xs, func(x xattr) bool { return x.index == o.index && x.name == o.name }) {
			out = append(out, o)
		}
	}
	sortXattrs(out)
	return out
}

func sortXattrs(xs []xattr) {
	slices.SortFunc(xs, func(a, b xattr) int {
		return cmp.Or(cmp.Compare(a.index, b.index), cmp.Compare(len(a.name), len(b.name)), strings.Compare(a.name, b.name))
	})
}

// placeXattrs splits xs between the inode (as many as fit, in order) and
// an external block.
func placeXattrs(xs []xattr) (inInode, inBlock []xattr, err error) {
	room := xattrInodeRoom
	i := 0
	for ; i < len(xs); i++ {
		need := xs[i].entrySize() + xs[i].valueSize()
		if need > room {
			break
		}
		room -= need
	}
	inInode, inBlock = xs[:i], xs[i:]
	need := 32 + 4
	for _, x := range inBlock {
		need += x.entrySize() + x.valueSize()
	}
	if len(inBlock) > 0 && need > blockSize {
		return nil, nil, fmt.Errorf("xattrs take %d bytes; ext4 holds at most %d beside the inode", need, blockSize)
	}
	return inInode, inBlock, nil
}

// putXattrs lays entries out from the start of area and values from its
// end; value offsets count from base.
func putXattrs(area []byte, xs []xattr, base int) []uint32 {
	le := binary.LittleEndian
	hashes := make([]uint32, len(xs))
	e, v := 0, len(area)
	for i, x := range xs {
		v -= x.valueSize()
		copy(area[v:], x.value)
		p := area[e:]
		p[0] = uint8(len(x.name))
		p[1] = x.index
		le.PutUint16(p[2:], uint16(v+base))
		le.PutUint32(p[4:], 0) // e_value_inum
		le.PutUint32(p[8:], uint32(len(x.value)))
		hashes[i] = xattrHash(x.name, x.value)
		le.PutUint32(p[12:], hashes[i])
		copy(p[16:], x.name)
		e += x.entrySize()
	}
	return hashes
}

// xattrBlock renders the external block at block number blk.
func (w *Writer) xattrBlock(blk uint64, xs []xattr) []byte {
	le := binary.LittleEndian
	b := make([]byte, blockSize)
	le.PutUint32(b[0:], xattrMagic)
	le.PutUint32(b[4:], 1) // h_refcount
	le.PutUint32(b[8:], 1) // h_blocks
	hashes := putXattrs(b[32:], xs, 32)
	var h uint32
	for _, eh := range hashes {
		h = h<<16 ^ h>>16 ^ eh
	}
	le.PutUint32(b[12:], h)
	var num [8]byte
	le.PutUint64(num[:], blk)
	le.PutUint32(b[16:], crc(crc(w.seed, num[:]), b))
	return b
}
