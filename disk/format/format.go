// Package format names the disk formats layerimg writes and holds the one
// table that says, for each, its file extension, media type, qemu driver
// name, how to recognise it and how to write it. It imports only the small
// writer packages, so that recipes and the CLI can list formats without the
// disk assembler's dependencies.
package format

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/layerimg/layerimg/disk/qcow2"
	"github.com/layerimg/layerimg/disk/sparse"
	"github.com/layerimg/layerimg/disk/vhd"
	"github.com/layerimg/layerimg/disk/vmdk"
)

// Format is a disk file format, named as in recipes' outputs.
type Format string

// The formats layerimg writes.
const (
	Raw   Format = "raw"
	VMDK  Format = "vmdk" // streamOptimized
	VHD   Format = "vhd"  // fixed
	QCOW2 Format = "qcow2"
)

// Stamp is what a writer records in a file besides the disk's data. The
// values are derived from the image's digest, so the same image gives the
// same bytes.
type Stamp struct {
	VHDID   [16]byte  // a VHD footer's unique id
	VMDKCID uint32    // a VMDK descriptor's content id
	Created time.Time // a VHD footer's timestamp
	// Name is the file's base name, which a VMDK descriptor records.
	// Convert fills it in from dst.
	Name string
}

// Writer writes one format from the first size bytes of a raw disk into
// dst, an empty file.
type Writer interface {
	Write(ctx context.Context, dst, src *os.File, size int64) error
}

// Spec describes one format.
type Spec struct {
	Format    Format
	Ext       string // file extension, without the dot
	MediaType string // of the zstd-compressed file in a registry
	Qemu      string // qemu's driver name

	writer func(Stamp) Writer
	// is reports whether a file whose first and last 512 bytes are head
	// and tail is in this format. Raw has none: it is what is left.
	is func(head, tail []byte) bool
}

// specs is the registry: one line per format, best for booting first (raw
// reads fastest in qemu; the others need a driver). Adding a format is a
// package with a Writer and one line here.
func specs() []Spec {
	return []Spec{
		{Raw, "raw", mediaType(Raw), "raw", func(Stamp) Writer { return rawWriter{} }, nil},
		{QCOW2, "qcow2", mediaType(QCOW2), "qcow2", func(Stamp) Writer { return qcow2.Writer{} }, qcow2.Is},
		{VMDK, "vmdk", mediaType(VMDK), "vmdk", func(s Stamp) Writer { return vmdk.Writer{CID: s.VMDKCID, Name: s.Name} }, vmdk.Is},
		{VHD, "vhd", mediaType(VHD), "vpc", func(s Stamp) Writer { return vhd.Writer{ID: s.VHDID, Created: s.Created} }, vhd.Is},
	}
}

func mediaType(f Format) string { return "application/vnd.layerimg.disk." + string(f) + ".v1+zstd" }

// All lists every format, in the order recipes and the CLI show them.
func All() []Format { return []Format{Raw, VMDK, VHD, QCOW2} }

// BootOrder lists every format, the one to boot in a test first.
func BootOrder() []Format {
	var out []Format
	for _, s := range specs() {
		out = append(out, s.Format)
	}
	return out
}

// Names lists every format's name, as All orders them.
func Names() []string {
	var out []string
	for _, f := range All() {
		out = append(out, string(f))
	}
	return out
}

// Parse checks that s names a format.
func Parse(s string) (Format, error) {
	if _, ok := Lookup(Format(s)); !ok {
		return "", fmt.Errorf("unknown format %q (valid: %s)", s, strings.Join(Names(), ", "))
	}
	return Format(s), nil
}

// Lookup finds f's description.
func Lookup(f Format) (Spec, bool) {
	for _, s := range specs() {
		if s.Format == f {
			return s, true
		}
	}
	return Spec{}, false
}

// Ext is f's file extension, without the dot.
func (f Format) Ext() string {
	s, _ := Lookup(f)
	return s.Ext
}

// MediaType is the media type of f's zstd-compressed file in a registry.
func (f Format) MediaType() string {
	s, _ := Lookup(f)
	return s.MediaType
}

// Qemu is qemu's driver name for f.
func (f Format) Qemu() string {
	s, _ := Lookup(f)
	return s.Qemu
}

// Convert writes the raw disk at raw as format f at dst. dst is written
// beside its final name and renamed only when complete, so an interrupted
// conversion never leaves a file that looks finished.
func Convert(ctx context.Context, raw, dst string, f Format, s Stamp) error {
	spec, ok := Lookup(f)
	if !ok {
		_, err := Parse(string(f))
		return err
	}
	s.Name = filepath.Base(dst)
	w := spec.writer(s)
	if err := sparse.WriteAtomicFrom(dst, raw, func(out, in *os.File, size int64) error { return w.Write(ctx, out, in, size) }); err != nil {
		return fmt.Errorf("writing %s as %s: %w", dst, f, err)
	}
	return nil
}

// Sniff tells a file's format from its bytes, not its name. A file no
// format claims is raw.
func Sniff(path string) (Format, error) {
	f, size, err := sparse.Open(path, os.O_RDONLY)
	if err != nil {
		return "", err
	}
	defer f.Close()
	head := make([]byte, 512)
	if _, err := f.ReadAt(head, 0); err != nil && err != io.EOF {
		return "", fmt.Errorf("reading %s: %w", path, err)
	}
	var tail []byte
	if size >= 512 {
		tail = make([]byte, 512)
		if _, err := f.ReadAt(tail, size-512); err != nil {
			return "", fmt.Errorf("reading %s: %w", path, err)
		}
	}
	for _, s := range specs() {
		if s.is != nil && s.is(head, tail) {
			return s.Format, nil
		}
	}
	return Raw, nil
}

// rawWriter copies the raw disk, keeping its holes.
type rawWriter struct{}

func (rawWriter) Write(ctx context.Context, dst, src *os.File, size int64) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := dst.Truncate(size); err != nil {
		return err
	}
	return sparse.Copy(dst, 0, src, size)
}
