package aws

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"
)

// An upload's block-hash record is trusted to say what its snapshot holds:
// a block whose hash it records is not sent again. A record that was
// changed could name another snapshot, or vouch for blocks the snapshot
// lacks, so it carries a checksum of its content and is used only when it
// matches.

// seal sets st's checksum.
func (st *blockState) seal() { st.Sum = st.sum() }

// sum is the sha256 of st's JSON without Sum (struct fields in order, map
// keys sorted: deterministic).
func (st blockState) sum() string {
	st.Sum = ""
	data, err := json.Marshal(st)
	if err != nil {
		panic(fmt.Sprintf("upload state does not encode: %v", err)) // only our own types
	}
	return fmt.Sprintf("sha256:%x", sha256.Sum256(data))
}

// check says why st cannot be trusted, or nil.
func (st blockState) check() error {
	switch {
	case st.Sum == "":
		return errors.New("it has no checksum (written by an older layerimg)")
	case st.sum() != st.Sum:
		return fmt.Errorf("its content has checksum %s, it records %s (the file was changed)", st.sum(), st.Sum)
	case !strings.HasPrefix(st.SnapshotID, "snap-") || st.Region == "" || st.VolumeGiB <= 0:
		return errors.New("it names no snapshot, region or volume size")
	}
	for i, h := range st.Blocks {
		if b, err := base64.StdEncoding.DecodeString(h); err != nil || len(b) != sha256.Size {
			return fmt.Errorf("block %d has no valid SHA-256", i)
		}
	}
	return nil
}

// IsRecord says whether name is an upload's block-hash record.
func IsRecord(name string) bool {
	return strings.HasPrefix(name, "ebs-") && strings.HasSuffix(name, ".json")
}

// CheckRecord checks the block-hash record at path against its checksum,
// for `cache verify`. An upload uses only records that pass.
func CheckRecord(path string) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	var st blockState
	if err := json.Unmarshal(data, &st); err != nil {
		return fmt.Errorf("unreadable: %w", err)
	}
	return st.check()
}
