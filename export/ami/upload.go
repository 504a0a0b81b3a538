package ami

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
// completes it. The snapshot is deleted if anything fails afterwards.
func (p *publisher) ebsDirect(ctx context.Context, src *diskFile, res *Result) (string, error) {
	cfg := p.cfg
	c := ebs.NewFromConfig(p.aws, func(o *ebs.Options) { o.Region = cfg.Region })
	gib := (src.size + 1<<30 - 1) >> 30
	in := &ebs.StartSnapshotInput{
		VolumeSize:  aws.Int64(gib),
		Description: aws.String(snapshotDescription(cfg, p.name)),
		Timeout:     aws.Int32(int32(min(max(cfg.SnapshotTimeout.Minutes(), 10), 4320))),
	}
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
	p.onFailure("delete snapshot "+id, p.deleteSnapshot(p.ec2(cfg.Region), id))
	if bs := aws.ToInt32(start.BlockSize); bs != 0 && bs != BlockSize {
		return "", fmt.Errorf("aws %s: snapshot %s has blocks of %d bytes; layerimg sends %d", cfg.Region, id, bs, BlockSize)
	}
	cfg.Log.Info("uploading blocks", "region", cfg.Region, "snapshot", id, "volume_GiB", gib, "parallel", cfg.Parallel)

	sums, err := p.putBlocks(ctx, c, id, src, res)
	if err != nil {
		return "", err
	}
	idx := make([]int32, 0, len(sums))
	for i := range sums {
		idx = append(idx, i)
	}
	slices.Sort(idx)
	h := sha256.New()
	for _, i := range idx {
		s := sums[i]
		h.Write(s[:])
	}
	_, err = c.CompleteSnapshot(ctx, &ebs.CompleteSnapshotInput{
		SnapshotId:                aws.String(id),
		ChangedBlocksCount:        aws.Int32(int32(len(sums))),
		Checksum:                  aws.String(base64.StdEncoding.EncodeToString(h.Sum(nil))),
		ChecksumAlgorithm:         ebstypes.ChecksumAlgorithmChecksumAlgorithmSha256,
		ChecksumAggregationMethod: ebstypes.ChecksumAggregationMethodChecksumAggregationLinear,
	})
	if err != nil {
		return "", fmt.Errorf("aws %s: CompleteSnapshot %s (%d blocks): %w", cfg.Region, id, len(sums), err)
	}
	return id, nil
}

func snapshotDescription(cfg Config, name string) string {
	d := "layerimg " + name + " " + cfg.Digest
	return d[:min(len(d), 255)]
}

// putBlocks sends every non-zero block with its SHA-256, from cfg.Parallel
// workers, and returns the checksums by block index. The SDK retries
// throttling and 5xx answers with backoff.
func (p *publisher) putBlocks(ctx context.Context, c *ebs.Client, id string, src *diskFile, res *Result) (map[int32][32]byte, error) {
	cfg := p.cfg
	type block struct {
		index int32
		buf   *[]byte
	}
	pool := sync.Pool{New: func() any { b := make([]byte, BlockSize); return &b }}
	work := make(chan block, cfg.Parallel)
	sums := map[int32][32]byte{}
	var mu sync.Mutex
	meter := progress.Start(ctx, cfg.Log, "uploading blocks", "blocks", src.size, cfg.ProgressInterval)
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error {
		defer close(work)
		return sparse.Blocks(src.File, src.size, BlockSize, func(off int64, b []byte) error {
			buf := pool.Get().(*[]byte)
			n := copy(*buf, b)
			clear((*buf)[n:]) // the disk's last block may be short
			select {
			case work <- block{int32(off / BlockSize), buf}:
				return nil
			case <-gctx.Done():
				return gctx.Err()
			}
		})
	})
	for range cfg.Parallel {
		g.Go(func() error {
			for b := range work {
				sum := sha256.Sum256(*b.buf)
				_, err := c.PutSnapshotBlock(gctx, &ebs.PutSnapshotBlockInput{
					SnapshotId:        aws.String(id),
					BlockIndex:        aws.Int32(b.index),
					BlockData:         bytes.NewReader(*b.buf),
					DataLength:        aws.Int32(BlockSize),
					Checksum:          aws.String(base64.StdEncoding.EncodeToString(sum[:])),
					ChecksumAlgorithm: ebstypes.ChecksumAlgorithmChecksumAlgorithmSha256,
					Progress:          aws.Int32(int32(min(100, int64(b.index)*BlockSize*100/max(src.size, 1)))),
				})
				pool.Put(b.buf)
				if err != nil {
					return fmt.Errorf("aws %s: PutSnapshotBlock %d of snapshot %s: %w", cfg.Region, b.index, id, err)
				}
				meter.Add(BlockSize)
				mu.Lock()
				sums[b.index] = sum
				mu.Unlock()
			}
			return nil
		})
	}
	err := g.Wait()
	meter.Stop()
	res.BlocksSent += int64(len(sums))
	res.BytesSent += int64(len(sums)) * BlockSize
	if err != nil {
		return nil, err
	}
	return sums, nil
}
