package aws

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"slices"
	"sync"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ebs"
	ebstypes "github.com/aws/aws-sdk-go-v2/service/ebs/types"
	"golang.org/x/sync/errgroup"

	"github.com/layerimg/layerimg/disk/sparse"
	"github.com/layerimg/layerimg/export/progress"
)

// BlockSize is the EBS direct APIs' block size: every block sent is exactly
// this long.
const BlockSize = 512 << 10

// ebsDirect writes the disk's non-zero blocks into a new snapshot and
// completes it. With a parent (an earlier upload of the same recipe whose
// block hashes were kept), the snapshot starts from the parent and only the
// blocks that differ are sent. The snapshot is deleted if anything fails
// afterwards.
func (p *publisher) ebsDirect(ctx context.Context, src *diskFile, res *Result) (string, error) {
	cfg := p.cfg
	c := ebs.NewFromConfig(p.aws, func(o *ebs.Options) { o.Region = cfg.Region })
	gib := (src.size + 1<<30 - 1) >> 30
	parent := p.parent(ctx)
	in := &ebs.StartSnapshotInput{
		Description: aws.String(snapshotDescription(cfg, p.name)),
		Timeout:     aws.Int32(int32(min(max(cfg.SnapshotTimeout.Minutes(), 10), 4320))),
	}
	if parent != nil {
		gib = max(gib, parent.VolumeGiB)
		in.ParentSnapshotId = aws.String(parent.SnapshotID)
		res.Parent = parent.SnapshotID
	}
	in.VolumeSize = aws.Int64(gib)
	for _, t := range ec2Tags(p.tags(nil)) {
		in.Tags = append(in.Tags, ebstypes.Tag{Key: t.Key, Value: t.Value})
	}
	if cfg.Encrypted {
		in.Encrypted = aws.Bool(true)
		if cfg.KMSKeyID != "" {
			in.KmsKeyArn = aws.String(cfg.KMSKeyID)
		}
	}
	start, err := c.StartSnapshot(ctx, in)
	if err != nil {
		return "", fmt.Errorf("aws %s: StartSnapshot of %d GiB: %w", cfg.Region, gib, err)
	}
	id := aws.ToString(start.SnapshotId)
	p.undo.Push("delete snapshot "+id, p.deleteSnapshot(p.ec2(cfg.Region), id))
	if bs := aws.ToInt32(start.BlockSize); bs != 0 && bs != BlockSize {
		return "", fmt.Errorf("aws %s: snapshot %s has blocks of %d bytes; layerimg sends %d", cfg.Region, id, bs, BlockSize)
	}
	cfg.Log.Info("uploading blocks", "region", cfg.Region, "snapshot", id, "volume_GiB", gib, "parallel", cfg.Parallel, "parent", res.Parent)

	var prev map[int32]string
	if parent != nil {
		prev = parent.Blocks
	}
	sent, all, err := p.putBlocks(ctx, c, id, src, prev, res)
	if err != nil {
		return "", err
	}
	idx := make([]int32, 0, len(sent))
	for i := range sent {
		idx = append(idx, i)
	}
	slices.Sort(idx)
	h := sha256.New()
	for _, i := range idx {
		s := sent[i]
		h.Write(s[:])
	}
	_, err = c.CompleteSnapshot(ctx, &ebs.CompleteSnapshotInput{
		SnapshotId:                aws.String(id),
		ChangedBlocksCount:        aws.Int32(int32(len(sent))),
		Checksum:                  aws.String(base64.StdEncoding.EncodeToString(h.Sum(nil))),
		ChecksumAlgorithm:         ebstypes.ChecksumAlgorithmChecksumAlgorithmSha256,
		ChecksumAggregationMethod: ebstypes.ChecksumAggregationMethodChecksumAggregationLinear,
	})
	if err != nil {
		return "", fmt.Errorf("aws %s: CompleteSnapshot %s (%d blocks): %w", cfg.Region, id, len(sent), err)
	}
	p.state = &blockState{SnapshotID: id, Region: cfg.Region, VolumeGiB: gib, Digest: cfg.Digest, Blocks: all}
	return id, nil
}

func snapshotDescription(cfg Config, name string) string {
	d := "layerimg " + name + " " + cfg.Digest
	return d[:min(len(d), 255)]
}

// putBlocks sends every non-zero block whose hash differs from prev's
// (every non-zero block when prev is nil), and a block of zeros where prev
// had data and the disk has none. It returns the checksums of the blocks
// sent and, for the state kept for the next upload, of every non-zero
// block. The SDK retries throttling and 5xx answers with backoff.
func (p *publisher) putBlocks(ctx context.Context, c *ebs.Client, id string, src *diskFile, prev map[int32]string, res *Result) (sent map[int32][32]byte, all map[int32]string, err error) {
	cfg := p.cfg
	type block struct {
		index int32
		buf   *[]byte
	}
	pool := sync.Pool{New: func() any { b := make([]byte, BlockSize); return &b }}
	work := make(chan block, cfg.Parallel)
	sent, all = map[int32][32]byte{}, map[int32]string{}
	var mu sync.Mutex
	meter := progress.Start(ctx, cfg.Log, "uploading blocks", "blocks", src.size, cfg.ProgressInterval)
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error {
		defer close(work)
		seen := map[int32]bool{}
		send := func(b block) error {
			select {
			case work <- b:
				return nil
			case <-gctx.Done():
				return gctx.Err()
			}
		}
		err := sparse.Blocks(src.File, src.size, BlockSize, func(off int64, b []byte) error {
			buf := pool.Get().(*[]byte)
			n := copy(*buf, b)
			clear((*buf)[n:]) // the disk's last block may be short
			seen[int32(off/BlockSize)] = true
			return send(block{int32(off / BlockSize), buf})
		})
		if err != nil {
			return err
		}
		// Data the parent has where this disk has zeros must be zeroed.
		for i := range prev {
			if !seen[i] {
				buf := pool.Get().(*[]byte)
				clear(*buf)
				if err := send(block{i, buf}); err != nil {
					return err
				}
			}
		}
		return nil
	})
	for range cfg.Parallel {
		g.Go(func() error {
			for b := range work {
				sum := sha256.Sum256(*b.buf)
				b64 := base64.StdEncoding.EncodeToString(sum[:])
				if prev != nil && prev[b.index] == b64 {
					pool.Put(b.buf) // the parent has this block already
					mu.Lock()
					all[b.index] = b64
					mu.Unlock()
					continue
				}
				_, err := c.PutSnapshotBlock(gctx, &ebs.PutSnapshotBlockInput{
					SnapshotId:        aws.String(id),
					BlockIndex:        aws.Int32(b.index),
					BlockData:         bytes.NewReader(*b.buf),
					DataLength:        aws.Int32(BlockSize),
					Checksum:          aws.String(b64),
					ChecksumAlgorithm: ebstypes.ChecksumAlgorithmChecksumAlgorithmSha256,
					Progress:          aws.Int32(int32(min(100, int64(b.index)*BlockSize*100/max(src.size, 1)))),
				})
				zero := sparse.IsZero(*b.buf)
				pool.Put(b.buf)
				if err != nil {
					return fmt.Errorf("aws %s: PutSnapshotBlock %d of snapshot %s: %w", cfg.Region, b.index, id, err)
				}
				meter.Add(BlockSize)
				mu.Lock()
				sent[b.index] = sum
				if !zero {
					all[b.index] = b64
				}
				mu.Unlock()
			}
			return nil
		})
	}
	err = g.Wait()
	meter.Stop()
	res.BlocksSent += int64(len(sent))
	res.BytesSent += int64(len(sent)) * BlockSize
	if err != nil {
		return nil, nil, err
	}
	return sent, all, nil
}
