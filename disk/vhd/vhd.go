// Package vhd writes fixed VHD disks: the raw bytes followed by a 512-byte
// footer, as Azure requires (virtual size a whole number of MiB).
package vhd

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/layerimg/layerimg/disk/sparse"
)

// FooterSize is the size of the VHD footer.
const FooterSize = 512

const mib = 1 << 20

// vhdEpoch is where VHD timestamps count from.
var vhdEpoch = time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)

// Footer builds the footer of a fixed VHD of size bytes (not counting the
// footer). id is its unique id; stamp its creation time.
func Footer(size int64, id [16]byte, stamp time.Time) []byte {
	f := make([]byte, FooterSize)
	copy(f[0:8], Cookie)
	binary.BigEndian.PutUint32(f[8:], 2)                   // features: reserved bit
	binary.BigEndian.PutUint32(f[12:], 0x00010000)         // format version 1.0
	binary.BigEndian.PutUint64(f[16:], 0xFFFFFFFFFFFFFFFF) // data offset: none, fixed disk
	secs := stamp.Sub(vhdEpoch) / time.Second
	if secs < 0 {
		secs = 0
	}
	binary.BigEndian.PutUint32(f[24:], uint32(secs))
	// Creator "win " (as Hyper-V writes): readers such as qemu then take the
	// size field as the size instead of recomputing it from CHS geometry.
	copy(f[28:32], "win ")                         // creator application
	binary.BigEndian.PutUint32(f[32:], 0x00010000) // creator version
	copy(f[36:40], "Wi2k")                         // creator host OS, as Azure's tools write
	binary.BigEndian.PutUint64(f[40:], uint64(size))
	binary.BigEndian.PutUint64(f[48:], uint64(size))
	c, h, s := geometry(size / 512)
	binary.BigEndian.PutUint16(f[56:], c)
	f[58], f[59] = h, s
	binary.BigEndian.PutUint32(f[60:], 2) // fixed disk
	copy(f[68:84], id[:])
	binary.BigEndian.PutUint32(f[64:], checksum(f))
	return f
}

// checksum is the one's complement of the byte sum, over the footer with
// its checksum field taken as zero.
func checksum(f []byte) uint32 {
	var sum uint32
	for i, b := range f {
		if i >= 64 && i < 68 {
			continue
		}
		sum += uint32(b)
	}
	return ^sum
}

// geometry is the CHS geometry from the VHD specification's algorithm.
func geometry(sectors int64) (cyl uint16, heads, spt uint8) {
	if sectors > 65535*16*255 {
		sectors = 65535 * 16 * 255
	}
	var h, s, cth int64
	if sectors >= 65535*16*63 {
		s, h = 255, 16
		cth = sectors / s
	} else {
		s = 17
		cth = sectors / s
		h = (cth + 1023) / 1024
		if h < 4 {
			h = 4
		}
		if cth >= h*1024 || h > 16 {
			s, h = 31, 16
			cth = sectors / s
		}
		if cth >= h*1024 {
			s, h = 63, 16
			cth = sectors / s
		}
	}
	return uint16(cth / h), uint8(h), uint8(s)
}

// Size is the virtual size a raw disk of n bytes gets: n rounded up to MiB.
func Size(n int64) int64 { return (n + mib - 1) / mib * mib }

// MaxSize is the largest disk the VHD format (and Azure) takes: 2040 GiB.
const MaxSize = 2040 << 30

func checkSize(n int64) error {
	if Size(n) > MaxSize {
		return fmt.Errorf("disk of %d bytes is larger than a VHD can hold (2040 GiB)", n)
	}
	return nil
}

// Cookie starts a VHD footer (and a dynamic VHD's copy of it at the head).
const Cookie = "conectix"

// Is reports whether a file whose first and last 512 bytes are head and
// tail is a VHD: fixed ones end with the footer, dynamic ones also start
// with a copy of it.
func Is(head, tail []byte) bool {
	return bytes.HasPrefix(tail, []byte(Cookie)) || bytes.HasPrefix(head, []byte(Cookie))
}

// Writer writes fixed VHDs, keeping holes.
type Writer struct {
	ID      [16]byte  // the footer's unique id
	Created time.Time // the footer's timestamp
}

// Write writes the fixed VHD of the first size bytes of src to dst.
func (w Writer) Write(_ context.Context, dst, src *os.File, size int64) error {
	if err := checkSize(size); err != nil {
		return err
	}
	vsize := Size(size)
	if err := dst.Truncate(vsize); err != nil {
		return err
	}
	if err := sparse.Copy(dst, 0, src, size); err != nil {
		return err
	}
	_, err := dst.WriteAt(Footer(vsize, w.ID, w.Created), vsize)
	return err
}

// AppendInPlace turns a raw disk into a fixed VHD by padding it to a whole
// MiB and appending the footer, with no copy.
func AppendInPlace(path string, id [16]byte, stamp time.Time) error {
	f, rawSize, err := sparse.Open(path, os.O_RDWR)
	if err != nil {
		return err
	}
	defer f.Close()
	if ok, _ := hasFooter(f, rawSize); ok {
		return fmt.Errorf("%s already ends with a VHD footer", path)
	}
	if err := checkSize(rawSize); err != nil {
		return err
	}
	size := Size(rawSize)
	if err := f.Truncate(size); err != nil {
		return err
	}
	if _, err := f.WriteAt(Footer(size, id, stamp), size); err != nil {
		return err
	}
	return f.Close()
}

func hasFooter(f io.ReaderAt, size int64) (bool, error) {
	if size < FooterSize {
		return false, nil
	}
	b := make([]byte, 8)
	if _, err := f.ReadAt(b, size-FooterSize); err != nil {
		return false, err
	}
	return string(b) == Cookie, nil
}

// Check validates a fixed VHD the way Azure does: a footer with the right
// cookie, type and checksum, and a virtual size that is a whole MiB and
// matches the file.
func Check(path string) error {
	f, size, err := sparse.Open(path, os.O_RDONLY)
	if err != nil {
		return err
	}
	defer f.Close()
	if size < FooterSize || (size-FooterSize)%mib != 0 {
		return fmt.Errorf("%s: size %d is not a whole number of MiB plus the 512-byte footer", path, size)
	}
	ft := make([]byte, FooterSize)
	if _, err := f.ReadAt(ft, size-FooterSize); err != nil {
		return err
	}
	switch {
	case string(ft[:8]) != Cookie:
		return fmt.Errorf("%s: no VHD footer", path)
	case binary.BigEndian.Uint32(ft[60:]) != 2:
		return fmt.Errorf("%s: not a fixed VHD (disk type %d)", path, binary.BigEndian.Uint32(ft[60:]))
	case binary.BigEndian.Uint32(ft[64:]) != checksum(ft):
		return fmt.Errorf("%s: footer checksum is wrong", path)
	case int64(binary.BigEndian.Uint64(ft[48:])) != size-FooterSize:
		return fmt.Errorf("%s: footer says %d bytes, file holds %d", path, binary.BigEndian.Uint64(ft[48:]), size-FooterSize)
	}
	return nil
}
