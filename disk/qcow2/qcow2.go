// Package qcow2 writes qcow2 (version 3) disks: 64 KiB clusters, zero
// clusters left unallocated, written in one pass over the raw disk with the
// metadata placed after the data.
package qcow2

import (
	"bufio"
	"context"
	"encoding/binary"
	"os"

	"github.com/layerimg/layerimg/disk/sparse"
)

const (
	clusterBits = 16
	cluster     = 1 << clusterBits
	l2Entries   = cluster / 8 // per L2 table
	rcEntries   = cluster / 2 // 16-bit refcounts per refcount block
	copied      = uint64(1) << 63
)

// Magic starts every qcow2 file.
const Magic = "QFI\xfb"

// Is reports whether a file starting with head is qcow2.
func Is(head, _ []byte) bool { return len(head) >= 4 && string(head[:4]) == Magic }

// Writer writes qcow2 images. qcow2 records no ids or times, so it has no
// settings.
type Writer struct{}

// Write writes the qcow2 image of the first size bytes of src to dst.
func (Writer) Write(ctx context.Context, dst, src *os.File, size int64) error {
	return write(ctx, dst, src, size)
}

func write(ctx context.Context, out, in *os.File, size int64) error {
	vclusters := (size + cluster - 1) / cluster
	l1Size := (vclusters + l2Entries - 1) / l2Entries
	// host[v] is the host cluster holding virtual cluster v, or 0.
	host := map[int64]int64{}
	next := int64(1) // cluster 0 is the header
	bw := bufio.NewWriterSize(out, 4<<20)
	if _, err := bw.Write(make([]byte, cluster)); err != nil {
		return err
	}
	err := sparse.Blocks(in, size, cluster, func(off int64, b []byte) error {
		if err := ctx.Err(); err != nil {
			return err
		}
		host[off/cluster] = next
		next++
		if _, err := bw.Write(b); err != nil {
			return err
		}
		if len(b) < cluster { // the last cluster, padded
			_, err := bw.Write(make([]byte, cluster-len(b)))
			return err
		}
		return nil
	})
	if err != nil {
		return err
	}

	// L2 tables, only for the L1 entries that map data.
	l1 := make([]uint64, l1Size)
	l2s := map[int64][]uint64{}
	var l2Order []int64
	for v := int64(0); v < vclusters; v++ {
		h, ok := host[v]
		if !ok {
			continue
		}
		i := v / l2Entries
		if l2s[i] == nil {
			l2s[i] = make([]uint64, l2Entries)
			l2Order = append(l2Order, i)
		}
		l2s[i][v%l2Entries] = uint64(h*cluster) | copied
	}
	for _, i := range l2Order {
		l1[i] = uint64(next*cluster) | copied
		if err := writeTable(bw, l2s[i], cluster); err != nil {
			return err
		}
		next++
	}
	l1Off := next
	l1Clusters := (l1Size*8 + cluster - 1) / cluster
	if l1Clusters == 0 {
		l1Clusters = 1
	}
	if err := writeTable(bw, l1, l1Clusters*cluster); err != nil {
		return err
	}
	next += l1Clusters

	// Refcount table and blocks cover every cluster, themselves included.
	rtOff := next
	var rtClusters, rbCount int64
	for {
		total := next + rtClusters + rbCount
		nb := (total + rcEntries - 1) / rcEntries
		nt := (nb*8 + cluster - 1) / cluster
		if nb == rbCount && nt == rtClusters {
			break
		}
		rbCount, rtClusters = nb, nt
	}
	total := next + rtClusters + rbCount
	rt := make([]uint64, rtClusters*cluster/8)
	for i := int64(0); i < rbCount; i++ {
		rt[i] = uint64((rtOff + rtClusters + i) * cluster)
	}
	if err := writeTable(bw, rt, rtClusters*cluster); err != nil {
		return err
	}
	for i := int64(0); i < rbCount; i++ {
		blk := make([]byte, cluster)
		for j := int64(0); j < rcEntries; j++ {
			if c := i*rcEntries + j; c < total {
				binary.BigEndian.PutUint16(blk[j*2:], 1)
			}
		}
		if _, err := bw.Write(blk); err != nil {
			return err
		}
	}
	if err := bw.Flush(); err != nil {
		return err
	}

	h := make([]byte, 112)
	copy(h[0:4], Magic)
	binary.BigEndian.PutUint32(h[4:], 3)
	binary.BigEndian.PutUint32(h[20:], clusterBits)
	binary.BigEndian.PutUint64(h[24:], uint64(size))
	binary.BigEndian.PutUint32(h[36:], uint32(l1Size))
	binary.BigEndian.PutUint64(h[40:], uint64(l1Off*cluster))
	binary.BigEndian.PutUint64(h[48:], uint64(rtOff*cluster))
	binary.BigEndian.PutUint32(h[56:], uint32(rtClusters))
	binary.BigEndian.PutUint32(h[96:], 4)    // refcount_order: 16-bit
	binary.BigEndian.PutUint32(h[100:], 104) // header length; the 8 bytes after end the extensions
	_, err = out.WriteAt(h, 0)
	return err
}

func writeTable(w *bufio.Writer, entries []uint64, bytes int64) error {
	buf := make([]byte, bytes)
	for i, e := range entries {
		binary.BigEndian.PutUint64(buf[i*8:], e)
	}
	_, err := w.Write(buf)
	return err
}
