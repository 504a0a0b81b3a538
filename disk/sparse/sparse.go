// Package sparse finds the data in a disk image without reading its holes,
// and copies images while keeping holes holes.
package sparse

import (
	"errors"
	"io"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// Range is a byte range [Off, Off+Len).
type Range struct{ Off, Len int64 }

// DataRanges lists the ranges of f that the filesystem says hold data, with
// each range widened to whole blocks of align bytes. Holes are never read.
// Where SEEK_DATA is not supported, the whole file is one range.
func DataRanges(f *os.File, size, align int64) ([]Range, error) {
	var out []Range
	off := int64(0)
	for off < size {
		data, err := unix.Seek(int(f.Fd()), off, unix.SEEK_DATA)
		if errors.Is(err, unix.ENXIO) {
			break // only a hole is left
		}
		if err != nil {
			return []Range{{0, size}}, nil
		}
		if data >= size {
			break // data only past the part asked for
		}
		hole, err := unix.Seek(int(f.Fd()), data, unix.SEEK_HOLE)
		if err != nil {
			return []Range{{0, size}}, nil
		}
		start := data / align * align
		end := min((hole+align-1)/align*align, size)
		if n := len(out); n > 0 && out[n-1].Off+out[n-1].Len >= start {
			out[n-1].Len = max(out[n-1].Len, end-out[n-1].Off)
		} else {
			out = append(out, Range{start, end - start})
		}
		off = hole
	}
	return out, nil
}

// IsZero reports whether b is all zero bytes.
func IsZero(b []byte) bool {
	// Compare eight bytes at a time; most blocks that are not zero fail early.
	for len(b) >= 8 {
		if b[0]|b[1]|b[2]|b[3]|b[4]|b[5]|b[6]|b[7] != 0 {
			return false
		}
		b = b[8:]
	}
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

// Blocks calls fn for every block of size bs of src in [0,size) that holds
// a non-zero byte, in order. The last block may be short. Reads are batched
// into chunks of at least 1 MiB; the slice passed to fn is reused.
func Blocks(src *os.File, size, bs int64, fn func(off int64, b []byte) error) error {
	ranges, err := DataRanges(src, size, bs)
	if err != nil {
		return err
	}
	chunk := max(bs, (1<<20)/bs*bs)
	buf := make([]byte, chunk)
	for _, r := range ranges {
		for off := r.Off; off < r.Off+r.Len; off += chunk {
			n := min(chunk, r.Off+r.Len-off, size-off)
			if _, err := src.ReadAt(buf[:n], off); err != nil && !errors.Is(err, io.EOF) {
				return err
			}
			for b := int64(0); b < n; b += bs {
				blk := buf[b:min(b+bs, n)]
				if IsZero(blk) {
					continue
				}
				if err := fn(off+b, blk); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

// Copy copies src's first size bytes to dst at dstOff, writing only the
// blocks that hold data, so that dst keeps its holes. dst must be zero (or a
// hole) in that range beforehand.
func Copy(dst *os.File, dstOff int64, src *os.File, size int64) error {
	return Blocks(src, size, 1<<20, func(off int64, b []byte) error {
		_, err := dst.WriteAt(b, dstOff+off)
		return err
	})
}

// Open opens path with flag (os.O_RDONLY, os.O_RDWR) and returns the file
// and its size.
func Open(path string, flag int) (*os.File, int64, error) {
	f, err := os.OpenFile(path, flag, 0)
	if err != nil {
		return nil, 0, err
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, 0, err
	}
	return f, fi.Size(), nil
}

// WriteAtomicFrom creates dst through WriteAtomic from the file src: fill
// gets the temporary file, src open for reading and src's size.
func WriteAtomicFrom(dst, src string, fill func(out, in *os.File, size int64) error) error {
	in, size, err := Open(src, os.O_RDONLY)
	if err != nil {
		return err
	}
	defer in.Close()
	return WriteAtomic(dst, func(out *os.File) error { return fill(out, in, size) })
}

// WriteAtomic creates path through fill on a temporary file beside it and
// renames it into place only when fill succeeds: an interrupted or failed
// write never leaves a file that looks finished.
func WriteAtomic(path string, fill func(*os.File) error) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if err := fill(tmp); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Chmod(0o644); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}
