package ext4

import "errors"

// ErrFull says the filesystem has no room left for the entries.
var ErrFull = errors.New("filesystem full")

// allocator hands out blocks in increasing order, skipping the groups'
// metadata: files are laid out one after another as they arrive.
type allocator struct {
	used   bitmap
	blocks uint64
	next   uint64 // no free block below this
}

// alloc returns the first free run at or after the cursor, of at most want
// blocks.
func (a *allocator) alloc(want uint64) (start, n uint64, err error) {
	i := a.next
	for i < a.blocks && a.used.get(i) {
		i++
	}
	if i >= a.blocks {
		return 0, 0, ErrFull
	}
	start = i
	for i < a.blocks && i-start < want && !a.used.get(i) {
		a.used.set(i)
		i++
	}
	a.next = i
	return start, i - start, nil
}

// allocAll allocates exactly n blocks, in as few runs as the free space
// allows.
func (a *allocator) allocAll(n uint64) ([]run, error) {
	var runs []run
	for n > 0 {
		s, got, err := a.alloc(n)
		if err != nil {
			return nil, err
		}
		runs = append(runs, run{start: s, n: got})
		n -= got
	}
	return runs, nil
}

// run is a range of physical blocks.
type run struct{ start, n uint64 }
