package ext4

import (
	"encoding/binary"
	"hash/crc32"
	"math/bits"
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// crc is ext4's crc32c: seeded with c, without the final inversion Go's
// crc32 applies (the kernel's crc32c_le).
func crc(c uint32, p []byte) uint32 { return ^crc32.Update(^c, castagnoli, p) }

func crcU32(c, v uint32) uint32 {
	var b [4]byte
	binary.LittleEndian.PutUint32(b[:], v)
	return crc(c, b[:])
}

// The directory index hash: half MD4 as e2fsprogs' dirhash.c computes it,
// with signed chars (EXT2_FLAGS_SIGNED_HASH, what mke2fs sets on x86).
const htreeEOF = 0x7fffffff

func dirHash(name string, seed [4]uint32) (hash, minor uint32) {
	buf := [4]uint32{0x67452301, 0xefcdab89, 0x98badcfe, 0x10325476}
	if seed != [4]uint32{} {
		buf = seed
	}
	var in [8]uint32
	for p := []byte(name); ; p = p[32:] {
		str2hashbuf(p, in[:])
		halfMD4(&buf, &in)
		if len(p) <= 32 {
			break
		}
	}
	hash, minor = buf[1]&^1, buf[2]
	if hash == htreeEOF<<1 {
		hash = (htreeEOF - 1) << 1
	}
	return hash, minor
}

func str2hashbuf(msg []byte, buf []uint32) {
	n := uint32(len(msg))
	pad := n | n<<8
	pad |= pad << 16
	val := pad
	msg = msg[:min(len(msg), len(buf)*4)]
	k := 0
	for i, c := range msg {
		val = uint32(int32(int8(c))) + val<<8
		if i%4 == 3 {
			buf[k] = val
			k++
			val = pad
		}
	}
	if k < len(buf) {
		buf[k] = val
		k++
	}
	for ; k < len(buf); k++ {
		buf[k] = pad
	}
}

func halfMD4(buf *[4]uint32, in *[8]uint32) {
	f := func(x, y, z uint32) uint32 { return z ^ (x & (y ^ z)) }
	g := func(x, y, z uint32) uint32 { return (x & y) + ((x ^ y) & z) }
	h := func(x, y, z uint32) uint32 { return x ^ y ^ z }
	const k2, k3 = 013240474631, 015666365641
	a, b, c, d := buf[0], buf[1], buf[2], buf[3]
	r := func(fn func(x, y, z uint32) uint32, a *uint32, b, c, d, x uint32, s int) {
		*a = bits.RotateLeft32(*a+fn(b, c, d)+x, s)
	}
	r(f, &a, b, c, d, in[0], 3)
	r(f, &d, a, b, c, in[1], 7)
	r(f, &c, d, a, b, in[2], 11)
	r(f, &b, c, d, a, in[3], 19)
	r(f, &a, b, c, d, in[4], 3)
	r(f, &d, a, b, c, in[5], 7)
	r(f, &c, d, a, b, in[6], 11)
	r(f, &b, c, d, a, in[7], 19)

	r(g, &a, b, c, d, in[1]+k2, 3)
	r(g, &d, a, b, c, in[3]+k2, 5)
	r(g, &c, d, a, b, in[5]+k2, 9)
	r(g, &b, c, d, a, in[7]+k2, 13)
	r(g, &a, b, c, d, in[0]+k2, 3)
	r(g, &d, a, b, c, in[2]+k2, 5)
	r(g, &c, d, a, b, in[4]+k2, 9)
	r(g, &b, c, d, a, in[6]+k2, 13)

	r(h, &a, b, c, d, in[3]+k3, 3)
	r(h, &d, a, b, c, in[7]+k3, 9)
	r(h, &c, d, a, b, in[2]+k3, 11)
	r(h, &b, c, d, a, in[6]+k3, 15)
	r(h, &a, b, c, d, in[1]+k3, 3)
	r(h, &d, a, b, c, in[5]+k3, 9)
	r(h, &c, d, a, b, in[0]+k3, 11)
	r(h, &b, c, d, a, in[4]+k3, 15)

	buf[0] += a
	buf[1] += b
	buf[2] += c
	buf[3] += d
}

// xattrHash is ext4_xattr_hash_entry: over the name, then the value's
// little-endian words.
func xattrHash(name string, value []byte) uint32 {
	var h uint32
	for i := 0; i < len(name); i++ {
		h = h<<5 ^ h>>27 ^ uint32(name[i])
	}
	padded := make([]byte, (len(value)+3)&^3)
	copy(padded, value)
	for i := 0; i < len(padded); i += 4 {
		h = h<<16 ^ h>>16 ^ binary.LittleEndian.Uint32(padded[i:])
	}
	return h
}
