package disk

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"strings"
)

// IDs are every identifier written into a disk.
type IDs struct {
	Disk, ESP, Root string // GPT GUIDs
	FS, HashSeed    string // ext4 UUID and directory hash seed
	VolumeID        uint32 // FAT volume id
	VHD             [16]byte
	VMDKCID         uint32
}

// DeriveIDs derives every id from seed (the image's content digest). With
// unique set they are random instead, for users who attach two copies of one
// image to one VM.
func DeriveIDs(seed string, unique bool) IDs {
	sum := func(what string) [32]byte {
		if unique {
			var b [32]byte
			rand.Read(b[:])
			return b
		}
		return sha256.Sum256([]byte("layerimg/disk/v1\x00" + what + "\x00" + seed))
	}
	vhd := sum("vhd")
	var ids IDs
	ids.Disk = uuid(sum("disk-guid"))
	ids.ESP = uuid(sum("esp-partuuid"))
	ids.Root = uuid(sum("root-partuuid"))
	ids.FS = uuid(sum("ext4-uuid"))
	ids.HashSeed = uuid(sum("ext4-hash-seed"))
	v := sum("fat-volume-id")
	ids.VolumeID = binary.BigEndian.Uint32(v[:4])
	copy(ids.VHD[:], vhd[:16])
	c := sum("vmdk-cid")
	ids.VMDKCID = binary.BigEndian.Uint32(c[:4])
	return ids
}

// uuid formats the first 16 bytes of b as an RFC 4122 version 4 UUID.
func uuid(b [32]byte) string {
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%X-%X-%X-%X-%X", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}

// uuidBytes parses a UUID as uuid formats it (any case) into its 16 bytes,
// in the order they are written: what mke2fs made of "-U" and "hash_seed=".
func uuidBytes(s string) ([16]byte, error) {
	var b [16]byte
	h := strings.ReplaceAll(s, "-", "")
	if len(s) != 36 || len(h) != 32 {
		return b, fmt.Errorf("%q is not a UUID", s)
	}
	if _, err := hex.Decode(b[:], []byte(h)); err != nil {
		return b, fmt.Errorf("%q is not a UUID: %w", s, err)
	}
	return b, nil
}
