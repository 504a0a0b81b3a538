package ext4_test

// The property test of issue 12: seeded random trees of every entry type go
// through the writer; e2fsck must find nothing, and the filesystem, mounted
// read-only, must hold exactly the input, field by field.
//
//	go test ./disk/ext4 -run Property -v                       # the default run
//	go test ./disk/ext4 -run Property -v -ext4.seed=7          # another tree
//	go test ./disk/ext4 -run Property -v -ext4.long -timeout 1h
//	go test ./disk/ext4 -run Property -v -ext4.oracle-mkfs     # check the harness
//
// The mount needs root; without it the test stops after e2fsck.

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"hash"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime/debug"
	"sort"
	"strconv"
	"strings"
	"testing"
	"testing/iotest"
	"time"

	"golang.org/x/sys/unix"

	"github.com/layerimg/layerimg/disk/ext4"
)

var (
	flagSeed    = flag.Uint64("ext4.seed", 1, "seed of the property test's random tree")
	flagEntries = flag.Int("ext4.entries", 0, "random entries in the property test's tree (0: 3000, or 20000 with -ext4.long)")
	flagBigDir  = flag.Int("ext4.bigdir", -1, "entries of the property test's one big directory (-1: 100000; 0: none)")
	flagLong    = flag.Bool("ext4.long", false, "a longer property run: three seeds from -ext4.seed, 20,000 random entries each, a 16 GiB sparse file, a directory of 66,000 subdirectories, an 8 GiB filesystem")
	flagKeep    = flag.String("ext4.keep", "", "directory to copy the image of a failed property run into (sparse)")
)

const (
	blockSize = 4096
	testEpoch = 1700000000 // 2023-11-14, in the past so e2fsck finds no future times
	// The range of ext4 times with 256-byte inodes: a signed 32-bit second
	// and two epoch bits, 1901-12-13T20:45:52Z to 2446-05-10T22:38:55Z.
	minTime = -1 << 31
	maxTime = 1<<34 - 1 - 1<<31
)

// genConfig sizes one random tree.
type genConfig struct {
	seed        uint64
	entries     int   // random entries after the fixed ones
	bigDir      int   // entries of the one big directory (0: none)
	hugeSize    int64 // logical size of the huge sparse file
	fragExtents int   // data extents of the fragmented file
	denseSize   int64 // a file with no holes, longer than an extent's 128 MiB (0: none)
	deep        int   // depth of the deep chain of 200-byte names
	manySubdirs int   // a directory with this many subdirectories (0: none)
	rootEntry   bool  // the stream names the root directory
	variations  bool  // "./" prefixes, type bits in Mode, implicit and late directories
	fsSize      int64 // Options.Size
}

func defaultConfig(seed uint64) genConfig {
	c := genConfig{
		seed: seed, entries: 3000, bigDir: 100000,
		hugeSize: 1<<32 + 3*blockSize + 123, fragExtents: 1500, denseSize: 129<<20 + 5, deep: 40,
		rootEntry: true, variations: true, fsSize: 2 << 30,
	}
	if *flagLong {
		c.entries, c.hugeSize, c.manySubdirs, c.fsSize = 20000, 16<<30+4095, 66000, 8<<30
	}
	if *flagEntries > 0 {
		c.entries = *flagEntries
	}
	if *flagBigDir >= 0 {
		c.bigDir = *flagBigDir
	}
	return c
}

func testOptions(seed uint64, size int64) ext4.Options {
	r := rand.New(rand.NewPCG(seed, 0x5eed))
	o := ext4.Options{Size: size, Label: fmt.Sprintf("prop%d", seed%1000000), Epoch: testEpoch}
	for i := range o.UUID {
		o.UUID[i] = byte(r.Uint32())
		o.HashSeed[i] = byte(r.Uint32())
	}
	return o
}

// ---------------------------------------------------------------------------
// Contents: a size and runs of pseudo-random bytes; the rest is zeros. A
// reader makes the bytes on the fly, so a 16 GiB file costs no memory.

type seg struct {
	off, n int64
	seed   uint64
}

type content struct {
	size int64
	segs []seg // sorted, disjoint, inside size
}

func mix(x uint64) uint64 { // splitmix64
	x += 0x9e3779b97f4a7c15
	x = (x ^ x>>30) * 0xbf58476d1ce4e5b9
	x = (x ^ x>>27) * 0x94d049bb133111eb
	return x ^ x>>31
}

// readAt fills p with the bytes at off (p must end inside the file).
func (c *content) readAt(p []byte, off int64) {
	clear(p)
	end := off + int64(len(p))
	i := sort.Search(len(c.segs), func(i int) bool { return c.segs[i].off+c.segs[i].n > off })
	for ; i < len(c.segs) && c.segs[i].off < end; i++ {
		s := c.segs[i]
		lo, hi := max(s.off, off), min(s.off+s.n, end)
		for pos := lo; pos < hi; {
			w := mix(s.seed + uint64(pos>>3))
			if pos&7 == 0 && hi-pos >= 8 {
				binary.LittleEndian.PutUint64(p[pos-off:], w)
				pos += 8
				continue
			}
			for b := pos & 7; b < 8 && pos < hi; b++ {
				p[pos-off] = byte(w >> (8 * b))
				pos++
			}
		}
	}
}

// check panics unless the runs are sorted, disjoint and inside the file:
// readAt and digest depend on it.
func (c *content) check() {
	end := int64(0)
	for _, s := range c.segs {
		if s.off < end || s.n <= 0 || s.off+s.n > c.size {
			panic(fmt.Sprintf("generator: bad run %+v in a file of %d bytes (previous run ends at %d)", s, c.size, end))
		}
		end = s.off + s.n
	}
}

type contentReader struct {
	c   *content
	pos int64
}

func (r *contentReader) Read(p []byte) (int, error) {
	if r.pos >= r.c.size {
		return 0, io.EOF
	}
	if rest := r.c.size - r.pos; int64(len(p)) > rest {
		p = p[:rest]
	}
	r.c.readAt(p, r.pos)
	r.pos += int64(len(p))
	return len(p), nil
}

var zeroBlock [blockSize]byte

// blockDigest hashes a file as its size and its blocks that are not all
// zero, each with its index: equal digests mean equal bytes, and a sparse
// file is hashed without reading its holes.
type blockDigest struct {
	h        hash.Hash
	buf      [16]byte
	zeroData int64 // whole all-zero blocks met in data (not in holes)
}

func newBlockDigest() *blockDigest { return &blockDigest{h: sha256.New()} }

func (d *blockDigest) block(idx int64, b []byte, data bool) {
	if bytes.Equal(b, zeroBlock[:len(b)]) {
		if data && len(b) == blockSize {
			d.zeroData++
		}
		return
	}
	binary.LittleEndian.PutUint64(d.buf[:8], uint64(idx))
	binary.LittleEndian.PutUint64(d.buf[8:], uint64(len(b)))
	d.h.Write(d.buf[:])
	d.h.Write(b)
}

func (d *blockDigest) sum(size int64) string {
	binary.LittleEndian.PutUint64(d.buf[:8], uint64(size))
	d.h.Write(d.buf[:8])
	return hex.EncodeToString(d.h.Sum(nil))
}

func (c *content) digest() string {
	d := newBlockDigest()
	buf := make([]byte, blockSize)
	last := int64(-1)
	for _, s := range c.segs {
		for idx := s.off / blockSize; idx*blockSize < s.off+s.n; idx++ {
			if idx <= last {
				continue
			}
			n := min(blockSize, c.size-idx*blockSize)
			c.readAt(buf[:n], idx*blockSize)
			d.block(idx, buf[:n], false)
			last = idx
		}
	}
	return d.sum(c.size)
}

// fileDigest is blockDigest of an open file, reading only its data ranges
// (SEEK_DATA/SEEK_HOLE).
func fileDigest(fd int, size int64) (digest string, zeroData int64, err error) {
	d := newBlockDigest()
	buf := make([]byte, blockSize)
	last := int64(-1)
	for off := int64(0); off < size; {
		start, err := unix.Seek(fd, off, unix.SEEK_DATA)
		if errors.Is(err, unix.ENXIO) {
			break
		}
		if err != nil {
			return "", 0, fmt.Errorf("SEEK_DATA: %w", err)
		}
		end, err := unix.Seek(fd, start, unix.SEEK_HOLE)
		if err != nil {
			return "", 0, fmt.Errorf("SEEK_HOLE: %w", err)
		}
		for idx := start / blockSize; idx*blockSize < end && idx*blockSize < size; idx++ {
			if idx <= last {
				continue
			}
			n := min(blockSize, size-idx*blockSize)
			if err := preadFull(fd, buf[:n], idx*blockSize); err != nil {
				return "", 0, err
			}
			d.block(idx, buf[:n], true)
			last = idx
		}
		off = end
	}
	return d.sum(size), d.zeroData, nil
}

func preadFull(fd int, p []byte, off int64) error {
	for len(p) > 0 {
		n, err := unix.Pread(fd, p, off)
		if err != nil {
			return err
		}
		if n == 0 {
			return io.ErrUnexpectedEOF
		}
		p, off = p[n:], off+int64(n)
	}
	return nil
}

// firstDiff names the first byte where an open file differs from c (for
// a content mismatch), reading only where either has data: the union of
// c's runs and the file's SEEK_DATA ranges.
func firstDiff(fd int, size int64, c *content) string {
	type rng struct{ lo, hi int64 }
	var rs []rng
	for _, s := range c.segs {
		rs = append(rs, rng{s.off, s.off + s.n})
	}
	for off := int64(0); off < size; {
		lo, err := unix.Seek(fd, off, unix.SEEK_DATA)
		if err != nil {
			break
		}
		hi, err := unix.Seek(fd, lo, unix.SEEK_HOLE)
		if err != nil {
			break
		}
		rs = append(rs, rng{lo, hi})
		off = hi
	}
	sort.Slice(rs, func(i, j int) bool { return rs[i].lo < rs[j].lo })
	limit := min(size, c.size)
	const chunk = 1 << 20
	got, want := make([]byte, chunk), make([]byte, chunk)
	for _, r := range rs {
		for off := r.lo; off < min(r.hi, limit); off += chunk {
			n := int(min(chunk, min(r.hi, limit)-off))
			if err := preadFull(fd, got[:n], off); err != nil {
				return fmt.Sprintf("read at %d: %v", off, err)
			}
			c.readAt(want[:n], off)
			if i := firstDifference(got[:n], want[:n]); i >= 0 {
				at := off + int64(i)
				return fmt.Sprintf("first difference at byte %d (block %d): got %#02x, want %#02x", at, at/blockSize, got[i], want[i])
			}
		}
	}
	if size != c.size {
		return fmt.Sprintf("the first %d bytes agree; the sizes differ", limit)
	}
	return "no difference found on a second read"
}

// ---------------------------------------------------------------------------
// The generator.

type entry struct {
	hdr  *tar.Header
	data *content // TypeReg
	slow int      // 0: plain reader, 1: iotest.HalfReader, 2: DataErrReader, 3: OneByteReader
}

func (e *entry) reader() io.Reader {
	if e.data == nil {
		return strings.NewReader("")
	}
	var r io.Reader = &contentReader{c: e.data}
	switch e.slow {
	case 1:
		r = iotest.HalfReader(r)
	case 2:
		r = iotest.DataErrReader(r)
	case 3:
		r = iotest.OneByteReader(r)
	}
	return r
}

type tree struct {
	cfg     genConfig
	entries []*entry
}

type gdir struct {
	path  string // canonical: "" for the root, else "a/b"
	names map[string]bool
	big   bool // the big directory: random entries go elsewhere
}

type gen struct {
	cfg     genConfig
	r       *rand.Rand
	out     []*entry
	late    []*entry // directory entries that come after their children
	dirs    []*gdir
	last    *gdir
	targets []string // non-directories, for hard links
}

func generate(cfg genConfig) *tree {
	g := &gen{cfg: cfg, r: rand.New(rand.NewPCG(cfg.seed, 0x6578743470726f70))}
	root := &gdir{path: "", names: map[string]bool{"lost+found": true}}
	g.dirs, g.last = []*gdir{root}, root
	if cfg.rootEntry {
		// "./", "." or "": the root; first, or after everything.
		h := &tar.Header{Typeflag: tar.TypeDir, Name: []string{"./", ".", ""}[g.r.IntN(3)], Mode: 0o755 | int64(g.r.IntN(2))<<10}
		g.meta(h)
		g.randXattrs(h)
		if g.r.IntN(2) == 0 {
			g.out = append(g.out, &entry{hdr: h})
		} else {
			g.late = append(g.late, &entry{hdr: h})
		}
	}
	g.specials(root)
	for range cfg.entries {
		g.random()
	}
	g.out = append(g.out, g.late...)
	for _, e := range g.out {
		if e.data != nil {
			e.data.check()
		}
	}
	return &tree{cfg: cfg, entries: g.out}
}

const printable = " !\"#$%&'()*+,-.0123456789:;<=>?@ABCDEFGHIJKLMNOPQRSTUVWXYZ[\\]^_`abcdefghijklmnopqrstuvwxyz{|}~"

func (g *gen) bytesOf(n int, binary, slash bool) string {
	b := make([]byte, n)
	for i := range b {
		if binary {
			b[i] = byte(1 + g.r.IntN(255))
			if b[i] == '/' && !slash {
				b[i] = 0xff
			}
		} else if slash && g.r.IntN(8) == 0 {
			b[i] = '/'
		} else {
			b[i] = printable[g.r.IntN(len(printable))]
		}
	}
	return string(b)
}

// name is a new name in d: random bytes but '/' and NUL, 1 to 255 long.
func (g *gen) name(d *gdir) string {
	var n int
	switch r := g.r.IntN(100); {
	case r < 70:
		n = 1 + g.r.IntN(16)
	case r < 90:
		n = 17 + g.r.IntN(84)
	case r < 97:
		n = 101 + g.r.IntN(155)
	default:
		n = 255
	}
	return g.uniq(d, n, g.r.IntN(5) == 0)
}

func (g *gen) uniq(d *gdir, n int, binary bool) string {
	for try := 1; ; try++ {
		s := g.bytesOf(n, binary, false)
		if s != "." && s != ".." && !d.names[s] {
			d.names[s] = true
			return s
		}
		if try%4 == 0 && n < 255 { // the short names are taken
			n++
		}
	}
}

func join(d *gdir, name string) string {
	if d.path == "" {
		return name
	}
	return d.path + "/" + name
}

func (g *gen) hdrName(p string, dir bool) string {
	if g.cfg.variations && g.r.IntN(4) == 0 {
		p = "./" + p
	}
	if dir && g.r.IntN(10) < 7 {
		p += "/"
	}
	return p
}

func (g *gen) mtime() time.Time {
	var sec int64
	switch r := g.r.IntN(10); {
	case r == 0:
		b := []int64{minTime, minTime + 1, -1, 0, 1, 1<<31 - 1, 1 << 31, 1<<32 - 1, 1 << 32, 4000000000, maxTime - 1, maxTime}
		sec = b[g.r.IntN(len(b))]
	case r < 4:
		sec = g.r.Int64N(1 << 31)
	default:
		sec = minTime + g.r.Int64N(maxTime-minTime+1)
	}
	var ns int64
	switch r := g.r.IntN(10); {
	case r < 3:
	case r == 3:
		ns = 999999999
	default:
		ns = g.r.Int64N(1e9)
	}
	return time.Unix(sec, ns)
}

func (g *gen) id() int {
	switch g.r.IntN(8) {
	case 0:
		return 0
	case 1:
		b := []int{1, 999, 1000, 65534, 65535, 65536, 1<<31 - 1, 1 << 31, 1<<32 - 2}
		return b[g.r.IntN(len(b))]
	case 2, 3:
		return g.r.IntN(65536)
	default:
		return g.r.IntN(1<<32 - 1)
	}
}

func (g *gen) perm() int64 {
	switch r := g.r.IntN(10); {
	case r < 5:
		c := []int64{0o644, 0o755, 0o600, 0o400, 0o444, 0o700, 0o777, 0o640}
		return c[g.r.IntN(len(c))]
	case r < 8:
		return g.r.Int64N(0o1000)
	default:
		return g.r.Int64N(0o10000)
	}
}

func (g *gen) meta(h *tar.Header) {
	h.Uid, h.Gid = g.id(), g.id()
	h.ModTime = g.mtime()
	// Not kept: atime and ctime are the epoch.
	h.AccessTime, h.ChangeTime = g.mtime(), g.mtime()
}

// typeBits puts the file type in Mode the way some tar writers do.
func (g *gen) typeBits(h *tar.Header) {
	if !g.cfg.variations || g.r.IntN(10) >= 3 {
		return
	}
	switch h.Typeflag {
	case tar.TypeReg:
		h.Mode |= 0o100000
	case tar.TypeDir:
		h.Mode |= 0o40000
	case tar.TypeSymlink:
		h.Mode |= 0o120000
	case tar.TypeChar:
		h.Mode |= 0o20000
	case tar.TypeBlock:
		h.Mode |= 0o60000
	case tar.TypeFifo:
		h.Mode |= 0o10000
	}
}

func isSock(h *tar.Header) bool {
	return h.Typeflag == tar.TypeReg && h.Mode&0o170000 == 0o140000
}

type mod func(h *tar.Header)

// add finishes h (metadata, mods, random xattrs unless a mod set some) and
// emits it.
func (g *gen) add(d *gdir, name string, typ byte, data *content, mods ...mod) *entry {
	p := join(d, name)
	h := &tar.Header{Typeflag: typ, Name: g.hdrName(p, typ == tar.TypeDir)}
	g.meta(h)
	switch typ {
	case tar.TypeSymlink:
		h.Mode = 0o777
	case tar.TypeDir:
		h.Mode = g.perm()
		if g.r.IntN(5) == 0 {
			h.Mode |= []int64{0o1000, 0o2000, 0o3000}[g.r.IntN(3)]
		}
	default:
		h.Mode = g.perm()
	}
	if data != nil {
		h.Size = data.size
	}
	for _, m := range mods {
		m(h)
	}
	if !isSock(h) {
		g.typeBits(h)
	}
	if h.PAXRecords == nil {
		g.randXattrs(h)
	}
	e := &entry{hdr: h, data: data}
	if data != nil && g.r.IntN(6) == 0 {
		e.slow = 1 + g.r.IntN(2)
		if data.size < 300 {
			e.slow = 3
		}
	}
	g.out = append(g.out, e)
	if typ != tar.TypeDir {
		g.targets = append(g.targets, p)
	}
	return e
}

func (g *gen) reg(d *gdir, name string, c *content, mods ...mod) *entry {
	return g.add(d, name, tar.TypeReg, c, mods...)
}

// dir makes a directory; with variations its entry may be left out (the
// writer makes it) or come after its children.
func (g *gen) dir(d *gdir, name string, mods ...mod) *gdir {
	nd := &gdir{path: join(d, name), names: map[string]bool{}}
	g.dirs = append(g.dirs, nd)
	g.last = nd
	n := len(g.out)
	g.add(d, name, tar.TypeDir, nil, mods...)
	if g.cfg.variations && len(mods) == 0 {
		switch g.r.IntN(20) {
		case 0: // implicit
			g.out = g.out[:n]
		case 1: // late
			g.late = append(g.late, g.out[n])
			g.out = g.out[:n]
		}
	}
	return nd
}

func (g *gen) symlink(d *gdir, name, target string, mods ...mod) *entry {
	return g.add(d, name, tar.TypeSymlink, nil, append([]mod{func(h *tar.Header) { h.Linkname = target }}, mods...)...)
}

func (g *gen) link(d *gdir, name, target string) *entry {
	p := join(d, name)
	if g.cfg.variations && g.r.IntN(4) == 0 {
		target = "./" + target
	}
	h := &tar.Header{Typeflag: tar.TypeLink, Name: g.hdrName(p, false), Linkname: target, Mode: 0o644, ModTime: g.mtime()}
	e := &entry{hdr: h}
	g.out = append(g.out, e)
	g.targets = append(g.targets, p)
	return e
}

func (g *gen) dev(d *gdir, name string, typ byte, major, minor int64) *entry {
	return g.add(d, name, typ, nil, func(h *tar.Header) { h.Devmajor, h.Devminor = major, minor })
}

func (g *gen) devNumbers() (int64, int64) {
	var major, minor int64
	switch r := g.r.IntN(10); {
	case r < 5:
		major = g.r.Int64N(256)
	case r < 8:
		major = 256 + g.r.Int64N(4096-256)
	default:
		major = []int64{0, 255, 256, 4095}[g.r.IntN(4)]
	}
	switch r := g.r.IntN(10); {
	case r < 5:
		minor = g.r.Int64N(256)
	case r < 8:
		minor = g.r.Int64N(1 << 20)
	default:
		minor = []int64{0, 255, 256, 1<<20 - 1}[g.r.IntN(4)]
	}
	return major, minor
}

func (g *gen) target() string {
	var n int
	switch r := g.r.IntN(100); {
	case r < 45:
		n = 1 + g.r.IntN(59)
	case r < 55:
		n = 59 + g.r.IntN(3)
	case r < 85:
		n = 62 + g.r.IntN(240)
	case r < 97:
		n = 302 + g.r.IntN(3794)
	default:
		n = 4095
	}
	return g.bytesOf(n, g.r.IntN(7) == 0, true)
}

func (g *gen) content() *content {
	var size int64
	switch r := g.r.IntN(100); {
	case r < 10:
	case r < 25:
		size = 1 + g.r.Int64N(59)
	case r < 45:
		size = 60 + g.r.Int64N(4096-59)
	case r < 75:
		size = 4097 + g.r.Int64N(65536-4096)
	case r < 95:
		size = 65537 + g.r.Int64N(256<<10-65536)
	default:
		size = 256<<10 + 1 + g.r.Int64N(768<<10)
	}
	c := &content{size: size}
	if size == 0 {
		return c
	}
	if g.r.IntN(5) > 0 {
		c.segs = []seg{{0, size, g.r.Uint64()}}
		return c
	}
	// Data and holes, aligned or not, maybe a hole at either end.
	for pos := int64(0); pos < size; {
		if g.r.IntN(2) == 0 {
			n := min(1+g.r.Int64N(20000), size-pos)
			c.segs = append(c.segs, seg{pos, n, g.r.Uint64()})
			pos += n
		}
		if g.r.IntN(2) == 0 {
			pos = (pos+blockSize-1)/blockSize*blockSize + g.r.Int64N(8)*blockSize
		} else {
			pos += 1 + g.r.Int64N(40000)
		}
	}
	return c
}

func full(size int64, seed uint64) *content {
	return &content{size: size, segs: []seg{{0, size, seed}}}
}

// ---- xattrs

const (
	aclUserObj  = 0x01
	aclUser     = 0x02
	aclGroupObj = 0x04
	aclGroup    = 0x08
	aclMask     = 0x10
	aclOther    = 0x20
)

// acl is a valid POSIX ACL in the kernel's xattr form (version 2), agreeing
// with mode's permission bits for an access ACL, as the kernel keeps it.
func (g *gen) acl(mode int64, access bool) string {
	if !access {
		mode = g.r.Int64N(0o1000)
	}
	ids := func() []uint32 {
		m := map[uint32]bool{}
		for range g.r.IntN(4) {
			m[uint32(g.id())] = true
		}
		var s []uint32
		for id := range m {
			s = append(s, id)
		}
		sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
		return s
	}
	users, groups := ids(), ids()
	if len(users)+len(groups) == 0 {
		users = []uint32{uint32(1 + g.r.IntN(60000))}
	}
	b := binary.LittleEndian.AppendUint32(nil, 2)
	put := func(tag, perm uint16, id uint32) {
		b = binary.LittleEndian.AppendUint16(b, tag)
		b = binary.LittleEndian.AppendUint16(b, perm)
		b = binary.LittleEndian.AppendUint32(b, id)
	}
	const undef = 0xffffffff
	put(aclUserObj, uint16(mode>>6&7), undef)
	for _, u := range users {
		put(aclUser, uint16(g.r.IntN(8)), u)
	}
	put(aclGroupObj, uint16(g.r.IntN(8)), undef)
	for _, gr := range groups {
		put(aclGroup, uint16(g.r.IntN(8)), gr)
	}
	put(aclMask, uint16(mode>>3&7), undef)
	put(aclOther, uint16(mode&7), undef)
	return string(b)
}

// capability is a security.capability value the kernel hands back as it
// is: v2, or v3 with a non-zero root id.
func (g *gen) capability() string {
	eff := uint32(g.r.IntN(2))
	var b []byte
	if g.r.IntN(2) == 0 {
		b = binary.LittleEndian.AppendUint32(b, 0x02000000|eff)
	} else {
		b = binary.LittleEndian.AppendUint32(b, 0x03000000|eff)
	}
	for range 4 {
		b = binary.LittleEndian.AppendUint32(b, g.r.Uint32())
	}
	if b[3] == 3 {
		b = binary.LittleEndian.AppendUint32(b, 1+uint32(g.r.IntN(1<<31)))
	}
	return string(b)
}

func (g *gen) xname() string {
	const alnum = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-"
	n := 1 + g.r.IntN(20)
	if g.r.IntN(10) == 0 {
		n = 21 + g.r.IntN(60)
	}
	b := make([]byte, n)
	for i := range b {
		b[i] = alnum[g.r.IntN(len(alnum))]
	}
	return string(b)
}

func pad4(n int) int { return (n + 3) &^ 3 }

// xattrs picks names of the namespaces the entry's type may hold, up to
// budget bytes of the on-disk entry sizes.
func (g *gen) xattrs(h *tar.Header, n, budget, maxValue int) map[string]string {
	regOrDir := (h.Typeflag == tar.TypeReg && !isSock(h)) || h.Typeflag == tar.TypeDir
	ns := []string{"trusted", "selinux"}
	if regOrDir {
		ns = append(ns, "user", "user", "acl")
	}
	if h.Typeflag == tar.TypeReg && !isSock(h) {
		ns = append(ns, "cap")
	}
	if h.Typeflag == tar.TypeDir {
		ns = append(ns, "dacl")
	}
	m := map[string]string{}
	used := 0
	for range n {
		var name, val string
		switch ns[g.r.IntN(len(ns))] {
		case "trusted":
			name, val = "trusted."+g.xname(), g.bytesOf(g.r.IntN(maxValue+1), true, true)
		case "user":
			name, val = "user."+g.xname(), g.bytesOf(g.r.IntN(maxValue+1), g.r.IntN(2) == 0, true)
		case "selinux":
			name, val = "security.selinux", "system_u:object_r:"+g.xname()+"_t:s0\x00"
		case "cap":
			name, val = "security.capability", g.capability()
		case "acl":
			name, val = "system.posix_acl_access", g.acl(h.Mode, true)
		case "dacl":
			name, val = "system.posix_acl_default", g.acl(0, false)
		}
		if _, dup := m[name]; dup {
			continue
		}
		cost := 16 + pad4(len(name)) + pad4(len(val))
		if used+cost > budget && len(m) > 0 {
			break
		}
		m[name], used = val, used+cost
	}
	return m
}

func setXattrs(h *tar.Header, m map[string]string) {
	if h.PAXRecords == nil {
		h.PAXRecords = map[string]string{}
	}
	for k, v := range m {
		h.PAXRecords["SCHILY.xattr."+k] = v
	}
}

func (g *gen) randXattrs(h *tar.Header) {
	switch r := g.r.IntN(100); {
	case r < 70:
	case r < 92: // likely in the inode
		setXattrs(h, g.xattrs(h, 1+g.r.IntN(2), 80, 24))
	default: // an xattr block
		setXattrs(h, g.xattrs(h, 5+g.r.IntN(10), 3200, 400))
	}
}

// ---- the fixed entries: every edge the issue names, readable names.

func (g *gen) specials(root *gdir) {
	take := func(d *gdir, name string) string { d.names[name] = true; return name }
	setTime := func(sec, ns int64) mod { return func(h *tar.Header) { h.ModTime = time.Unix(sec, ns) } }
	noX := func(h *tar.Header) { h.PAXRecords = map[string]string{} }

	// Regular files at the block edges, holes, one beyond 4 GiB.
	g.reg(root, take(root, "empty"), &content{}, noX)
	g.reg(root, take(root, "one"), full(1, 1))
	g.reg(root, take(root, "b59"), full(59, 2))
	g.reg(root, take(root, "b60"), full(60, 3))
	g.reg(root, take(root, "b4096"), full(4096, 4))
	g.reg(root, take(root, "b4097"), full(4097, 5))
	g.reg(root, take(root, "zeros"), &content{size: 3*blockSize + 7})
	g.reg(root, take(root, "tail-hole"), &content{size: 1 << 20, segs: []seg{{0, 5000, 6}}})
	g.reg(root, take(root, "head-hole"), &content{size: 1<<20 + 3, segs: []seg{{1 << 20, 3, 7}}})
	H := g.cfg.hugeSize
	huge := &content{size: H, segs: []seg{{0, 100, 8}, {H/4 - 10, 8000, 9}}}
	if H > 1<<32+100 {
		huge.segs = append(huge.segs, seg{1<<32 - 5, 10, 10})
	}
	huge.segs = append(huge.segs, seg{H - 50, 50, 11})
	sort.Slice(huge.segs, func(i, j int) bool { return huge.segs[i].off < huge.segs[j].off })
	g.reg(root, take(root, "huge-sparse"), huge, func(h *tar.Header) { h.Mode = 0o644 })
	frag := &content{}
	for i := range g.cfg.fragExtents {
		frag.segs = append(frag.segs, seg{int64(i) * 2 * blockSize, blockSize, uint64(100 + i)})
	}
	if n := len(frag.segs); n > 0 {
		frag.segs[n-1].n = 100
		frag.size = frag.segs[n-1].off + 100
		g.reg(root, take(root, "fragmented"), frag)
	}

	if g.cfg.denseSize > 0 {
		g.reg(root, take(root, "dense"), full(g.cfg.denseSize, 12345))
	}

	// Sockets, FIFOs, devices with numbers over 255.
	g.reg(root, take(root, "socket"), nil, func(h *tar.Header) { h.Mode = 0o140755 })
	g.add(root, take(root, "fifo"), tar.TypeFifo, nil)
	g.dev(root, take(root, "chr-0-0"), tar.TypeChar, 0, 0)
	g.dev(root, take(root, "chr-255-255"), tar.TypeChar, 255, 255)
	g.dev(root, take(root, "chr-4095-1048575"), tar.TypeChar, 4095, 1<<20-1)
	g.dev(root, take(root, "blk-256-0"), tar.TypeBlock, 256, 0)
	g.dev(root, take(root, "blk-1-256"), tar.TypeBlock, 1, 256)
	g.dev(root, take(root, "blk-8-1"), tar.TypeBlock, 8, 1)

	// Symlinks on both sides of the 60-byte inline limit, and the longest.
	for _, n := range []int{1, 59, 60, 61, 4095} {
		g.symlink(root, take(root, fmt.Sprintf("sym-%d", n)), g.bytesOf(n, false, true))
	}
	g.symlink(root, take(root, "sym-binary"), g.bytesOf(300, true, true))

	// Times at the ends of the range and around 1970 and 2038.
	for _, tc := range []struct {
		name    string
		sec, ns int64
	}{
		{"t-min", minTime, 0}, {"t-min-ns", minTime, 999999999}, {"t-pre1970", -2000000000, 123456789},
		{"t-neg1", -1, 999999999}, {"t-zero", 0, 0}, {"t-2038", 1<<31 - 1, 999999999},
		{"t-2038b", 1 << 31, 1}, {"t-2106", 1 << 32, 500000000}, {"t-4e9", 4000000000, 0},
		{"t-max", maxTime, 999999999},
	} {
		g.reg(root, take(root, tc.name), full(1, uint64(tc.sec)), setTime(tc.sec, tc.ns))
	}
	g.dir(root, take(root, "t-max-dir"), setTime(maxTime, 1))
	g.symlink(root, take(root, "t-min-sym"), "t-min", setTime(minTime, 7))
	g.add(root, take(root, "t-2106-fifo"), tar.TypeFifo, nil, setTime(1<<32+5, 5))

	// Owners and modes.
	g.reg(root, take(root, "id-max"), full(3, 12), func(h *tar.Header) { h.Uid, h.Gid = 1<<32-2, 1<<32-2 })
	g.reg(root, take(root, "id-65536"), full(3, 13), func(h *tar.Header) { h.Uid, h.Gid = 65536, 65535 })
	g.symlink(root, take(root, "id-max-sym"), "x", func(h *tar.Header) { h.Uid, h.Gid = 1<<32-2, 65536 })
	g.dir(root, take(root, "id-max-dir"), func(h *tar.Header) { h.Uid, h.Gid = 4000000000, 1<<32-2 })
	g.reg(root, take(root, "m-7777"), full(5, 14), func(h *tar.Header) { h.Mode = 0o7777 })
	g.reg(root, take(root, "m-0000"), full(5, 15), func(h *tar.Header) { h.Mode = 0 })
	g.reg(root, take(root, "m-suid"), full(5, 16), func(h *tar.Header) { h.Mode = 0o4755 })
	g.reg(root, take(root, "m-sgid"), full(5, 17), func(h *tar.Header) { h.Mode = 0o2711 })
	g.dir(root, take(root, "m-sgid-dir"), func(h *tar.Header) { h.Mode = 0o2775 })
	g.dir(root, take(root, "m-sticky-dir"), func(h *tar.Header) { h.Mode = 0o1777 })
	g.dir(root, take(root, "m-0000-dir"), func(h *tar.Header) { h.Mode = 0 })

	// Xattrs of every namespace; one set too big for the inode.
	mode := func(m int64) mod { return func(h *tar.Header) { h.Mode = m } }
	xs := func(m map[string]string) mod { return func(h *tar.Header) { setXattrs(h, m) } }
	g.reg(root, take(root, "x-all"), full(10, 18), mode(0o750), xs(map[string]string{
		"user.small": "v", "trusted.t": "\x00\x01\x02", "security.selinux": "system_u:object_r:bin_t:s0\x00",
		"security.capability": g.capability(), "system.posix_acl_access": g.acl(0o750, true), "user.empty": "",
	}))
	big := g.xattrs(&tar.Header{Typeflag: tar.TypeReg, Mode: 0o640}, 30, 2400, 300)
	big["user.bigvalue"] = g.bytesOf(1000, true, true)
	big["system.posix_acl_access"] = g.acl(0o640, true)
	g.reg(root, take(root, "x-big"), full(10, 19), mode(0o640), xs(big))
	g.reg(root, take(root, "x-over96"), full(10, 20), xs(map[string]string{"user.a": strings.Repeat("a", 60), "user.b": strings.Repeat("b", 60)}))
	shared := g.xattrs(&tar.Header{Typeflag: tar.TypeReg, Mode: 0o600}, 12, 1500, 200)
	for i := range 3 { // one xattr block for three inodes, if the writer shares
		g.reg(root, take(root, fmt.Sprintf("x-shared-%d", i)), full(1, 30), mode(0o600), xs(shared))
	}
	d := g.dir(root, take(root, "x-dir"), mode(0o2770), xs(map[string]string{
		"system.posix_acl_access": g.acl(0o2770, true), "system.posix_acl_default": g.acl(0, false), "user.dir": "yes", "trusted.dir": "t",
	}))
	g.reg(d, take(d, "inside"), full(1, 21))
	g.symlink(root, take(root, "x-sym"), "target", xs(map[string]string{"trusted.s": "sym", "security.selinux": "system_u:object_r:lnk_t:s0\x00"}))
	g.add(root, take(root, "x-chr"), tar.TypeChar, nil, func(h *tar.Header) { h.Devmajor, h.Devminor = 1, 3 }, xs(map[string]string{"trusted.dev": "c"}))
	g.reg(root, take(root, "x-sock"), nil, mode(0o140600), xs(map[string]string{"trusted.sock": "s"}))
	g.add(root, take(root, "x-fifo"), tar.TypeFifo, nil, xs(map[string]string{"security.selinux": "system_u:object_r:fifo_t:s0\x00"}))

	// 255-byte names, printable and not.
	n255 := g.dir(root, g.uniq(root, 255, false))
	g.reg(n255, g.uniq(n255, 255, true), full(2, 22))
	g.symlink(n255, g.uniq(n255, 255, false), g.bytesOf(255, false, true))

	// Hard links: to files, to links, to every non-directory type.
	g.reg(root, take(root, "hl-a"), full(5000, 23), xs(map[string]string{"user.hl": "a"}))
	g.link(root, take(root, "hl-b"), "hl-a")
	g.link(root, take(root, "hl-c"), "hl-b")
	g.link(root, take(root, "hl-sym"), "sym-61")
	g.link(root, take(root, "hl-fifo"), "fifo")
	g.link(root, take(root, "hl-chr"), "chr-4095-1048575")
	g.link(root, take(root, "hl-socket"), "socket")
	g.link(root, take(root, "hl-empty"), "empty")
	g.link(d, take(d, "hl-huge"), "huge-sparse")

	// A deep chain of 200-byte names: longer than PATH_MAX.
	c := root
	for i := range g.cfg.deep {
		c = g.dir(c, take(c, fmt.Sprintf("d%03d-%s", i, strings.Repeat("x", 195))), mode(0o755))
	}
	if g.cfg.deep > 0 {
		g.reg(c, take(c, "bottom"), full(100, 24))
		g.symlink(c, take(c, "bottom-sym"), "bottom")
		g.link(root, take(root, "deep-link"), strings.TrimPrefix(join(c, "bottom"), "./"))
	}

	// The big directory of empty files: a two-level hash tree.
	if g.cfg.bigDir > 0 {
		bd := g.dir(root, take(root, "bigdir"), mode(0o755))
		bd.big = true
		for range g.cfg.bigDir {
			n := 1 + g.r.IntN(60)
			if g.r.IntN(50) == 0 {
				n = 255
			}
			p := join(bd, g.uniq(bd, n, g.r.IntN(3) == 0))
			h := &tar.Header{Typeflag: tar.TypeReg, Name: p, Mode: 0o644, ModTime: time.Unix(int64(g.r.Uint32()), 0), PAXRecords: map[string]string{}}
			g.out = append(g.out, &entry{hdr: h, data: &content{}})
		}
	}
	// More subdirectories than a link count holds (dir_nlink).
	if g.cfg.manySubdirs > 0 {
		sd := g.dir(root, take(root, "subdirs"), mode(0o755))
		sd.big = true
		for i := range g.cfg.manySubdirs {
			p := join(sd, fmt.Sprintf("s%d", i))
			h := &tar.Header{Typeflag: tar.TypeDir, Name: p + "/", Mode: 0o755, ModTime: time.Unix(int64(i), 0), PAXRecords: map[string]string{}}
			g.out = append(g.out, &entry{hdr: h})
		}
	}
	g.last = root
}

func (g *gen) pickDir() *gdir {
	if g.r.IntN(10) < 4 && !g.last.big {
		return g.last
	}
	for {
		if d := g.dirs[g.r.IntN(len(g.dirs))]; !d.big {
			return d
		}
	}
}

func (g *gen) random() {
	d := g.pickDir()
	name := g.name(d)
	switch k := g.r.IntN(100); {
	case k < 40:
		g.reg(d, name, g.content())
	case k < 52:
		g.dir(d, name)
	case k < 64:
		g.symlink(d, name, g.target())
	case k < 74 && len(g.targets) > 0:
		g.link(d, name, g.targets[g.r.IntN(len(g.targets))])
	case k < 80:
		ma, mi := g.devNumbers()
		g.dev(d, name, tar.TypeChar, ma, mi)
	case k < 86:
		ma, mi := g.devNumbers()
		g.dev(d, name, tar.TypeBlock, ma, mi)
	case k < 93:
		g.add(d, name, tar.TypeFifo, nil)
	default:
		g.reg(d, name, nil, func(h *tar.Header) { h.Mode = 0o140000 | g.perm() })
	}
}

// ---------------------------------------------------------------------------
// The model: what the filesystem must hold, from the stream alone.

type node struct {
	typ          uint32 // S_IFREG, ...
	perm         uint32
	uid, gid     uint32
	size         int64
	data         *content
	digest       string
	target       string
	major, minor uint32
	xattrs       map[string]string
	mtime        time.Time
	implicit     bool     // made by the writer for a child
	paths        []string // every name of the inode
	subdirs      int
}

type model struct {
	nodes map[string]*node // canonical path -> node; "" is the root
	epoch int64
}

func canon(name string) string {
	for strings.HasPrefix(name, "./") {
		name = name[2:]
	}
	name = strings.TrimRight(name, "/")
	if name == "." {
		name = ""
	}
	return name
}

func parentOf(p string) string {
	if i := strings.LastIndexByte(p, '/'); i >= 0 {
		return p[:i]
	}
	return ""
}

func baseOf(p string) string { return p[strings.LastIndexByte(p, '/')+1:] }

func implicitDir(epoch int64, p string) *node {
	return &node{typ: unix.S_IFDIR, perm: 0o755, xattrs: map[string]string{}, mtime: time.Unix(epoch, 0), implicit: true, paths: []string{p}}
}

func (n *node) fill(h *tar.Header) {
	n.perm = uint32(h.Mode & 0o7777)
	n.uid, n.gid = uint32(h.Uid), uint32(h.Gid)
	n.mtime = h.ModTime
	n.xattrs = map[string]string{}
	for k, v := range h.PAXRecords {
		if name, ok := strings.CutPrefix(k, "SCHILY.xattr."); ok {
			n.xattrs[name] = v
		}
	}
	n.implicit = false
}

var emptyDigest = (&content{}).digest()

func buildModel(tr *tree, epoch int64) (*model, error) {
	m := &model{nodes: map[string]*node{"": implicitDir(epoch, "")}, epoch: epoch}
	for _, e := range tr.entries {
		h := e.hdr
		p := canon(h.Name)
		for a := parentOf(p); a != ""; a = parentOf(a) {
			if m.nodes[a] != nil {
				break
			}
			m.nodes[a] = implicitDir(epoch, a)
		}
		// Every ancestor must now be a directory.
		for a := parentOf(p); ; a = parentOf(a) {
			if m.nodes[a].typ != unix.S_IFDIR {
				return nil, fmt.Errorf("generator: %q under a non-directory", p)
			}
			if a == "" {
				break
			}
		}
		old := m.nodes[p]
		if h.Typeflag == tar.TypeDir && old != nil && old.implicit {
			old.fill(h)
			continue
		}
		if old != nil && !(p == "" && h.Typeflag == tar.TypeDir) {
			return nil, fmt.Errorf("generator: %q twice", p)
		}
		var n *node
		switch h.Typeflag {
		case tar.TypeLink:
			n = m.nodes[canon(h.Linkname)]
			if n == nil || n.typ == unix.S_IFDIR {
				return nil, fmt.Errorf("generator: bad link %q -> %q", p, h.Linkname)
			}
			n.paths = append(n.paths, p)
			m.nodes[p] = n
			continue
		case tar.TypeDir:
			n = &node{typ: unix.S_IFDIR}
		case tar.TypeReg:
			n = &node{typ: unix.S_IFREG, size: h.Size, data: e.data}
			if isSock(h) {
				n = &node{typ: unix.S_IFSOCK}
			} else if e.data.size == 0 {
				n.digest = emptyDigest
			} else {
				n.digest = e.data.digest()
			}
		case tar.TypeSymlink:
			n = &node{typ: unix.S_IFLNK, target: h.Linkname, size: int64(len(h.Linkname))}
		case tar.TypeChar, tar.TypeBlock:
			n = &node{typ: unix.S_IFCHR, major: uint32(h.Devmajor), minor: uint32(h.Devminor)}
			if h.Typeflag == tar.TypeBlock {
				n.typ = unix.S_IFBLK
			}
		case tar.TypeFifo:
			n = &node{typ: unix.S_IFIFO}
		default:
			return nil, fmt.Errorf("generator: type %q", h.Typeflag)
		}
		n.fill(h)
		n.paths = []string{p}
		m.nodes[p] = n
	}
	for p, n := range m.nodes {
		if p != "" && n.typ == unix.S_IFDIR {
			m.nodes[parentOf(p)].subdirs++
		}
	}
	return m, nil
}

// ---------------------------------------------------------------------------
// The walk of the mounted filesystem.

type actual struct {
	stx      unix.Statx_t
	target   string
	xattrs   map[string]string
	digest   string
	zeroData int64
	diff     string // where the content differs from the model's
	errs     []string
}

type walker struct {
	m   *model
	out map[string]*actual
}

const statxMask = unix.STATX_BASIC_STATS | unix.STATX_BTIME

func walkMount(mnt string, m *model) (map[string]*actual, error) {
	w := &walker{m: m, out: map[string]*actual{}}
	a := &actual{}
	w.out[""] = a
	if err := unix.Statx(unix.AT_FDCWD, mnt, unix.AT_SYMLINK_NOFOLLOW, statxMask, &a.stx); err != nil {
		return nil, err
	}
	a.xattrs, a.errs = readXattrs(mnt)
	fd, err := unix.Open(mnt, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	return w.out, w.dir(fd, "")
}

func readXattrs(p string) (map[string]string, []string) {
	m := map[string]string{}
	sz, err := unix.Llistxattr(p, nil)
	if err != nil {
		return m, []string{"llistxattr: " + err.Error()}
	}
	if sz == 0 {
		return m, nil
	}
	buf := make([]byte, sz)
	sz, err = unix.Llistxattr(p, buf)
	if err != nil {
		return m, []string{"llistxattr: " + err.Error()}
	}
	var errs []string
	for _, name := range strings.Split(strings.TrimSuffix(string(buf[:sz]), "\x00"), "\x00") {
		vsz, err := unix.Lgetxattr(p, name, nil)
		if err != nil {
			errs = append(errs, fmt.Sprintf("lgetxattr %s: %v", name, err))
			continue
		}
		v := make([]byte, vsz)
		vsz, err = unix.Lgetxattr(p, name, v)
		if err != nil {
			errs = append(errs, fmt.Sprintf("lgetxattr %s: %v", name, err))
			continue
		}
		m[name] = string(v[:vsz])
	}
	return m, errs
}

func (w *walker) dir(fd int, rel string) error {
	f := os.NewFile(uintptr(fd), rel)
	defer f.Close()
	names, err := f.Readdirnames(-1)
	if err != nil {
		return fmt.Errorf("readdir %s: %w", show(rel), err)
	}
	sort.Strings(names)
	for _, name := range names {
		p := name
		if rel != "" {
			p = rel + "/" + name
		}
		a := &actual{}
		w.out[p] = a
		if err := unix.Statx(fd, name, unix.AT_SYMLINK_NOFOLLOW, statxMask, &a.stx); err != nil {
			a.errs = append(a.errs, "statx: "+err.Error())
			continue
		}
		var xerrs []string
		a.xattrs, xerrs = readXattrs(fmt.Sprintf("/proc/self/fd/%d/%s", fd, name))
		a.errs = append(a.errs, xerrs...)
		switch uint32(a.stx.Mode) & unix.S_IFMT {
		case unix.S_IFLNK:
			buf := make([]byte, 8192)
			n, err := unix.Readlinkat(fd, name, buf)
			if err != nil {
				a.errs = append(a.errs, "readlink: "+err.Error())
			}
			a.target = string(buf[:max(n, 0)])
		case unix.S_IFREG:
			if a.stx.Size == 0 {
				a.digest = emptyDigest
				continue
			}
			cfd, err := unix.Openat(fd, name, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
			if err != nil {
				a.errs = append(a.errs, "open: "+err.Error())
				continue
			}
			a.digest, a.zeroData, err = fileDigest(cfd, int64(a.stx.Size))
			if err != nil {
				a.errs = append(a.errs, "read: "+err.Error())
			}
			if n := w.m.nodes[p]; n != nil && n.data != nil && n.digest != a.digest {
				a.diff = firstDiff(cfd, int64(a.stx.Size), n.data)
			}
			unix.Close(cfd)
		case unix.S_IFDIR:
			cfd, err := unix.Openat(fd, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
			if err != nil {
				a.errs = append(a.errs, "open: "+err.Error())
				continue
			}
			if err := w.dir(cfd, p); err != nil {
				a.errs = append(a.errs, err.Error())
			}
		}
	}
	return nil
}

// ---------------------------------------------------------------------------
// The comparison.

type cmpOpts struct {
	nanos      bool // mtime nanoseconds are kept
	epochTimes bool // atime, ctime and crtime are the epoch, as is the mtime of directories the stream did not name
	rootMtime  bool // the root's mtime is its entry's, or the epoch
	holes      bool // all-zero blocks are holes
	mtime32    bool // only the low 32 bits of mtime seconds are kept (mkfs.ext4 -d)
	rootOwner  bool // the root's owner is its entry's
}

var writerCmp = cmpOpts{nanos: true, epochTimes: true, rootMtime: true, holes: true, rootOwner: true}

type mismatch struct{ path, kind, field, want, got string }

func (m mismatch) String() string {
	return fmt.Sprintf("%s (%s): %s: want %s, got %s", show(m.path), m.kind, m.field, m.want, m.got)
}

func show(p string) string {
	q := strconv.Quote("/" + p)
	if len(q) > 200 {
		q = q[:90] + "…" + q[len(q)-90:]
	}
	return q
}

func kindOf(typ uint32) string {
	switch typ {
	case unix.S_IFREG:
		return "file"
	case unix.S_IFDIR:
		return "dir"
	case unix.S_IFLNK:
		return "symlink"
	case unix.S_IFCHR:
		return "char"
	case unix.S_IFBLK:
		return "block"
	case unix.S_IFIFO:
		return "fifo"
	case unix.S_IFSOCK:
		return "socket"
	}
	return fmt.Sprintf("type %#o", typ)
}

func kindOfNode(p string, n *node) string {
	k := kindOf(n.typ)
	switch {
	case p == "":
		k = "root dir"
	case n.implicit:
		k = "implicit dir"
	case len(n.paths) > 1:
		k = "hardlinked " + k
	}
	return k
}

func short(s string) string {
	if len(s) > 48 {
		return strconv.Quote(s[:20]) + fmt.Sprintf("…(%d bytes)…", len(s)) + strconv.Quote(s[len(s)-20:])
	}
	return strconv.Quote(s)
}

func prefix(s string) string { return s[:min(12, len(s))] }

func ts(t unix.StatxTimestamp) string { return fmt.Sprintf("%d.%09d", t.Sec, t.Nsec) }

func compare(m *model, act map[string]*actual, o cmpOpts) []mismatch {
	var out []mismatch
	paths := make([]string, 0, len(m.nodes))
	for p := range m.nodes {
		paths = append(paths, p)
	}
	sort.Strings(paths)
	for _, p := range paths {
		n := m.nodes[p]
		k := kindOfNode(p, n)
		add := func(field, want, got string) { out = append(out, mismatch{p, k, field, want, got}) }
		a := act[p]
		if a == nil {
			add("presence", "present", "missing")
			continue
		}
		for _, e := range a.errs {
			add("read", "no error", e)
		}
		s := &a.stx
		if typ := uint32(s.Mode) & unix.S_IFMT; typ != n.typ {
			add("type", kindOf(n.typ), kindOf(typ))
			continue
		}
		if perm := uint32(s.Mode) & 0o7777; perm != n.perm {
			add("mode", fmt.Sprintf("%#o", n.perm), fmt.Sprintf("%#o", perm))
		}
		if s.Uid != n.uid && (p != "" || o.rootOwner) {
			add("uid", fmt.Sprint(n.uid), fmt.Sprint(s.Uid))
		}
		if s.Gid != n.gid && (p != "" || o.rootOwner) {
			add("gid", fmt.Sprint(n.gid), fmt.Sprint(s.Gid))
		}
		if n.typ != unix.S_IFDIR && int64(s.Size) != n.size {
			add("size", fmt.Sprint(n.size), fmt.Sprint(s.Size))
		}
		switch n.typ {
		case unix.S_IFREG:
			if a.digest != n.digest {
				add("content", "digest "+prefix(n.digest), "digest "+prefix(a.digest)+"; "+a.diff)
			}
			if o.holes && a.zeroData > 0 {
				add("holes", "all-zero blocks as holes", fmt.Sprintf("%d all-zero blocks stored", a.zeroData))
			}
		case unix.S_IFLNK:
			if a.target != n.target {
				add("target", short(n.target), short(a.target))
			}
		case unix.S_IFCHR, unix.S_IFBLK:
			if s.Rdev_major != n.major || s.Rdev_minor != n.minor {
				add("rdev", fmt.Sprintf("%d:%d", n.major, n.minor), fmt.Sprintf("%d:%d", s.Rdev_major, s.Rdev_minor))
			}
		}
		if n.typ != unix.S_IFCHR && n.typ != unix.S_IFBLK && (s.Rdev_major != 0 || s.Rdev_minor != 0) {
			add("rdev", "0:0", fmt.Sprintf("%d:%d", s.Rdev_major, s.Rdev_minor))
		}
		if d := xattrDiff(n.xattrs, a.xattrs); d != "" {
			add("xattrs", "the entry's", d)
		}
		wantM := unix.StatxTimestamp{Sec: n.mtime.Unix(), Nsec: uint32(n.mtime.Nanosecond())}
		gotM := s.Mtime
		if !o.nanos {
			wantM.Nsec, gotM.Nsec = 0, 0
		}
		if o.mtime32 {
			wantM.Sec = int64(int32(wantM.Sec))
		}
		if (p != "" || o.rootMtime) && wantM != gotM {
			add("mtime", ts(wantM)+" ("+n.mtime.UTC().Format(time.RFC3339Nano)+")", ts(s.Mtime)+" ("+time.Unix(s.Mtime.Sec, int64(s.Mtime.Nsec)).UTC().Format(time.RFC3339Nano)+")")
		}
		if o.epochTimes {
			ep := unix.StatxTimestamp{Sec: m.epoch}
			if s.Atime != ep {
				add("atime", ts(ep), ts(s.Atime))
			}
			if s.Ctime != ep {
				add("ctime", ts(ep), ts(s.Ctime))
			}
			if s.Mask&unix.STATX_BTIME != 0 && s.Btime != ep {
				add("crtime", ts(ep), ts(s.Btime))
			}
		}
		// Link counts: names of the inode; a directory's subdirectories.
		want := uint32(len(n.paths))
		if n.typ == unix.S_IFDIR {
			want = uint32(2 + n.subdirs)
			if p == "" && m.nodes["lost+found"] == nil {
				want++ // lost+found, made by the writer
			}
			if want >= 65000 {
				want = 1
			}
		}
		if s.Nlink != want {
			add("nlink", fmt.Sprint(want), fmt.Sprint(s.Nlink))
		}
		if len(n.paths) > 1 && p == n.paths[0] {
			for _, q := range n.paths[1:] {
				if b := act[q]; b != nil && b.stx.Ino != s.Ino {
					add("hardlink", "the inode of "+show(q), fmt.Sprintf("inode %d, %s has %d", s.Ino, show(q), b.stx.Ino))
				}
			}
		}
	}
	// Distinct inodes of the model must be distinct on disk.
	owner := map[uint64]*node{}
	for _, p := range paths {
		n, a := m.nodes[p], act[p]
		if a == nil {
			continue
		}
		if o, ok := owner[a.stx.Ino]; ok && o != n {
			out = append(out, mismatch{p, kindOfNode(p, n), "inode", "its own inode", fmt.Sprintf("inode %d, shared with %s", a.stx.Ino, show(o.paths[0]))})
		}
		owner[a.stx.Ino] = n
	}
	var extra []string
	for p := range act {
		if m.nodes[p] == nil {
			extra = append(extra, p)
		}
	}
	sort.Strings(extra)
	for _, p := range extra {
		a := act[p]
		if p == "lost+found" {
			if uint32(a.stx.Mode)&unix.S_IFMT != unix.S_IFDIR {
				out = append(out, mismatch{p, "lost+found", "type", "dir", kindOf(uint32(a.stx.Mode) & unix.S_IFMT)})
			} else if o.epochTimes && a.stx.Mtime != (unix.StatxTimestamp{Sec: m.epoch}) {
				out = append(out, mismatch{p, "lost+found", "mtime", ts(unix.StatxTimestamp{Sec: m.epoch}), ts(a.stx.Mtime)})
			}
			continue
		}
		out = append(out, mismatch{p, kindOf(uint32(a.stx.Mode) & unix.S_IFMT), "presence", "absent", "present"})
	}
	return out
}

func xattrDiff(want, got map[string]string) string {
	var d []string
	names := map[string]bool{}
	for k := range want {
		names[k] = true
	}
	for k := range got {
		names[k] = true
	}
	sorted := make([]string, 0, len(names))
	for k := range names {
		sorted = append(sorted, k)
	}
	sort.Strings(sorted)
	for _, k := range sorted {
		w, inW := want[k]
		g, inG := got[k]
		switch {
		case !inG:
			d = append(d, "missing "+k)
		case !inW:
			d = append(d, "extra "+k+"="+short(g))
		case w != g:
			d = append(d, fmt.Sprintf("%s=%s, want %s", k, short(g), short(w)))
		}
	}
	return strings.Join(d, "; ")
}

func reportMismatches(t *testing.T, what string, ms []mismatch) {
	t.Helper()
	if len(ms) == 0 {
		return
	}
	counts := map[string]int{}
	for _, m := range ms {
		counts[m.field+" of "+m.kind]++
	}
	var sum []string
	for k, n := range counts {
		sum = append(sum, fmt.Sprintf("  %6d  %s", n, k))
	}
	sort.Strings(sum)
	const limit = 60
	var b strings.Builder
	for i, m := range ms {
		if i == limit {
			fmt.Fprintf(&b, "  … and %d more\n", len(ms)-limit)
			break
		}
		fmt.Fprintf(&b, "  %s\n", m)
	}
	t.Errorf("%s: %d mismatches\nby field and kind:\n%s\nfirst ones:\n%s", what, len(ms), strings.Join(sum, "\n"), b.String())
}

// ---------------------------------------------------------------------------
// Running the writer and the tools.

// writeFS writes the entries with the writer into path at off, the file
// first made (sparse) at least off+o.Size long. A panic is an error.
func writeFS(path string, off int64, o ext4.Options, entries []*entry, wrap func(io.Reader) io.Reader) (err error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return err
	}
	defer f.Close()
	if fi, err := f.Stat(); err != nil {
		return err
	} else if fi.Size() < off+o.Size {
		if err := f.Truncate(off + o.Size); err != nil {
			return err
		}
	}
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("panic: %v\n%s", r, debug.Stack())
		}
	}()
	w, err := ext4.New(f, off, o)
	if err != nil {
		return fmt.Errorf("New: %w", err)
	}
	for i, e := range entries {
		r := e.reader()
		if wrap != nil {
			r = wrap(r)
		}
		if err := w.Add(e.hdr, r); err != nil {
			return fmt.Errorf("Add #%d %s (%c): %w", i, show(canon(e.hdr.Name)), e.hdr.Typeflag, err)
		}
	}
	if err := w.Close(); err != nil {
		return fmt.Errorf("Close: %w", err)
	}
	return nil
}

func needTool(t *testing.T, names ...string) {
	t.Helper()
	for _, n := range names {
		if _, err := exec.LookPath(n); err != nil {
			t.Skipf("%s not found (e2fsprogs): %v", n, err)
		}
	}
}

func needRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("the read-only loop mount (mount -o loop,ro,noload) needs root; run the test as root to compare the mounted tree")
	}
}

var (
	e2fsckClean = regexp.MustCompile(`^(e2fsck \d.*|Pass \d[A-Z]?: .*|.*: \d+/\d+ files \(.*\), \d+/\d+ blocks|\s*)$`)
	// e2fsck (1.47) takes a time with the sign bit and both epoch bits
	// set, 2310-04-04 to 2378-04-12, for a pre-1970 time the old kernels
	// mis-encoded, and says so (exit 0, "Fix? no"). Such times are in the
	// range the writer must keep, so the message is allowed for inodes
	// whose input time is in that window (checked on the mount).
	e2fsckPre1970 = regexp.MustCompile(`^Timestamp\(s\) on inode (\d+) beyond 2310-04-04 are likely pre-1970\.$`)
)

const (
	heuristicLo = 3<<32 - 1<<31 // 2310-04-04
	heuristicHi = 3 << 32       // 2378-04-12
)

func inHeuristicWindow(t time.Time) bool { return t.Unix() >= heuristicLo && t.Unix() < heuristicHi }

type fsckResult struct {
	ok      bool
	pre1970 []uint64 // inodes e2fsck calls likely pre-1970
}

// fsck runs e2fsck -fn: exit 0 and nothing but its pass and summary lines
// (and the pre-1970 heuristic, returned for checking).
func fsck(t *testing.T, img string) fsckResult {
	t.Helper()
	start := time.Now()
	out, err := exec.Command("e2fsck", "-fn", img).CombinedOutput()
	var bad []string
	var res fsckResult
	lines := strings.Split(string(out), "\n")
	for i := 0; i < len(lines); i++ {
		l := lines[i]
		if m := e2fsckPre1970.FindStringSubmatch(l); m != nil && i+1 < len(lines) && lines[i+1] == "Fix? no" {
			ino, _ := strconv.ParseUint(m[1], 10, 64)
			res.pre1970 = append(res.pre1970, ino)
			i++
			continue
		}
		if !e2fsckClean.MatchString(l) {
			bad = append(bad, l)
		}
	}
	t.Logf("e2fsck -fn: %v", time.Since(start).Round(time.Millisecond))
	if len(res.pre1970) > 0 {
		t.Logf("e2fsck -fn: %d inodes with times in 2310..2378 it takes for mis-encoded pre-1970 times (checked on the mount)", len(res.pre1970))
	}
	if err == nil && len(bad) == 0 {
		res.ok = true
		return res
	}
	if len(lines) > 300 {
		lines = append(lines[:300], fmt.Sprintf("… %d more lines", len(lines)-300))
	}
	t.Errorf("e2fsck -fn %s: %v; %d unexpected lines; output:\n%s", img, err, len(bad), strings.Join(lines, "\n"))
	return res
}

// checkPre1970 checks that each inode e2fsck took for a mis-encoded
// pre-1970 time has an input time in the 2310..2378 window.
func checkPre1970(t *testing.T, inodes []uint64, m *model, act map[string]*actual) {
	t.Helper()
	if len(inodes) == 0 {
		return
	}
	byIno := map[uint64]string{}
	for p, a := range act {
		byIno[a.stx.Ino] = p
	}
	for _, ino := range inodes {
		p, ok := byIno[ino]
		n := m.nodes[p]
		switch {
		case !ok:
			t.Errorf("e2fsck: timestamps of inode %d (no name on the mount) are likely pre-1970", ino)
		case n == nil:
			t.Errorf("e2fsck: timestamps of inode %d (%s, not in the input) are likely pre-1970", ino, show(p))
		case !inHeuristicWindow(n.mtime): // implicit directories have the epoch
			t.Errorf("e2fsck: timestamps of inode %d (%s, mtime %v) are likely pre-1970: the time is encoded the old, wrong way", ino, show(p), n.mtime.UTC())
		}
	}
}

// checkSuperblock compares what dumpe2fs -h shows with the options.
func checkSuperblock(t *testing.T, img string, o ext4.Options) {
	t.Helper()
	cmd := exec.Command("dumpe2fs", "-h", img)
	cmd.Env = append(os.Environ(), "TZ=UTC")
	out, err := cmd.Output()
	if err != nil {
		t.Errorf("dumpe2fs -h: %v\n%s", err, out)
		return
	}
	f := map[string]string{}
	for _, l := range strings.Split(string(out), "\n") {
		if k, v, ok := strings.Cut(l, ":"); ok {
			f[k] = strings.TrimSpace(v)
		}
	}
	uuid := func(b [16]byte) string {
		h := hex.EncodeToString(b[:])
		return h[:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
	}
	label := o.Label
	if label == "" {
		label = "<none>"
	}
	ep := time.Unix(o.Epoch, 0).UTC().Format("Mon Jan _2 15:04:05 2006")
	bs, _ := strconv.ParseInt(f["Block size"], 10, 64)
	bc, _ := strconv.ParseInt(f["Block count"], 10, 64)
	for _, c := range []struct{ field, want string }{
		{"Filesystem volume name", label},
		{"Filesystem UUID", uuid(o.UUID)},
		{"Directory Hash Seed", uuid(o.HashSeed)},
		{"Filesystem created", ep},
		{"Last write time", ep},
		{"Filesystem state", "clean"},
		{"Size", fmt.Sprint(o.Size)},
	} {
		got := f[c.field]
		if c.field == "Size" {
			got = fmt.Sprint(bs * bc)
		}
		if got != c.want {
			t.Errorf("superblock: %s is %q, want %q", c.field, got, c.want)
		}
	}
}

func mountRO(t *testing.T, img string) string {
	t.Helper()
	mnt := t.TempDir()
	out, err := exec.Command("mount", "-t", "ext4", "-o", "loop,ro,noload", img, mnt).CombinedOutput()
	if err != nil {
		dm, _ := exec.Command("sh", "-c", "dmesg | tail -n 15").CombinedOutput()
		t.Fatalf("mount -o loop,ro,noload %s: %v\n%s\nkernel log:\n%s", img, err, out, dm)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", mnt).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v\n%s", mnt, err, out)
		}
	})
	return mnt
}

// checkMounted mounts img, walks it and compares it with the model.
func checkMounted(t *testing.T, img string, m *model, o cmpOpts, fr fsckResult) {
	t.Helper()
	start := time.Now()
	mnt := mountRO(t, img)
	act, err := walkMount(mnt, m)
	if err != nil {
		t.Fatalf("walking the mount: %v", err)
	}
	t.Logf("mount and walk of %d names: %v", len(act), time.Since(start).Round(time.Millisecond))
	checkPre1970(t, fr.pre1970, m, act)
	reportMismatches(t, "mounted filesystem vs input", compare(m, act, o))
}

func keepOnFailure(t *testing.T, img string) {
	t.Cleanup(func() {
		if !t.Failed() || *flagKeep == "" {
			return
		}
		dst := filepath.Join(*flagKeep, strings.NewReplacer("/", "_", "=", "-").Replace(t.Name())+".img")
		if out, err := exec.Command("cp", "--sparse=always", img, dst).CombinedOutput(); err != nil {
			t.Logf("keeping the image: %v\n%s", err, out)
		} else {
			t.Logf("image kept in %s", dst)
		}
	})
}

func treeStats(tr *tree) string {
	c := map[string]int{}
	var data int64
	for _, e := range tr.entries {
		k := string(e.hdr.Typeflag)
		if isSock(e.hdr) {
			k = "sock"
		}
		c[k]++
		if e.data != nil {
			for _, s := range e.data.segs {
				data += s.n
			}
		}
	}
	return fmt.Sprintf("%d entries (reg %d, dir %d, symlink %d, link %d, char %d, block %d, fifo %d, socket %d), %d MiB of data",
		len(tr.entries), c["0"], c["5"], c["2"], c["1"], c["3"], c["4"], c["6"], c["sock"], data>>20)
}

// ---------------------------------------------------------------------------
// The tests.

// TestPropertyTree is the property test: a random tree through the writer,
// e2fsck, and a field-by-field comparison of the mounted filesystem.
func TestPropertyTree(t *testing.T) {
	needTool(t, "e2fsck")
	seeds := []uint64{*flagSeed}
	if *flagLong {
		seeds = []uint64{*flagSeed, *flagSeed + 1, *flagSeed + 2}
	}
	for _, seed := range seeds {
		t.Run(fmt.Sprintf("seed=%d", seed), func(t *testing.T) {
			cfg := defaultConfig(seed)
			runProperty(t, cfg)
		})
	}
}

func runProperty(t *testing.T, cfg genConfig) {
	t.Helper()
	start := time.Now()
	tr := generate(cfg)
	m, err := buildModel(tr, testEpoch)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("seed %d: %s; generated in %v", cfg.seed, treeStats(tr), time.Since(start).Round(time.Millisecond))
	img := filepath.Join(t.TempDir(), "fs.img")
	keepOnFailure(t, img)
	start = time.Now()
	if err := writeFS(img, 0, testOptions(cfg.seed, cfg.fsSize), tr.entries, nil); err != nil {
		t.Fatalf("writer: %v", err)
	}
	t.Logf("writer: %v", time.Since(start).Round(time.Millisecond))
	checkSuperblock(t, img, testOptions(cfg.seed, cfg.fsSize))
	fr := fsck(t, img)
	needRoot(t)
	checkMounted(t, img, m, writerCmp, fr)
}

// TestPropertyOffset writes a filesystem at 1 MiB into a file and checks
// that no byte outside it changed.
func TestPropertyOffset(t *testing.T) {
	needTool(t, "e2fsck")
	cfg := genConfig{seed: *flagSeed + 1000, entries: 300, hugeSize: 64<<20 + 5, fragExtents: 50, deep: 3, variations: true, fsSize: 256 << 20}
	tr := generate(cfg)
	m, err := buildModel(tr, testEpoch)
	if err != nil {
		t.Fatal(err)
	}
	const off = 1 << 20
	img := filepath.Join(t.TempDir(), "disk.img")
	guard := func(n int, seed byte) []byte {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(i*7) ^ seed
		}
		return b
	}
	before, after := guard(off, 0xa5), guard(off, 0x5a)
	f, err := os.Create(img)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteAt(before, 0)
	f.WriteAt(after, off+cfg.fsSize)
	f.Close()
	if err := writeFS(img, off, testOptions(cfg.seed, cfg.fsSize), tr.entries, nil); err != nil {
		t.Fatalf("writer: %v", err)
	}
	raw, err := os.ReadFile(img)
	if err != nil {
		t.Fatal(err)
	}
	if len(raw) != 2*off+int(cfg.fsSize) {
		t.Errorf("the disk file is %d bytes, want %d: the writer wrote past off+Size", len(raw), 2*off+cfg.fsSize)
	}
	if i := firstDifference(raw[:off], before); i >= 0 {
		t.Errorf("byte %d before the filesystem changed", i)
	}
	if len(raw) >= 2*off+int(cfg.fsSize) {
		if i := firstDifference(raw[off+cfg.fsSize:off+cfg.fsSize+off], after); i >= 0 {
			t.Errorf("byte %d after the filesystem (at %d) changed", i, off+cfg.fsSize+int64(i))
		}
	}
	// The filesystem alone, for e2fsck and the mount (sparse).
	part := filepath.Join(t.TempDir(), "part.img")
	pf, err := os.Create(part)
	if err != nil {
		t.Fatal(err)
	}
	fs := raw[off : off+cfg.fsSize]
	for b := 0; b < len(fs); b += blockSize {
		if blk := fs[b : b+blockSize]; !bytes.Equal(blk, zeroBlock[:]) {
			if _, err := pf.WriteAt(blk, int64(b)); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := pf.Truncate(cfg.fsSize); err != nil {
		t.Fatal(err)
	}
	pf.Close()
	raw = nil
	keepOnFailure(t, part)
	checkSuperblock(t, part, testOptions(cfg.seed, cfg.fsSize))
	fr := fsck(t, part)
	needRoot(t)
	checkMounted(t, part, m, writerCmp, fr)
}

func firstDifference(a, b []byte) int {
	for i := range a {
		if a[i] != b[i] {
			return i
		}
	}
	return -1
}

// TestPropertyDeterminism writes one stream twice, the second time through
// readers that return half of what is asked: the bytes must be the same.
func TestPropertyDeterminism(t *testing.T) {
	cfg := genConfig{seed: *flagSeed + 2000, entries: 800, bigDir: 3000, hugeSize: 1<<32 + 77, fragExtents: 400, deep: 10, rootEntry: true, variations: true, fsSize: 512 << 20}
	tr := generate(cfg)
	o := testOptions(cfg.seed, cfg.fsSize)
	dir := t.TempDir()
	a, b := filepath.Join(dir, "a.img"), filepath.Join(dir, "b.img")
	if err := writeFS(a, 0, o, tr.entries, nil); err != nil {
		t.Fatalf("writer: %v", err)
	}
	if err := writeFS(b, 0, o, tr.entries, iotest.HalfReader); err != nil {
		t.Fatalf("writer (half reads): %v", err)
	}
	da, db := imageDigest(t, a), imageDigest(t, b)
	if da == db {
		t.Logf("both images: %s", da)
		return
	}
	fa, _ := os.Open(a)
	defer fa.Close()
	fb, _ := os.Open(b)
	defer fb.Close()
	ba, bb := make([]byte, blockSize), make([]byte, blockSize)
	var diffs []string
	for off := int64(0); off < cfg.fsSize && len(diffs) < 10; off += blockSize {
		fa.ReadAt(ba, off)
		fb.ReadAt(bb, off)
		if i := firstDifference(ba, bb); i >= 0 {
			diffs = append(diffs, fmt.Sprintf("block %d (byte %d)", off/blockSize, off+int64(i)))
		}
	}
	t.Errorf("two writes of one stream differ (%s vs %s); first differing blocks: %s", da, db, strings.Join(diffs, ", "))
}

func imageDigest(t *testing.T, p string) string {
	t.Helper()
	fd, err := unix.Open(p, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		t.Fatal(err)
	}
	d, _, err := fileDigest(fd, st.Size)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// TestPropertyDebugfsTimes reads the raw inode times with debugfs: the
// seconds, the epoch bits and the nanoseconds, without the kernel.
func TestPropertyDebugfsTimes(t *testing.T) {
	needTool(t, "debugfs", "e2fsck")
	cases := []struct {
		name    string
		sec, ns int64
	}{
		{"post-2038", 4000000000, 0},
		{"post-2038-ns", 4000000000, 123456789},
		{"pre-1970", -2000000000, 987654321},
		{"min", minTime, 0},
		{"minus-one", -1, 999999999},
		{"max", maxTime, 999999999},
		{"y2038", 1 << 31, 1},
		{"zero", 0, 0},
	}
	var entries []*entry
	for i, c := range cases {
		entries = append(entries, &entry{hdr: &tar.Header{Typeflag: tar.TypeReg, Name: c.name, Mode: 0o644, Size: 1, ModTime: time.Unix(c.sec, c.ns)}, data: full(1, uint64(i))})
	}
	entries = append(entries, &entry{hdr: &tar.Header{Typeflag: tar.TypeDir, Name: "dir-2100/", Mode: 0o755, ModTime: time.Unix(4102444800, 5)}})
	cases = append(cases, struct {
		name    string
		sec, ns int64
	}{"dir-2100", 4102444800, 5})
	img := filepath.Join(t.TempDir(), "fs.img")
	if err := writeFS(img, 0, testOptions(7, 32<<20), entries, nil); err != nil {
		t.Fatalf("writer: %v", err)
	}
	fsck(t, img)
	for _, c := range append(cases, struct {
		name    string
		sec, ns int64
	}{"", testEpoch, 0}) {
		fields, err := debugfsTimes(img, "/"+c.name)
		if err != nil {
			t.Errorf("%s: %v", c.name, err)
			continue
		}
		want := map[string][2]int64{"mtime": {c.sec, c.ns}, "atime": {testEpoch, 0}, "ctime": {testEpoch, 0}, "crtime": {testEpoch, 0}}
		for f, w := range want {
			got, ok := fields[f]
			if !ok {
				t.Errorf("/%s: debugfs shows no %s (no extra inode fields?)", c.name, f)
			} else if got != w {
				t.Errorf("/%s: %s is %d.%09d, want %d.%09d (%s)", c.name, f, got[0], got[1], w[0], w[1], time.Unix(w[0], w[1]).UTC().Format(time.RFC3339Nano))
			}
		}
	}
}

var debugfsTime = regexp.MustCompile(`(?m)^\s*(a|c|m|cr)time: 0x([0-9a-f]{8})(?::([0-9a-f]{8}))?`)

// debugfsTimes decodes the times debugfs prints as seconds:extra, where
// extra is the nanoseconds shifted left by two over two epoch bits.
func debugfsTimes(img, p string) (map[string][2]int64, error) {
	cmd := exec.Command("debugfs", "-R", "stat "+p, img)
	cmd.Env = append(os.Environ(), "DEBUGFS_PAGER=__none__", "PAGER=__none__")
	out, err := cmd.CombinedOutput()
	if err != nil {
		return nil, fmt.Errorf("debugfs: %v\n%s", err, out)
	}
	res := map[string][2]int64{}
	for _, m := range debugfsTime.FindAllStringSubmatch(string(out), -1) {
		lo, _ := strconv.ParseUint(m[2], 16, 32)
		sec, ns := int64(int32(uint32(lo))), int64(0)
		if m[3] != "" {
			extra, _ := strconv.ParseUint(m[3], 16, 32)
			sec += int64(extra&3) << 32
			ns = int64(extra >> 2)
		}
		res[m[1]+"time"] = [2]int64{sec, ns}
	}
	if len(res) == 0 {
		return nil, fmt.Errorf("no times in debugfs output:\n%s", out)
	}
	return res, nil
}

// TestPropertyBadInput: bad streams and options give errors that say
// what is wrong, never a panic or a silently wrong filesystem.
func TestPropertyBadInput(t *testing.T) {
	reg := func(name string, data string) *entry {
		return &entry{hdr: &tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: 0o644, Size: int64(len(data)), ModTime: time.Unix(1, 0)}, data: &content{size: int64(len(data)), segs: []seg{{0, int64(len(data)), 1}}}}
	}
	hdr := func(typ byte, name, link string) *entry {
		return &entry{hdr: &tar.Header{Typeflag: typ, Name: name, Linkname: link, Mode: 0o755, ModTime: time.Unix(1, 0)}}
	}
	opts := func(mut func(*ext4.Options)) ext4.Options {
		o := testOptions(3, 32<<20)
		if mut != nil {
			mut(&o)
		}
		return o
	}
	type stream struct {
		hdr *tar.Header
		r   io.Reader
	}
	entries := func(es ...*entry) []stream {
		var s []stream
		for _, e := range es {
			s = append(s, stream{e.hdr, e.reader()})
		}
		return s
	}
	cases := []struct {
		name  string
		o     ext4.Options
		in    []stream
		want  []string // the error names one of these (case-insensitive)
		extra bool     // beyond the list
		why   string   // what goes wrong when it is written
	}{
		{name: "hard link to a missing target", o: opts(nil),
			in: entries(reg("present", "x"), hdr(tar.TypeLink, "link", "no-such-target")), want: []string{"no-such-target"}},
		{name: "hard link to a directory", o: opts(nil),
			in: entries(hdr(tar.TypeDir, "somedir/", ""), hdr(tar.TypeLink, "dirlink", "somedir")), want: []string{"somedir", "dirlink"}},
		{name: "name component longer than 255 bytes", o: opts(nil),
			in: entries(reg("ok/"+strings.Repeat("n", 256), "x")), want: []string{"255", "long"}},
		{name: "reader shorter than hdr.Size", o: opts(nil),
			in:   []stream{{&tar.Header{Typeflag: tar.TypeReg, Name: "truncated-file", Mode: 0o644, Size: 10000, ModTime: time.Unix(1, 0)}, strings.NewReader(strings.Repeat("y", 5000))}},
			want: []string{"truncated-file"}},
		{name: "filesystem too small", o: opts(func(o *ext4.Options) { o.Size = 16 << 20 }),
			in: entries(reg("a", ""), &entry{hdr: &tar.Header{Typeflag: tar.TypeReg, Name: "big", Mode: 0o644, Size: 32 << 20, ModTime: time.Unix(1, 0)}, data: full(32<<20, 9)}), want: []string{"full"}},
		{name: "unknown typeflag", o: opts(nil),
			in: entries(hdr('Z', "weird-type", "")), want: []string{"weird-type"}},
		{name: "duplicate path", o: opts(nil),
			in: entries(reg("twice.txt", "a"), reg("twice.txt", "b")), want: []string{"twice.txt"}},
		{name: "duplicate path, file then directory", o: opts(nil),
			in: entries(reg("fd", "a"), hdr(tar.TypeDir, "fd/", "")), want: []string{"fd"}},
		{name: "parent is not a directory", extra: true, o: opts(nil),
			in: entries(reg("plain", "a"), reg("plain/child", "b")), want: []string{"plain"}},
		{name: "dot-dot component", extra: true, o: opts(nil),
			in: entries(reg("../escape", "a")), want: []string{"escape", ".."}},
		{name: "symlink target longer than 4095 bytes", extra: true, o: opts(nil),
			in: entries(hdr(tar.TypeSymlink, "longlink", strings.Repeat("t", 4096))), want: []string{"longlink"}},
		{name: "xattrs too big for a block", extra: true, o: opts(nil),
			in:   []stream{{&tar.Header{Typeflag: tar.TypeReg, Name: "fat-xattr", Mode: 0o644, ModTime: time.Unix(1, 0), PAXRecords: map[string]string{"SCHILY.xattr.user.big": strings.Repeat("v", 5000)}}, strings.NewReader("")}},
			want: []string{"fat-xattr"}},
		{name: "NUL in a name", extra: true, o: opts(nil),
			in: entries(reg("nul\x00name", "a")), want: []string{"nul"}},
		{name: "NUL in a symlink target", extra: true, o: opts(nil),
			in: entries(hdr(tar.TypeSymlink, "nul-target", "a\x00b")), want: []string{"nul-target"},
			why: "e2fsck: \"Symlink /nul-target is invalid\"; the kernel: EUCLEAN (structure needs cleaning) on stat"},
		{name: "xattr name longer than 255 bytes", extra: true, o: opts(nil),
			in:   []stream{{&tar.Header{Typeflag: tar.TypeReg, Name: "long-xattr-name", Mode: 0o644, ModTime: time.Unix(1, 0), PAXRecords: map[string]string{"SCHILY.xattr.user." + strings.Repeat("n", 251): "v"}}, strings.NewReader("")}},
			want: []string{"long-xattr-name"},
			why:  "Linux xattr names are at most 255 bytes with the prefix: the kernel lists the name but getxattr gives ERANGE, and it cannot be removed"},
		{name: "xattr of no namespace ext4 has", extra: true, o: opts(nil),
			in:   []stream{{&tar.Header{Typeflag: tar.TypeReg, Name: "odd-xattr", Mode: 0o644, ModTime: time.Unix(1, 0), PAXRecords: map[string]string{"SCHILY.xattr.foo.bar": "v"}}, strings.NewReader("")}},
			want: []string{"odd-xattr"}},
		{name: "malformed POSIX ACL", extra: true, o: opts(nil),
			in:   []stream{{&tar.Header{Typeflag: tar.TypeReg, Name: "bad-acl", Mode: 0o644, ModTime: time.Unix(1, 0), PAXRecords: map[string]string{"SCHILY.xattr.system.posix_acl_access": "garbage"}}, strings.NewReader("")}},
			want: []string{"bad-acl"}},
		{name: "device number beyond 12+20 bits", extra: true, o: opts(nil),
			in: []stream{{&tar.Header{Typeflag: tar.TypeChar, Name: "big-dev", Mode: 0o600, Devmajor: 4096, ModTime: time.Unix(1, 0)}, strings.NewReader("")}}, want: []string{"big-dev"}},
		{name: "owner beyond 32 bits", extra: true, o: opts(nil),
			in: []stream{{&tar.Header{Typeflag: tar.TypeReg, Name: "big-uid", Mode: 0o600, Uid: 1 << 32, ModTime: time.Unix(1, 0)}, strings.NewReader("")}}, want: []string{"big-uid"}},
		{name: "negative size", extra: true, o: opts(nil),
			in: []stream{{&tar.Header{Typeflag: tar.TypeReg, Name: "neg-size", Mode: 0o600, Size: -5, ModTime: time.Unix(1, 0)}, strings.NewReader("")}}, want: []string{"neg-size"}},
		{name: "time outside 1901..2446", extra: true, o: opts(nil),
			in: []stream{{&tar.Header{Typeflag: tar.TypeReg, Name: "far-future", Mode: 0o600, ModTime: time.Unix(maxTime+1, 0)}, strings.NewReader("")}}, want: []string{"far-future"}},
		{name: "epoch outside 1901..2446", extra: true, o: opts(func(o *ext4.Options) { o.Epoch = minTime - 1 }), want: []string{"epoch"}},
		{name: "more than 65,000 links", extra: true, o: opts(func(o *ext4.Options) { o.Size = 64 << 20 }),
			in: func() []stream {
				s := []stream{{&tar.Header{Typeflag: tar.TypeReg, Name: "popular", Mode: 0o600, ModTime: time.Unix(1, 0)}, strings.NewReader("")}}
				for i := range 65000 {
					s = append(s, stream{&tar.Header{Typeflag: tar.TypeLink, Name: fmt.Sprintf("l%d", i), Linkname: "popular", ModTime: time.Unix(1, 0)}, strings.NewReader("")})
				}
				return s
			}(), want: []string{"popular"}},
		{name: "out of inodes", extra: true, o: opts(func(o *ext4.Options) { o.Size = 16 << 20 }),
			in: func() []stream {
				var s []stream
				for i := range 5000 {
					s = append(s, stream{&tar.Header{Typeflag: tar.TypeReg, Name: fmt.Sprintf("f%d", i), Mode: 0o600, ModTime: time.Unix(1, 0)}, strings.NewReader("")})
				}
				return s
			}(), want: []string{"full"}},
		{name: "size not a multiple of 4096", extra: true, o: opts(func(o *ext4.Options) { o.Size = 32<<20 + 512 }), want: []string{"size"}},
		{name: "size under 16 MiB", extra: true, o: opts(func(o *ext4.Options) { o.Size = 8 << 20 }), want: []string{"size"}},
		{name: "label over 16 bytes", extra: true, o: opts(func(o *ext4.Options) { o.Label = strings.Repeat("L", 17) }), want: []string{"label"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			img := filepath.Join(t.TempDir(), "fs.img")
			err := func() (err error) {
				defer func() {
					if r := recover(); r != nil {
						err = fmt.Errorf("PANIC: %v\n%s", r, debug.Stack())
					}
				}()
				f, err := os.Create(img)
				if err != nil {
					return err
				}
				defer f.Close()
				if err := f.Truncate(max(c.o.Size, 16<<20)); err != nil {
					return err
				}
				w, err := ext4.New(f, 0, c.o)
				if err != nil {
					return err
				}
				for _, s := range c.in {
					if err := w.Add(s.hdr, s.r); err != nil {
						return err
					}
				}
				return w.Close()
			}()
			note := ""
			if c.extra {
				note = " (a case beyond the issue's list)"
			}
			if err == nil {
				if c.why != "" {
					note += "; written, " + c.why
				}
				t.Fatalf("no error%s", note)
			}
			if strings.Contains(err.Error(), "PANIC") {
				t.Fatalf("%v", err)
			}
			msg := strings.ToLower(err.Error())
			for _, w := range c.want {
				if strings.Contains(msg, strings.ToLower(w)) {
					t.Logf("error: %v", err)
					return
				}
			}
			t.Errorf("error %q names none of %q%s", err, c.want, note)
		})
	}
}
