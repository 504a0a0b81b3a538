package awsfake

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/ebs"
	ebstypes "github.com/aws/aws-sdk-go-v2/service/ebs/types"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/ec2/types"
)

// clients talks to the fake through the real SDK, without retries, so that
// each rejection surfaces as the SDK reports it.
func clients(t *testing.T, s *Server, key string) (*ebs.Client, *ec2.Client) {
	cfg := aws.Config{
		Region: "eu-west-1", HTTPClient: s.Client(), BaseEndpoint: aws.String(s.URL), RetryMaxAttempts: 1,
		Credentials: credentials.NewStaticCredentialsProvider(key, "secret", ""),
	}
	return ebs.NewFromConfig(cfg), ec2.NewFromConfig(cfg)
}

func sum(b []byte) string {
	s := sha256.Sum256(b)
	return base64.StdEncoding.EncodeToString(s[:])
}

func aggregate(blocks ...[]byte) string {
	h := sha256.New()
	for _, b := range blocks {
		s := sha256.Sum256(b)
		h.Write(s[:])
	}
	return base64.StdEncoding.EncodeToString(h.Sum(nil))
}

// TestRejects checks each documented rejection, through the SDK.
func TestRejects(t *testing.T) {
	s := New()
	defer s.Close()
	ctx := context.Background()
	eb, ec := clients(t, s, "AKIDLAYERIMG")
	start, err := eb.StartSnapshot(ctx, &ebs.StartSnapshotInput{VolumeSize: aws.Int64(1)})
	if err != nil {
		t.Fatal(err)
	}
	id := start.SnapshotId
	block := bytes.Repeat([]byte{1}, BlockSize)
	put := func(idx int32, data []byte, checksum string) error {
		_, err := eb.PutSnapshotBlock(ctx, &ebs.PutSnapshotBlockInput{SnapshotId: id, BlockIndex: aws.Int32(idx),
			BlockData: bytes.NewReader(data), DataLength: aws.Int32(int32(len(data))), Checksum: aws.String(checksum),
			ChecksumAlgorithm: ebstypes.ChecksumAlgorithmChecksumAlgorithmSha256})
		return err
	}
	complete := func(n int32, checksum string) error {
		_, err := eb.CompleteSnapshot(ctx, &ebs.CompleteSnapshotInput{SnapshotId: id, ChangedBlocksCount: aws.Int32(n),
			Checksum: aws.String(checksum), ChecksumAlgorithm: ebstypes.ChecksumAlgorithmChecksumAlgorithmSha256,
			ChecksumAggregationMethod: ebstypes.ChecksumAggregationMethodChecksumAggregationLinear})
		return err
	}
	register := func(mod func(*ec2.RegisterImageInput)) error {
		in := &ec2.RegisterImageInput{Name: aws.String("test-image"), RootDeviceName: aws.String("/dev/xvda"),
			VirtualizationType: aws.String("hvm"), BootMode: types.BootModeValuesUefi,
			BlockDeviceMappings: []types.BlockDeviceMapping{{DeviceName: aws.String("/dev/xvda"), Ebs: &types.EbsBlockDevice{SnapshotId: id}}}}
		if mod != nil {
			mod(in)
		}
		_, err := ec.RegisterImage(ctx, in)
		return err
	}
	for _, tc := range []struct {
		name string
		call func() error
		want string
	}{
		{"short block", func() error { return put(0, block[:4096], sum(block[:4096])) }, "must be 524288 bytes"},
		{"bad checksum", func() error { return put(0, block, sum(block[1:])) }, "does not match the block data"},
		{"index beyond the volume", func() error { return put(2048, block, sum(block)) }, "beyond the volume size"},
		{"unknown snapshot", func() error {
			_, err := eb.PutSnapshotBlock(ctx, &ebs.PutSnapshotBlockInput{SnapshotId: aws.String("snap-0"), BlockIndex: aws.Int32(0),
				BlockData: bytes.NewReader(block), DataLength: aws.Int32(BlockSize), Checksum: aws.String(sum(block)),
				ChecksumAlgorithm: ebstypes.ChecksumAlgorithmChecksumAlgorithmSha256})
			return err
		}, "ResourceNotFoundException"},
		{"volume too large", func() error {
			_, err := eb.StartSnapshot(ctx, &ebs.StartSnapshotInput{VolumeSize: aws.Int64(1 << 20)})
			return err
		}, "out of range"},
		{"register before completion", func() error { return register(nil) }, "IncorrectState"},
		{"wrong block count", func() error {
			if err := put(3, block, sum(block)); err != nil {
				return err
			}
			return complete(2, aggregate(block))
		}, "ChangedBlocksCount"},
		{"wrong aggregate", func() error { return complete(1, aggregate(block, block)) }, "aggregate checksum"},
		{"good completion", func() error { return complete(1, aggregate(block)) }, ""},
		{"completed after polling", func() error {
			for range 2 {
				out, err := ec.DescribeSnapshots(ctx, &ec2.DescribeSnapshotsInput{SnapshotIds: []string{*id}})
				if err != nil || out.Snapshots[0].State == types.SnapshotStateCompleted {
					return err
				}
			}
			return errors.New("still pending")
		}, ""},
		{"write after completion", func() error { return put(0, block, sum(block)) }, "not in the pending state"},
		{"register without a root mapping", func() error {
			return register(func(in *ec2.RegisterImageInput) { in.BlockDeviceMappings[0].DeviceName = aws.String("/dev/sdb") })
		}, "InvalidBlockDeviceMapping"},
		{"register an unknown snapshot", func() error {
			return register(func(in *ec2.RegisterImageInput) { in.BlockDeviceMappings[0].Ebs.SnapshotId = aws.String("snap-0") })
		}, "InvalidSnapshot.NotFound"},
		{"register with a bad name", func() error {
			return register(func(in *ec2.RegisterImageInput) { in.Name = aws.String("a*b") })
		}, "InvalidAMIName.Malformed"},
		{"register with TPM and BIOS", func() error {
			return register(func(in *ec2.RegisterImageInput) {
				in.TpmSupport, in.BootMode = types.TpmSupportValuesV20, types.BootModeValuesLegacyBios
			})
		}, "InvalidParameterCombination"},
		{"register arm64 with BIOS", func() error {
			return register(func(in *ec2.RegisterImageInput) {
				in.Architecture, in.BootMode = types.ArchitectureValuesArm64, types.BootModeValuesLegacyBios
			})
		}, "InvalidParameterCombination"},
		{"register arm64 uefi-preferred", func() error {
			return register(func(in *ec2.RegisterImageInput) {
				in.Architecture, in.BootMode = types.ArchitectureValuesArm64, types.BootModeValuesUefiPreferred
			})
		}, "InvalidParameterCombination"},
		{"register an unknown architecture", func() error {
			return register(func(in *ec2.RegisterImageInput) { in.Architecture = "aarch64" })
		}, "Value (aarch64) for parameter architecture is invalid"},
		{"register", func() error { return register(nil) }, ""},
		{"register the same name twice", func() error { return register(nil) }, "InvalidAMIName.Duplicate"},
		{"delete a snapshot in use", func() error {
			_, err := ec.DeleteSnapshot(ctx, &ec2.DeleteSnapshotInput{SnapshotId: id})
			return err
		}, "InvalidSnapshot.InUse"},
		{"share with a bad account", func() error {
			imgs, _ := ec.DescribeImages(ctx, &ec2.DescribeImagesInput{Owners: []string{"self"}})
			_, err := ec.ModifyImageAttribute(ctx, &ec2.ModifyImageAttributeInput{ImageId: imgs.Images[0].ImageId,
				LaunchPermission: &types.LaunchPermissionModifications{Add: []types.LaunchPermission{{UserId: aws.String("42")}}}})
			return err
		}, "InvalidUserID.Malformed"},
	} {
		err := tc.call()
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%s: %v", tc.name, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("%s: err = %v, want %q", tc.name, err, tc.want)
		}
	}
	// Unsigned or foreign-key requests are refused.
	_, bad := clients(t, s, "AKIDSOMEONEELSE")
	if _, err := bad.DescribeImages(ctx, &ec2.DescribeImagesInput{}); err == nil || !strings.Contains(err.Error(), "AuthFailure") {
		t.Errorf("a foreign access key: %v", err)
	}
}
