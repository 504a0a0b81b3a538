package sparse

import (
	"crypto/sha256"
	"fmt"
	"hash"
	"io"
	"os"
)

// DigestFile is the sha256 (hex) of a sparse file. Holes are hashed from
// memory, not read: reading gigabytes of holes costs more than hashing them.
func DigestFile(p string) (string, error) {
	return DigestPrefix(p, -1)
}

// DigestPrefix is the sha256 (hex) of the first n bytes of a sparse file,
// or of all of it when n < 0.
func DigestPrefix(p string, n int64) (string, error) {
	f, err := os.Open(p)
	if err != nil {
		return "", err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return "", err
	}
	size := fi.Size()
	if n >= 0 && n < size {
		size = n
	}
	ranges, err := DataRanges(f, size, 4096)
	if err != nil {
		return "", err
	}
	h := sha256.New()
	zeros := make([]byte, 1<<20)
	off := int64(0)
	for _, r := range ranges {
		hashZeros(h, zeros, r.Off-off)
		if _, err := io.Copy(h, io.NewSectionReader(f, r.Off, r.Len)); err != nil {
			return "", fmt.Errorf("hashing %s: %w", p, err)
		}
		off = r.Off + r.Len
	}
	hashZeros(h, zeros, size-off)
	return fmt.Sprintf("%x", h.Sum(nil)), nil
}

// hashZeros feeds n zero bytes to h from the zeroed buffer zeros.
func hashZeros(h hash.Hash, zeros []byte, n int64) {
	for n > 0 {
		k := min(n, int64(len(zeros)))
		h.Write(zeros[:k])
		n -= k
	}
}
