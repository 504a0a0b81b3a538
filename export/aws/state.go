package aws

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/ec2/types"
)

// blockState is what an ebs-direct upload leaves for the next one of the
// same recipe and region: its snapshot and the hash of every non-zero
// block. The next upload starts from that snapshot and sends only blocks
// whose hash differs.
type blockState struct {
	SnapshotID string           `json:"snapshot_id"`
	Region     string           `json:"region"`
	VolumeGiB  int64            `json:"volume_gib"`
	Digest     string           `json:"digest"`
	Blocks     map[int32]string `json:"blocks"`        // index -> base64 SHA-256
	Sum        string           `json:"sum,omitempty"` // see record.go
}

// statePath is where the state of cfg's recipe and region lives.
func (c *Config) statePath() string {
	if c.StateDir == "" || c.Recipe == "" {
		return ""
	}
	h := sha256.Sum256([]byte(c.Recipe))
	return filepath.Join(c.StateDir, fmt.Sprintf("ebs-%s-%x.json", c.Region, h[:8]))
}

// parent returns the last upload's state when its snapshot still exists
// and is complete; anything else means a full upload.
func (p *publisher) parent(ctx context.Context) *blockState {
	path := p.cfg.statePath()
	if path == "" || p.cfg.Encrypted {
		return nil // an encrypted snapshot's parent must share its key: keep it simple and whole
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil
	}
	var st blockState
	if err := json.Unmarshal(b, &st); err != nil || st.SnapshotID == "" || st.Region != p.cfg.Region {
		p.cfg.Log.Warn("ignoring unreadable upload state", "file", path)
		return nil
	}
	if err := st.check(); err != nil {
		p.cfg.Log.Warn("ignoring the last upload's block hashes; uploading every block", "file", path, "why", err)
		return nil
	}
	out, err := p.ec2(p.cfg.Region).DescribeSnapshots(ctx, &ec2.DescribeSnapshotsInput{SnapshotIds: []string{st.SnapshotID}})
	if err != nil || len(out.Snapshots) != 1 || out.Snapshots[0].State != types.SnapshotStateCompleted ||
		aws.ToInt32(out.Snapshots[0].VolumeSize) != int32(st.VolumeGiB) {
		p.cfg.Log.Info("the last upload's snapshot is gone; uploading every block", "snapshot", st.SnapshotID)
		return nil
	}
	p.cfg.Log.Info("uploading only the blocks that changed since", "snapshot", st.SnapshotID, "digest", st.Digest)
	return &st
}

// saveState keeps this upload's block hashes for the next one.
func (p *publisher) saveState() {
	path := p.cfg.statePath()
	if path == "" || p.state == nil {
		return
	}
	p.state.seal()
	b, err := json.Marshal(p.state)
	if err == nil {
		err = os.MkdirAll(filepath.Dir(path), 0o755)
	}
	if err == nil {
		tmp := path + ".tmp"
		if err = os.WriteFile(tmp, b, 0o644); err == nil {
			err = os.Rename(tmp, path)
		}
	}
	if err != nil {
		p.cfg.Log.Warn("could not keep the block hashes; the next upload will send every block", "err", err)
	}
}
