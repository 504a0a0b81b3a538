// Package vmdk writes streamOptimized VMDK disks (VMware Virtual Disk Format
// 5.0, "stream-optimized compressed sparse extent"), the form vSphere's OVF
// import and AWS's image import take. Grains are deflated on every core and
// all-zero grains are left out.
package vmdk

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"os"
	"runtime"
	"sync"

	"github.com/klauspost/compress/zlib"

	"github.com/layerimg/layerimg/disk/sparse"
)

const (
	sector      = 512
	grainSecs   = 128 // 64 KiB grains
	grainBytes  = grainSecs * sector
	gtes        = 512 // grain table entries per table: a table spans 32 MiB
	descSecs    = 20
	overhead    = grainSecs // grains start after the first 64 KiB
	gdAtEnd     = 0xFFFFFFFFFFFFFFFF
	markerEOS   = 0
	markerGT    = 1
	markerGD    = 2
	markerFoot  = 3
	flagNLCheck = 1 << 0
	flagComp    = 1 << 16
	flagMarkers = 1 << 17
)

// header is the SparseExtentHeader, little-endian, one sector.
func header(capacity, gdOffset uint64) []byte {
	h := make([]byte, sector)
	copy(h[0:4], Magic)
	binary.LittleEndian.PutUint32(h[4:], 3) // version 3: streamOptimized
	binary.LittleEndian.PutUint32(h[8:], flagNLCheck|flagComp|flagMarkers)
	binary.LittleEndian.PutUint64(h[12:], capacity)
	binary.LittleEndian.PutUint64(h[20:], grainSecs)
	binary.LittleEndian.PutUint64(h[28:], 1) // descriptor right after the header
	binary.LittleEndian.PutUint64(h[36:], descSecs)
	binary.LittleEndian.PutUint32(h[44:], gtes)
	binary.LittleEndian.PutUint64(h[48:], 0) // no redundant grain directory
	binary.LittleEndian.PutUint64(h[56:], gdOffset)
	binary.LittleEndian.PutUint64(h[64:], overhead)
	h[73], h[74], h[75], h[76] = '\n', ' ', '\r', '\n'
	binary.LittleEndian.PutUint16(h[77:], 1) // deflate
	return h
}

func descriptor(capacity uint64, cid uint32, name string) []byte {
	cyl := capacity / (255 * 63)
	if cyl > 65535 {
		cyl = 65535
	}
	d := fmt.Sprintf(`# Disk DescriptorFile
version=1
CID=%08x
parentCID=ffffffff
createType="streamOptimized"

# Extent description
RW %d SPARSE "%s"

# The Disk Data Base
#DDB

ddb.virtualHWVersion = "4"
ddb.geometry.cylinders = "%d"
ddb.geometry.heads = "255"
ddb.geometry.sectors = "63"
ddb.adapterType = "lsilogic"
`, cid, capacity, name, cyl)
	b := make([]byte, descSecs*sector)
	copy(b, d)
	return b
}

// metaMarker is the sector that precedes grain tables, the grain directory
// and the footer.
func metaMarker(sectors uint64, typ uint32) []byte {
	m := make([]byte, sector)
	binary.LittleEndian.PutUint64(m[0:], sectors)
	binary.LittleEndian.PutUint32(m[12:], typ)
	return m
}

// Magic starts every VMDK sparse extent.
const Magic = "KDMV"

// Is reports whether a file starting with head is a VMDK sparse extent.
func Is(head, _ []byte) bool { return len(head) >= 4 && string(head[:4]) == Magic }

// Writer writes streamOptimized VMDKs.
type Writer struct {
	// CID is the content id in the descriptor; derive it from the image.
	CID uint32
	// Name is the file's base name, which the descriptor records.
	Name string
	// Workers compress grains in parallel; 0 means every core.
	Workers int
}

// Write writes the VMDK of the first size bytes of src to dst.
func (w Writer) Write(ctx context.Context, dst, src *os.File, size int64) error {
	bw := bufio.NewWriterSize(dst, 4<<20)
	if err := w.stream(ctx, bw, src, size); err != nil {
		return err
	}
	return bw.Flush()
}

// stream writes the VMDK of the first size bytes of src to w, in one pass:
// the grain directory goes at the end, as streamOptimized allows.
func (o Writer) stream(ctx context.Context, w io.Writer, src *os.File, size int64) error {
	capacity := uint64((size + sector - 1) / sector)
	numGrains := (capacity + grainSecs - 1) / grainSecs
	numGTs := (numGrains + gtes - 1) / gtes
	workers := o.Workers
	if workers <= 0 {
		workers = runtime.GOMAXPROCS(0)
	}

	var pos uint64 // sectors written so far
	put := func(b []byte) error {
		if _, err := w.Write(b); err != nil {
			return err
		}
		pos += uint64(len(b)) / sector
		return nil
	}
	if err := put(header(capacity, gdAtEnd)); err != nil {
		return err
	}
	if err := put(descriptor(capacity, o.CID, o.Name)); err != nil {
		return err
	}
	if err := put(make([]byte, (overhead-1-descSecs)*sector)); err != nil {
		return err
	}

	gd := make([]uint32, numGTs)
	gt := make([]uint32, gtes)
	cur, used := uint64(0), false
	// flushGT writes the current grain table, unless no grain in it holds
	// data: an absent table (a zero directory entry) reads as zeros, which
	// keeps a 2 TiB sparse disk small.
	flushGT := func() error {
		if !used {
			return nil
		}
		if err := put(metaMarker(gtes*4/sector, markerGT)); err != nil {
			return err
		}
		gd[cur] = uint32(pos)
		buf := make([]byte, gtes*4)
		for i, e := range gt {
			binary.LittleEndian.PutUint32(buf[i*4:], e)
		}
		clear(gt)
		used = false
		return put(buf)
	}

	err := compressGrains(ctx, src, size, workers, func(grain uint64, data []byte) error {
		if grain/gtes != cur {
			if err := flushGT(); err != nil {
				return err
			}
			cur = grain / gtes
		}
		gt[grain%gtes], used = uint32(pos), true
		return put(data)
	})
	if err != nil {
		return err
	}
	if err := flushGT(); err != nil {
		return err
	}
	gdSecs := (numGTs*4 + sector - 1) / sector
	if err := put(metaMarker(gdSecs, markerGD)); err != nil {
		return err
	}
	gdOffset := pos
	buf := make([]byte, gdSecs*sector)
	for i, e := range gd {
		binary.LittleEndian.PutUint32(buf[i*4:], e)
	}
	if err := put(buf); err != nil {
		return err
	}
	if err := put(metaMarker(1, markerFoot)); err != nil {
		return err
	}
	if err := put(header(capacity, gdOffset)); err != nil {
		return err
	}
	return put(metaMarker(0, markerEOS))
}

type job struct {
	seq   int
	grain uint64
	raw   []byte
	out   []byte
	done  chan struct{}
}

// compressGrains reads every non-zero grain, compresses them on `workers`
// goroutines and hands each finished grain record (marker + deflated data,
// padded to a sector) to emit in disk order.
func compressGrains(ctx context.Context, src *os.File, size int64, workers int, emit func(grain uint64, rec []byte) error) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	jobs := make(chan *job, workers*2)
	ordered := make(chan *job, workers*4)
	pool := sync.Pool{New: func() any { return make([]byte, grainBytes) }}
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var zbuf bytes.Buffer
			zw, _ := zlib.NewWriterLevel(&zbuf, zlib.DefaultCompression)
			for j := range jobs {
				zbuf.Reset()
				zw.Reset(&zbuf)
				zw.Write(j.raw)
				zw.Close()
				n := 12 + zbuf.Len()
				rec := make([]byte, (n+sector-1)/sector*sector)
				binary.LittleEndian.PutUint64(rec[0:], j.grain*grainSecs)
				binary.LittleEndian.PutUint32(rec[8:], uint32(zbuf.Len()))
				copy(rec[12:], zbuf.Bytes())
				j.out = rec
				pool.Put(j.raw[:grainBytes])
				j.raw = nil
				close(j.done)
			}
		}()
	}
	readErr := make(chan error, 1)
	go func() {
		defer close(ordered)
		defer close(jobs)
		seq := 0
		readErr <- sparse.Blocks(src, size, grainBytes, func(off int64, b []byte) error {
			if err := ctx.Err(); err != nil {
				return err
			}
			raw := pool.Get().([]byte)
			copy(raw, b)
			clear(raw[len(b):]) // the last grain is padded with zeros
			j := &job{seq: seq, grain: uint64(off / grainBytes), raw: raw, done: make(chan struct{})}
			seq++
			// To the workers first: a job the sequencer waits for must
			// always be on its way.
			select {
			case jobs <- j:
			case <-ctx.Done():
				return ctx.Err()
			}
			select {
			case ordered <- j:
			case <-ctx.Done():
				return ctx.Err()
			}
			return nil
		})
	}()
	var emitErr error
	for j := range ordered {
		<-j.done
		if emitErr == nil {
			if emitErr = emit(j.grain, j.out); emitErr != nil {
				cancel()
			}
		}
	}
	wg.Wait()
	if err := <-readErr; err != nil {
		return err
	}
	return emitErr
}

// Info reads a VMDK's header: its virtual size in bytes, and whether it is
// streamOptimized (version 3, compressed grains with markers), the only kind
// vSphere's OVF import and AWS take.
func Info(path string) (capacity int64, streamOptimized bool, err error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, false, err
	}
	defer f.Close()
	h := make([]byte, sector)
	if _, err := io.ReadFull(f, h); err != nil {
		return 0, false, fmt.Errorf("%s: reading VMDK header: %w", path, err)
	}
	if !Is(h, nil) {
		return 0, false, fmt.Errorf("%s is not a VMDK sparse extent", path)
	}
	flags := binary.LittleEndian.Uint32(h[8:])
	capacity = int64(binary.LittleEndian.Uint64(h[12:])) * sector
	streamOptimized = binary.LittleEndian.Uint32(h[4:]) == 3 && flags&flagComp != 0 && flags&flagMarkers != 0
	return capacity, streamOptimized, nil
}
