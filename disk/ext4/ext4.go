// Package ext4 writes an ext4 filesystem from a stream of tar entries,
// straight into a byte range of a disk file: nothing is unpacked on the
// host, so no privileges are needed, and the bytes depend only on the
// entries and the options.
package ext4

import (
	"archive/tar"
	"errors"
	"io"
)

// Options fixes everything about the filesystem that is not in the entries.
type Options struct {
	// Size of the filesystem in bytes: a multiple of 4096, at least 16 MiB.
	Size int64
	// Label is the volume label (at most 16 bytes).
	Label string
	// UUID and HashSeed (the directory index's seed) make the bytes
	// reproducible: derive them from the build's ids.
	UUID, HashSeed [16]byte
	// Epoch (SOURCE_DATE_EPOCH) is every time the writer makes up: the
	// superblock's, atime, ctime and crtime of every inode, and the mtime of
	// directories the stream did not name (the root, lost+found, parents).
	Epoch int64
}

// Writer builds one filesystem. Add entries in any order in which a hard
// link follows its target; Close writes the metadata.
type Writer struct {
	w   io.WriterAt
	off int64
	o   Options
}

// New starts a filesystem at byte off of w.
func New(w io.WriterAt, off int64, o Options) (*Writer, error) {
	return nil, errors.New("ext4: not implemented")
}

// Add puts one entry in the filesystem. hdr.Name is a slash-separated path
// relative to the root ("./" prefix allowed, "." or "" is the root itself);
// missing parent directories are made (0755, root, Epoch) and take the
// metadata of their own entry if one comes later. Typeflag is one of Reg,
// Dir, Symlink, Link (hdr.Linkname names an earlier entry), Char, Block,
// Fifo; a Reg entry whose Mode has the socket type bits (0140000) is a
// socket. r holds a regular file's hdr.Size bytes; all-zero 4 KiB blocks
// become holes. Xattrs come from PAXRecords "SCHILY.xattr.NAME" (POSIX ACLs
// in the kernel's xattr form). mtime comes from hdr.ModTime, nanoseconds
// included; 1901 to 2446 round-trip.
func (w *Writer) Add(hdr *tar.Header, r io.Reader) error {
	return errors.New("ext4: not implemented")
}

// Close lays out directories, inodes, bitmaps, group descriptors, the
// journal and the superblocks. The filesystem is not valid before Close
// returns nil.
func (w *Writer) Close() error {
	return errors.New("ext4: not implemented")
}
