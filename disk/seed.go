package disk

import (
	"crypto/sha256"
	"fmt"
	"io"
	"os"
)

// RawIDs are the ids for converting the raw disk at p, derived from its
// first MiB (the GPT, and so the image-derived disk GUID) and its size: the
// same raw disk always converts to the same bytes.
func RawIDs(p string) (IDs, error) {
	seed, err := headSeed(p)
	if err != nil {
		return IDs{}, err
	}
	return DeriveIDs(seed, false), nil
}

func headSeed(p string) (string, error) {
	f, err := os.Open(p)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.CopyN(h, f, 1<<20); err != nil && err != io.EOF {
		return "", fmt.Errorf("reading %s: %w", p, err)
	}
	fi, err := f.Stat()
	if err != nil {
		return "", err
	}
	return fmt.Sprintf("%x/%d", h.Sum(nil), fi.Size()), nil
}
