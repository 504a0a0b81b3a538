package aws

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"sort"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/ratelimit"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/ec2/types"
	"golang.org/x/sync/errgroup"

	"github.com/layerimg/layerimg/disk/format"
	"github.com/layerimg/layerimg/disk/vhd"
	"github.com/layerimg/layerimg/disk/vmdk"
	"github.com/layerimg/layerimg/export"
	"github.com/layerimg/layerimg/export/undo"
)

// Image is one region's AMI.
type Image struct {
	Region     string `json:"region"`
	ImageID    string `json:"image_id"`
	SnapshotID string `json:"snapshot_id"`
	Name       string `json:"name"`
	Existing   bool   `json:"existing,omitempty"`
}

// Result is what Publish made or found, the primary region first.
type Result struct {
	Images     []Image `json:"images"`
	Method     string  `json:"method,omitempty"`
	Parent     string  `json:"parent_snapshot_id,omitempty"` // an incremental upload's base
	BlocksSent int64   `json:"blocks_sent,omitempty"`
	BytesSent  int64   `json:"bytes_sent,omitempty"`
}

// publisher holds one Publish's clients and the undo list for a failure.
type publisher struct {
	cfg   Config
	aws   aws.Config
	name  string
	state *blockState // the upload's block hashes, kept for the next one

	undo undo.Stack
}

// Publish uploads the disk (raw, or a fixed VHD; a streamOptimized VMDK for
// import-snapshot) and registers it as an AMI in cfg.Region, then copies and
// shares it. A disk whose digest already has an AMI in a region is not
// uploaded again unless cfg.Force. On failure or interrupt, what this call
// created and did not finish is deleted.
func Publish(ctx context.Context, diskPath string, cfg Config) (res *Result, err error) {
	// The disk's own word (its root partition's GPT type) goes first:
	// an AMI registered for the other architecture never boots.
	arch, err := export.DiskArch(ctx, diskPath)
	if err != nil {
		return nil, fmt.Errorf("aws: %w", err)
	}
	if err := cfg.setArchitecture(arch, diskPath+" is an "+arch+" disk (its root partition's GPT type)"); err != nil {
		return nil, err
	}
	if err := cfg.defaults(); err != nil {
		return nil, err
	}
	name, err := cfg.ImageName()
	if err != nil {
		return nil, err
	}
	src, err := openDisk(diskPath, cfg.Method)
	if err != nil {
		return nil, err
	}
	defer src.Close()
	if gib := (src.virtual + 1<<30 - 1) >> 30; cfg.VolumeSize != 0 && cfg.VolumeSize < gib {
		return nil, fmt.Errorf("aws: volume_size %d GiB is smaller than the %d GiB disk", cfg.VolumeSize, gib)
	}
	ac, err := cfg.load(ctx)
	if err != nil {
		return nil, err
	}
	p := &publisher{cfg: cfg, aws: ac, name: name, undo: undo.Stack{Cloud: "AWS", Log: cfg.Log}}
	defer func() {
		if err != nil {
			p.undo.Rollback(ctx)
		}
	}()

	res = &Result{Method: cfg.Method}
	primary := p.ec2(cfg.Region)
	img, err := p.existing(ctx, primary, cfg.Region)
	if err != nil {
		return nil, err
	}
	if img == nil {
		snap, err := p.snapshot(ctx, src, res)
		if err != nil {
			return nil, err
		}
		if img, err = p.register(ctx, primary, snap, src.virtual); err != nil {
			return nil, err
		}
		// The tagged image is complete: a failure from here on keeps it,
		// and the next publish finds it by digest.
		p.undo.Commit()
		p.saveState()
	}
	res.Images = append(res.Images, *img)
	copies, err := p.copies(ctx, *img)
	res.Images = append(res.Images, copies...)
	if err != nil {
		return res, err
	}
	if err := p.share(ctx, res.Images); err != nil {
		return res, err
	}
	return res, nil
}

func (c *Config) load(ctx context.Context) (aws.Config, error) {
	opts := []func(*config.LoadOptions) error{
		config.WithRegion(c.Region),
		config.WithRetryer(func() aws.Retryer {
			// Many workers retrying through throttling would drain the
			// default retry quota and fail the upload; back off instead.
			return retry.NewStandard(func(o *retry.StandardOptions) {
				o.MaxAttempts = 10
				o.MaxBackoff = c.MaxBackoff
				o.RateLimiter = ratelimit.None
			})
		}),
	}
	if c.Profile != "" {
		opts = append(opts, config.WithSharedConfigProfile(c.Profile))
	}
	if c.Endpoint != "" {
		opts = append(opts, config.WithBaseEndpoint(c.Endpoint))
	}
	if c.HTTPClient != nil {
		opts = append(opts, config.WithHTTPClient(c.HTTPClient))
	} else {
		// The SDK's client bounds connect (30s) and TLS (10s) but would wait
		// for response headers forever. EC2 and EBS answer in seconds, an
		// EBS block PUT once its 512 KiB are sent, and S3 sends headers
		// early even while it completes a multipart upload; 2 minutes is
		// far beyond all of them. A timeout is retried like other errors.
		opts = append(opts, config.WithHTTPClient(awshttp.NewBuildableClient().WithTransportOptions(func(t *http.Transport) {
			t.ResponseHeaderTimeout = 2 * time.Minute
		})))
	}
	ac, err := config.LoadDefaultConfig(ctx, opts...)
	if err != nil {
		return aws.Config{}, fmt.Errorf("aws: loading credentials and config: %w", err)
	}
	return ac, nil
}

func (p *publisher) ec2(region string) *ec2.Client {
	return ec2.NewFromConfig(p.aws, func(o *ec2.Options) { o.Region = region })
}

// existing finds an image of this disk's digest in region.
func (p *publisher) existing(ctx context.Context, c *ec2.Client, region string) (*Image, error) {
	if p.cfg.Force {
		return nil, nil
	}
	out, err := c.DescribeImages(ctx, &ec2.DescribeImagesInput{
		Owners:  []string{"self"},
		Filters: []types.Filter{{Name: aws.String("tag:" + DigestTag), Values: []string{p.cfg.Digest}}},
	})
	if err != nil {
		return nil, fmt.Errorf("aws %s: DescribeImages by tag %s: %w", region, DigestTag, err)
	}
	for _, im := range out.Images {
		switch im.State {
		case types.ImageStateAvailable, types.ImageStatePending:
			img := &Image{Region: region, ImageID: aws.ToString(im.ImageId), Name: aws.ToString(im.Name), Existing: true, SnapshotID: rootSnapshot(im)}
			if im.State == types.ImageStatePending {
				if err := p.waitImage(ctx, c, region, img, p.cfg.CopyTimeout); err != nil {
					return nil, err
				}
			}
			p.cfg.Log.Info("this disk is already published", "region", region, "image", img.ImageID)
			return img, nil
		}
	}
	return nil, nil
}

func rootSnapshot(im types.Image) string {
	for _, m := range im.BlockDeviceMappings {
		if aws.ToString(m.DeviceName) == aws.ToString(im.RootDeviceName) && m.Ebs != nil {
			return aws.ToString(m.Ebs.SnapshotId)
		}
	}
	return ""
}

func (p *publisher) tags(extra map[string]string) map[string]string {
	t := map[string]string{RecipeTag: p.cfg.Recipe, "Name": p.name}
	for k, v := range p.cfg.Tags {
		t[k] = v
	}
	for k, v := range extra {
		t[k] = v
	}
	if t[RecipeTag] == "" {
		delete(t, RecipeTag)
	}
	if p.cfg.SBOM != "" && extra[DigestTag] != "" { // on the image, with its digest
		t[SBOMTag] = p.cfg.SBOM
	}
	return t
}

func ec2Tags(m map[string]string) []types.Tag {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var out []types.Tag
	for _, k := range keys {
		out = append(out, types.Tag{Key: aws.String(k), Value: aws.String(m[k])})
	}
	return out
}

// snapshot puts the disk into a completed EBS snapshot, by the configured
// method, and returns its ID.
func (p *publisher) snapshot(ctx context.Context, src *diskFile, res *Result) (string, error) {
	var id string
	var err error
	if p.cfg.Method == ImportSnapshot {
		id, err = p.importSnapshot(ctx, src)
	} else {
		id, err = p.ebsDirect(ctx, src, res)
	}
	if err != nil {
		return "", err
	}
	return id, p.waitSnapshot(ctx, p.ec2(p.cfg.Region), id)
}

func (p *publisher) deleteSnapshot(c *ec2.Client, id string) func(context.Context) error {
	return func(ctx context.Context) error {
		_, err := c.DeleteSnapshot(ctx, &ec2.DeleteSnapshotInput{SnapshotId: aws.String(id)})
		return err
	}
}

func (p *publisher) waitSnapshot(ctx context.Context, c *ec2.Client, id string) error {
	ctx, cancel := context.WithTimeout(ctx, p.cfg.SnapshotTimeout)
	defer cancel()
	for {
		out, err := c.DescribeSnapshots(ctx, &ec2.DescribeSnapshotsInput{SnapshotIds: []string{id}})
		if err != nil {
			return fmt.Errorf("aws %s: DescribeSnapshots %s: %w", p.cfg.Region, id, err)
		}
		if len(out.Snapshots) != 1 {
			return fmt.Errorf("aws %s: DescribeSnapshots %s: the snapshot is gone", p.cfg.Region, id)
		}
		s := out.Snapshots[0]
		switch s.State {
		case types.SnapshotStateCompleted:
			return nil
		case types.SnapshotStateError, types.SnapshotStateRecoverable:
			return fmt.Errorf("aws %s: snapshot %s failed: %s", p.cfg.Region, id, aws.ToString(s.StateMessage))
		}
		p.cfg.Log.Info("waiting for the snapshot", "snapshot", id, "progress", aws.ToString(s.Progress))
		if err := sleep(ctx, p.cfg.PollInterval); err != nil {
			return fmt.Errorf("aws %s: waiting for snapshot %s to complete: %w", p.cfg.Region, id, err)
		}
	}
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// register makes the AMI from the snapshot and tags it; the digest tag
// comes with the other tags in one CreateTags, after the image exists, so an
// image that carries it is complete.
func (p *publisher) register(ctx context.Context, c *ec2.Client, snap string, size int64) (*Image, error) {
	cfg := p.cfg
	gib := max(cfg.VolumeSize, (size+1<<30-1)>>30)
	in := &ec2.RegisterImageInput{
		Name:               aws.String(p.name),
		Architecture:       types.ArchitectureValues(cfg.Architecture),
		BootMode:           types.BootModeValues(cfg.BootMode),
		EnaSupport:         cfg.ENASupport,
		RootDeviceName:     aws.String(cfg.RootDeviceName),
		VirtualizationType: aws.String("hvm"),
		BlockDeviceMappings: []types.BlockDeviceMapping{{
			DeviceName: aws.String(cfg.RootDeviceName),
			Ebs: &types.EbsBlockDevice{SnapshotId: aws.String(snap), VolumeSize: aws.Int32(int32(gib)),
				VolumeType: types.VolumeType(cfg.VolumeType), DeleteOnTermination: aws.Bool(true)},
		}},
	}
	if cfg.Description != "" {
		in.Description = aws.String(cfg.Description)
	}
	if cfg.IMDSSupport == "v2.0" {
		in.ImdsSupport = types.ImdsSupportValuesV20
	}
	if cfg.TPMSupport != "" {
		in.TpmSupport = types.TpmSupportValues(cfg.TPMSupport)
	}
	out, err := c.RegisterImage(ctx, in)
	if err != nil {
		return nil, fmt.Errorf("aws %s: RegisterImage %q from snapshot %s: %w", cfg.Region, p.name, snap, err)
	}
	id := aws.ToString(out.ImageId)
	p.undo.Push("deregister image "+id, func(ctx context.Context) error {
		_, err := c.DeregisterImage(ctx, &ec2.DeregisterImageInput{ImageId: aws.String(id)})
		return err
	})
	p.cfg.Log.Info("registered image", "region", cfg.Region, "image", id, "name", p.name)
	if _, err := c.CreateTags(ctx, &ec2.CreateTagsInput{
		Resources: []string{id, snap},
		Tags:      ec2Tags(p.tags(map[string]string{DigestTag: cfg.Digest})),
	}); err != nil {
		return nil, fmt.Errorf("aws %s: CreateTags on image %s and snapshot %s: %w", cfg.Region, id, snap, err)
	}
	return &Image{Region: cfg.Region, ImageID: id, SnapshotID: snap, Name: p.name}, nil
}

// copies copies the image to each copy_to region, in parallel. A copy that
// fails is deregistered; copies already finished stay and are returned.
func (p *publisher) copies(ctx context.Context, src Image) ([]Image, error) {
	out := make([]Image, len(p.cfg.CopyTo))
	var g errgroup.Group
	for i, region := range p.cfg.CopyTo {
		g.Go(func() error {
			c := p.ec2(region)
			if img, err := p.existing(ctx, c, region); err != nil || img != nil {
				if img != nil {
					out[i] = *img
				}
				return err
			}
			in := &ec2.CopyImageInput{SourceImageId: aws.String(src.ImageID), SourceRegion: aws.String(src.Region),
				Name: aws.String(src.Name), CopyImageTags: aws.Bool(true)}
			if p.cfg.Description != "" {
				in.Description = aws.String(p.cfg.Description)
			}
			if p.cfg.Encrypted {
				in.Encrypted = aws.Bool(true) // with the region's default key: KMS keys are regional
			}
			r, err := c.CopyImage(ctx, in)
			if err != nil {
				return fmt.Errorf("aws %s: CopyImage of %s from %s: %w", region, src.ImageID, src.Region, err)
			}
			img := Image{Region: region, ImageID: aws.ToString(r.ImageId), Name: src.Name}
			forget := p.undo.Push("deregister copy "+img.ImageID+" in "+region, func(ctx context.Context) error {
				_, err := c.DeregisterImage(ctx, &ec2.DeregisterImageInput{ImageId: aws.String(img.ImageID)})
				if err == nil && img.SnapshotID != "" {
					_, err = c.DeleteSnapshot(ctx, &ec2.DeleteSnapshotInput{SnapshotId: aws.String(img.SnapshotID)})
				}
				return err
			})
			if err := p.waitImage(ctx, c, region, &img, p.cfg.CopyTimeout); err != nil {
				return err
			}
			forget()
			p.cfg.Log.Info("copied image", "region", region, "image", img.ImageID)
			out[i] = img
			return nil
		})
	}
	err := g.Wait()
	var done []Image
	for _, im := range out {
		if im.ImageID != "" {
			done = append(done, im)
		}
	}
	return done, err
}

func (p *publisher) waitImage(ctx context.Context, c *ec2.Client, region string, img *Image, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	for {
		out, err := c.DescribeImages(ctx, &ec2.DescribeImagesInput{ImageIds: []string{img.ImageID}})
		if err != nil {
			return fmt.Errorf("aws %s: DescribeImages %s: %w", region, img.ImageID, err)
		}
		if len(out.Images) != 1 {
			return fmt.Errorf("aws %s: image %s is gone", region, img.ImageID)
		}
		im := out.Images[0]
		img.SnapshotID = rootSnapshot(im)
		switch im.State {
		case types.ImageStateAvailable:
			return nil
		case types.ImageStatePending:
		default:
			msg := ""
			if im.StateReason != nil {
				msg = aws.ToString(im.StateReason.Message)
			}
			return fmt.Errorf("aws %s: image %s is %s: %s", region, img.ImageID, im.State, msg)
		}
		if err := sleep(ctx, p.cfg.PollInterval); err != nil {
			return fmt.Errorf("aws %s: waiting for image %s: %w", region, img.ImageID, err)
		}
	}
}

// share grants launch permissions on every region's image.
func (p *publisher) share(ctx context.Context, imgs []Image) error {
	var perms []types.LaunchPermission
	for _, a := range p.cfg.ShareAccounts {
		perms = append(perms, types.LaunchPermission{UserId: aws.String(a)})
	}
	for _, o := range p.cfg.ShareOrganizations {
		perms = append(perms, types.LaunchPermission{OrganizationArn: aws.String(o)})
	}
	for _, o := range p.cfg.ShareOrganizational {
		perms = append(perms, types.LaunchPermission{OrganizationalUnitArn: aws.String(o)})
	}
	if len(perms) == 0 {
		return nil
	}
	for _, im := range imgs {
		_, err := p.ec2(im.Region).ModifyImageAttribute(ctx, &ec2.ModifyImageAttributeInput{
			ImageId: aws.String(im.ImageID), LaunchPermission: &types.LaunchPermissionModifications{Add: perms},
		})
		if err != nil {
			return fmt.Errorf("aws %s: ModifyImageAttribute launchPermission on %s: %w", im.Region, im.ImageID, err)
		}
	}
	return nil
}

// diskFile is the disk to upload: its data is the first size bytes.
type diskFile struct {
	*os.File
	path    string
	size    int64  // bytes of the file to upload
	virtual int64  // the disk's size
	format  string // raw, vhd, vmdk
}

func openDisk(path, method string) (*diskFile, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("aws: %w", err)
	}
	d, err := sniff(f, path)
	if err != nil {
		f.Close()
		return nil, err
	}
	switch {
	case method == EBSDirect && d.format == "vmdk":
		err = fmt.Errorf("aws: %s is a VMDK; ebs-direct uploads the raw disk or a fixed VHD", path)
	case method == ImportSnapshot && d.format != "vmdk":
		err = fmt.Errorf("aws: %s: import-snapshot uploads a streamOptimized VMDK (layerimg convert --to vmdk makes one)", path)
	}
	if err != nil {
		f.Close()
		return nil, err
	}
	return d, nil
}

// sniff tells a raw disk from a fixed VHD (raw plus a 512-byte footer) and
// a streamOptimized VMDK, and refuses the formats whose bytes are not the
// disk's.
func sniff(f *os.File, path string) (*diskFile, error) {
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	d := &diskFile{File: f, path: path, size: fi.Size(), format: "raw"}
	kind, err := format.Sniff(path)
	if err != nil {
		return nil, fmt.Errorf("aws: %w", err)
	}
	switch kind {
	case format.VMDK:
		capacity, stream, err := vmdk.Info(path)
		if err != nil {
			return nil, fmt.Errorf("aws: %w", err)
		}
		if !stream {
			return nil, fmt.Errorf("aws: %s is not a streamOptimized VMDK (layerimg convert --to vmdk makes one)", path)
		}
		d.format, d.virtual = "vmdk", capacity
		return d, nil
	case format.QCOW2:
		return nil, fmt.Errorf("aws: %s is qcow2; publish the raw disk", path)
	case format.VHD:
		if err := vhd.Check(path); err != nil {
			return nil, fmt.Errorf("aws: %w; publish the raw disk or a fixed VHD", err)
		}
		d.format, d.size = "vhd", fi.Size()-vhd.FooterSize
	}
	if d.size%512 != 0 || d.size == 0 {
		return nil, fmt.Errorf("aws: %s: %d bytes is not a whole number of 512-byte sectors", path, d.size)
	}
	d.virtual = d.size
	return d, nil
}
