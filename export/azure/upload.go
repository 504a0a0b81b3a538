package azure

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/streaming"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/compute/armcompute/v6"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/blob"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/pageblob"
	"golang.org/x/sync/errgroup"

	"github.com/layerimg/layerimg/disk/format"
	"github.com/layerimg/layerimg/disk/sparse"
	"github.com/layerimg/layerimg/disk/vhd"
	"github.com/layerimg/layerimg/export/progress"
)

// MaxWrite is the largest page write Azure takes: 4 MiB.
const MaxWrite = 4 << 20

const sector = 512

// source is the VHD to upload: data bytes from a file, then a footer. A
// raw disk is streamed as a fixed VHD: its size rounded up to MiB (the
// rest is zeros, never sent) and a footer made here.
type source struct {
	*os.File
	data   int64 // bytes of disk data in the file
	size   int64 // the VHD's virtual size (a whole MiB)
	footer []byte
}

func (s *source) total() int64 { return s.size + vhd.FooterSize }

func openSource(path, digest string) (*source, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("azure: %w", err)
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, err
	}
	kind, err := format.Sniff(path)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("azure: %w", err)
	}
	src := &source{File: f}
	switch {
	case kind == format.VMDK || kind == format.QCOW2:
		err = fmt.Errorf("azure: %s is a VMDK, qcow2 or dynamic VHD; publish the fixed VHD or the raw disk", path)
	case kind == format.VHD:
		if err = vhd.Check(path); err != nil {
			err = fmt.Errorf("azure: %w; publish the fixed VHD or the raw disk", err)
		} else {
			foot := make([]byte, vhd.FooterSize)
			if _, err = f.ReadAt(foot, fi.Size()-vhd.FooterSize); err == nil {
				src.data, src.size, src.footer = fi.Size()-vhd.FooterSize, fi.Size()-vhd.FooterSize, foot
			}
		}
	case fi.Size()%sector != 0 || fi.Size() == 0:
		err = fmt.Errorf("azure: %s: %d bytes is not a whole number of 512-byte sectors", path, fi.Size())
	case vhd.Size(fi.Size()) > vhd.MaxSize:
		err = fmt.Errorf("azure: %s is larger than a VHD can hold (2040 GiB)", path)
	default:
		// The footer's unique id comes from the digest: the same disk
		// uploads the same bytes.
		id := sha256.Sum256([]byte(digest))
		var uid [16]byte
		copy(uid[:], id[:])
		src.data, src.size = fi.Size(), vhd.Size(fi.Size())
		src.footer = vhd.Footer(src.size, uid, time.Unix(0, 0))
	}
	if err != nil {
		f.Close()
		return nil, err
	}
	return src, nil
}

// upload creates the upload disk, writes the VHD into it and revokes
// access. It returns the disk's ID and name.
func (p *publisher) upload(ctx context.Context, src *source, res *Result) (string, string, error) {
	cfg := p.cfg
	name := diskName(cfg.Digest)
	id := diskID(cfg, name)
	disk := armcompute.Disk{
		Location: &cfg.Location,
		Tags:     p.tags(),
		SKU:      &armcompute.DiskSKU{Name: ptr(armcompute.DiskStorageAccountTypesStandardLRS)},
		Properties: &armcompute.DiskProperties{
			OSType:           (*armcompute.OperatingSystemTypes)(&cfg.OSType),
			HyperVGeneration: (*armcompute.HyperVGeneration)(&cfg.HyperVGeneration),
			CreationData: &armcompute.CreationData{
				CreateOption:    ptr(armcompute.DiskCreateOptionUpload),
				UploadSizeBytes: ptr(src.total()),
			},
			SupportedCapabilities: &armcompute.SupportedCapabilities{Architecture: ptr(armcompute.Architecture(cfg.Architecture))},
		},
	}
	if cfg.SecurityType == "TrustedLaunch" {
		disk.Properties.SecurityProfile = &armcompute.DiskSecurityProfile{SecurityType: ptr(armcompute.DiskSecurityTypesTrustedLaunch)}
	}
	poller, err := p.c.disks.BeginCreateOrUpdate(ctx, cfg.ResourceGroup, name, disk, nil)
	if err != nil {
		return "", "", azErr("create disk", id, err)
	}
	p.undo.Push("delete disk "+id, func(ctx context.Context) error { return p.deleteDisk(ctx, name) })
	if _, err := poller.PollUntilDone(ctx, p.poll()); err != nil {
		return "", "", azErr("create disk", id, err)
	}
	cfg.Log.Info("made upload disk", "disk", id, "bytes", src.total())

	gp, err := p.c.disks.BeginGrantAccess(ctx, cfg.ResourceGroup, name, armcompute.GrantAccessData{
		Access: ptr(armcompute.AccessLevelWrite), DurationInSeconds: ptr(int32(24 * 3600)),
	}, nil)
	if err != nil {
		return "", "", azErr("grant access to disk", id, err)
	}
	// Revoking is also the undo: a disk with an active SAS cannot be deleted.
	p.undo.Push("revoke access to disk "+id, func(ctx context.Context) error { return p.revoke(ctx, name) })
	grant, err := gp.PollUntilDone(ctx, p.poll())
	if err != nil {
		return "", "", azErr("grant access to disk", id, err)
	}
	if grant.AccessSAS == nil {
		return "", "", fmt.Errorf("azure: grant access to disk %s: no SAS URL in the answer", id)
	}
	if err := p.writePages(ctx, *grant.AccessSAS, src, res); err != nil {
		return "", "", err
	}
	if err := p.revoke(ctx, name); err != nil {
		return "", "", err
	}
	return id, name, nil
}

func (p *publisher) revoke(ctx context.Context, name string) error {
	poller, err := p.c.disks.BeginRevokeAccess(ctx, p.cfg.ResourceGroup, name, nil)
	if err == nil {
		_, err = poller.PollUntilDone(ctx, p.poll())
	}
	if err != nil {
		return azErr("revoke access to disk", diskID(p.cfg, name), err)
	}
	return nil
}

// writePages sends the non-zero 512-byte-aligned runs of the disk, each
// at most 4 MiB, from cfg.Parallel writers, and then the footer. Retries
// of throttling and 5xx answers are azblob's.
func (p *publisher) writePages(ctx context.Context, sasURL string, src *source, res *Result) error {
	cfg := p.cfg
	opts := &pageblob.ClientOptions{}
	opts.Retry = policy.RetryOptions{MaxRetries: 8, RetryDelay: 200 * time.Millisecond, MaxRetryDelay: 30 * time.Second}
	if cfg.HTTPClient != nil {
		opts.Transport = cfg.HTTPClient
	}
	pb, err := pageblob.NewClientWithNoCredential(sasURL, opts)
	if err != nil {
		return fmt.Errorf("azure: page blob client for %s: %w", redact(sasURL), err)
	}
	type run struct {
		off int64
		buf *[]byte
		n   int
	}
	pool := sync.Pool{New: func() any { b := make([]byte, MaxWrite); return &b }}
	work := make(chan run, cfg.Parallel)
	var mu sync.Mutex
	meter := progress.Start(ctx, cfg.Log, "uploading pages", "ranges", src.data, cfg.ProgressInterval)
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error {
		defer close(work)
		return pageRuns(src.File, src.data, cfg.MergeGap, func(off int64, b []byte) error {
			buf := pool.Get().(*[]byte)
			n := copy(*buf, b)
			select {
			case work <- run{off, buf, n}:
				return nil
			case <-gctx.Done():
				return gctx.Err()
			}
		})
	})
	blobName := sasURL
	if i := strings.IndexByte(blobName, '?'); i >= 0 {
		blobName = blobName[:i] // the SAS stays out of messages
	}
	put := func(ctx context.Context, off int64, b []byte) error {
		_, err := pb.UploadPages(ctx, streaming.NopCloser(bytes.NewReader(b)), blob.HTTPRange{Offset: off, Count: int64(len(b))}, nil)
		if err != nil {
			return azErr(fmt.Sprintf("upload pages %d-%d of", off, off+int64(len(b))-1), blobName, err)
		}
		return nil
	}
	for range cfg.Parallel {
		g.Go(func() error {
			for r := range work {
				err := put(gctx, r.off, (*r.buf)[:r.n])
				pool.Put(r.buf)
				if err != nil {
					return err
				}
				meter.Add(int64(r.n))
				mu.Lock()
				res.RangesSent++
				res.BytesSent += int64(r.n)
				mu.Unlock()
			}
			return nil
		})
	}
	err = g.Wait()
	meter.Stop()
	if err != nil {
		return err
	}
	// The footer last: a disk whose footer is there holds all of its data.
	if err := put(ctx, src.size, src.footer); err != nil {
		return err
	}
	res.RangesSent++
	res.BytesSent += int64(len(src.footer))
	return nil
}

// pageRuns calls fn for each run of non-zero 512-byte sectors of f's first
// size bytes, split so that no run is longer than MaxWrite. Zero gaps of at
// most gap bytes inside a run are sent with it: one write instead of two
// costs less than the zeros. Holes are not read. The slice passed to fn is
// reused.
func pageRuns(f *os.File, size, gap int64, fn func(off int64, b []byte) error) error {
	ranges, err := sparse.DataRanges(f, size, sector)
	if err != nil {
		return err
	}
	buf := make([]byte, MaxWrite)
	for _, r := range ranges {
		for off := r.Off; off < r.Off+r.Len; off += MaxWrite {
			n := min(MaxWrite, r.Off+r.Len-off, size-off)
			if _, err := f.ReadAt(buf[:n], off); err != nil && !errors.Is(err, io.EOF) {
				return err
			}
			start, end := int64(-1), int64(0) // the run so far: [start, end)
			for s := int64(0); s < n; s += sector {
				if sparse.IsZero(buf[s:min(s+sector, n)]) {
					continue
				}
				if start >= 0 && s-end > gap {
					if err := fn(off+start, buf[start:end]); err != nil {
						return err
					}
					start = -1
				}
				if start < 0 {
					start = s
				}
				end = min(s+sector, n)
			}
			if start >= 0 {
				if err := fn(off+start, buf[start:end]); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

// --- errors ---

var sigRE = regexp.MustCompile(`(?i)(sig=)[^&\s"']+`)

// redact hides the signature of every SAS URL in s.
func redact(s string) string { return sigRE.ReplaceAllString(s, "${1}REDACTED") }

type redacted struct {
	msg string
	err error
}

func (e *redacted) Error() string { return e.msg }
func (e *redacted) Unwrap() error { return e.err }

func redactErr(err error) error {
	if err == nil {
		return nil
	}
	return &redacted{msg: redact(err.Error()), err: err}
}

func notFound(err error) bool {
	var re *azcore.ResponseError
	return errors.As(err, &re) && re.StatusCode == http.StatusNotFound
}

// azErr words an Azure failure: the operation, the resource, Azure's code
// and message (not the whole response dump azcore prints).
func azErr(op, id string, err error) error {
	var re *azcore.ResponseError
	if !errors.As(err, &re) {
		return fmt.Errorf("azure: %s %s: %w", op, id, err)
	}
	msg := ""
	if re.RawResponse != nil && re.RawResponse.Body != nil {
		b, _ := io.ReadAll(re.RawResponse.Body)
		var arm struct {
			Error struct{ Code, Message string } `json:"error"`
		}
		var storage struct {
			Message string `xml:"Message"`
		}
		switch {
		case json.Unmarshal(b, &arm) == nil:
			msg = arm.Error.Message
		case xml.Unmarshal(b, &storage) == nil:
			msg = storage.Message
		}
	}
	return &azureError{op: op, id: id, status: re.StatusCode, code: re.ErrorCode, msg: msg, err: err}
}

type azureError struct {
	op, id, code, msg string
	status            int
	err               error
}

func (e *azureError) Error() string {
	s := fmt.Sprintf("azure: %s %s: %s", e.op, e.id, e.code)
	if e.status >= 400 { // a failed long-running operation is reported with 200
		s += fmt.Sprintf(" (HTTP %d)", e.status)
	}
	if e.msg != "" {
		s += ": " + e.msg
	}
	return s
}

func (e *azureError) Unwrap() error { return e.err }
