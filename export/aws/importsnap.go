package aws

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/ec2/types"
	"github.com/aws/aws-sdk-go-v2/service/s3"
)

// importSnapshot is the S3 route: put the VMDK in the bucket, have EC2
// import it as a snapshot, and delete the object whatever happens.
func (p *publisher) importSnapshot(ctx context.Context, src *diskFile) (string, error) {
	cfg := p.cfg
	s3c := s3.NewFromConfig(p.aws, func(o *s3.Options) {
		o.Region = cfg.Region
		if cfg.S3Endpoint != "" {
			o.BaseEndpoint = aws.String(cfg.S3Endpoint)
			o.UsePathStyle = true // stand-ins serve one host
		}
	})
	key := "layerimg/" + strings.TrimPrefix(cfg.Digest, "sha256:") + ".vmdk"
	where := fmt.Sprintf("s3://%s/%s", cfg.S3Bucket, key)
	cfg.Log.Info("uploading the VMDK", "to", where, "MiB", src.size>>20)
	if _, err := src.Seek(0, 0); err != nil {
		return "", err
	}
	_, err := s3c.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String(cfg.S3Bucket), Key: aws.String(key),
		Body: src.File, ContentLength: aws.Int64(src.size)})
	// Deleted on success too: the object is only a vehicle.
	defer func() {
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
		defer cancel()
		if _, err := s3c.DeleteObject(dctx, &s3.DeleteObjectInput{Bucket: aws.String(cfg.S3Bucket), Key: aws.String(key)}); err != nil {
			cfg.Log.Error("could not delete the uploaded VMDK; delete it by hand", "object", where, "err", err)
		}
	}()
	if err != nil {
		return "", fmt.Errorf("aws %s: PutObject %s: %w", cfg.Region, where, err)
	}

	c := p.ec2(cfg.Region)
	in := &ec2.ImportSnapshotInput{
		Description: aws.String(snapshotDescription(cfg, p.name)),
		DiskContainer: &types.SnapshotDiskContainer{Format: aws.String("VMDK"),
			UserBucket: &types.UserBucket{S3Bucket: aws.String(cfg.S3Bucket), S3Key: aws.String(key)}},
	}
	if cfg.Encrypted {
		in.Encrypted = aws.Bool(true)
		if cfg.KMSKeyID != "" {
			in.KmsKeyId = aws.String(cfg.KMSKeyID)
		}
	}
	if cfg.RoleName != "" {
		in.RoleName = aws.String(cfg.RoleName)
	}
	out, err := c.ImportSnapshot(ctx, in)
	if err != nil {
		return "", fmt.Errorf("aws %s: ImportSnapshot from %s: %w", cfg.Region, where, err)
	}
	task := aws.ToString(out.ImportTaskId)
	forget := p.undo.Push("cancel import task "+task, func(ctx context.Context) error {
		_, err := c.CancelImportTask(ctx, &ec2.CancelImportTaskInput{ImportTaskId: aws.String(task)})
		return err
	})
	wctx, cancel := context.WithTimeout(ctx, cfg.ImportTimeout)
	defer cancel()
	for {
		d, err := c.DescribeImportSnapshotTasks(wctx, &ec2.DescribeImportSnapshotTasksInput{ImportTaskIds: []string{task}})
		if err != nil {
			return "", fmt.Errorf("aws %s: DescribeImportSnapshotTasks %s: %w", cfg.Region, task, err)
		}
		if len(d.ImportSnapshotTasks) != 1 || d.ImportSnapshotTasks[0].SnapshotTaskDetail == nil {
			return "", fmt.Errorf("aws %s: import task %s is gone", cfg.Region, task)
		}
		det := d.ImportSnapshotTasks[0].SnapshotTaskDetail
		switch st := aws.ToString(det.Status); st {
		case "completed":
			forget()
			id := aws.ToString(det.SnapshotId)
			p.undo.Push("delete snapshot "+id, p.deleteSnapshot(c, id))
			return id, nil
		case "deleting", "deleted":
			forget()
			return "", fmt.Errorf("aws %s: import task %s failed: %s", cfg.Region, task, aws.ToString(det.StatusMessage))
		}
		cfg.Log.Info("waiting for the import", "task", task, "status", aws.ToString(det.StatusMessage), "progress", aws.ToString(det.Progress))
		if err := sleep(wctx, cfg.PollInterval); err != nil {
			return "", fmt.Errorf("aws %s: waiting for import task %s: %w", cfg.Region, task, err)
		}
	}
}
