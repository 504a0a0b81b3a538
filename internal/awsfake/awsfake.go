// Package awsfake is a strict stand-in for the parts of Amazon EC2 and the
// EBS direct APIs that publishing an AMI uses. aws-sdk-go-v2 talks to it
// over BaseEndpoint: EC2's query protocol (form in, XML out) and EBS's
// REST-JSON. It rejects what the AWS API reference says AWS rejects, records
// every call, and can be told to throttle, fail or be slow.
//
// No AWS emulator is usable here (see ../shared/FINDINGS.md), so tests of
// the publisher stop at this fake: IAM, real signatures and real throughput
// are not exercised.
package awsfake

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"encoding/xml"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// BlockSize is the only block size the EBS direct APIs accept.
const BlockSize = 512 << 10

// Account is the fake caller's account ID.
const Account = "111122223333"

// Call is one request the fake answered.
type Call struct {
	Region, Service, Op string
	Resource            string // snapshot or image ID when the call names one
	Status              int
}

// Fault makes the n-th call (from 1) of op fail, before the fake looks at it.
type Fault struct {
	Op     string
	Status int    // 400 with a throttling code, 500, 503...
	Code   string // the AWS error code
}

// Server is the fake. Its fields may be set before the first request.
type Server struct {
	*httptest.Server

	// AccessKey is the only access key ID accepted (default AKIDLAYERIMG).
	AccessKey string
	// Latency is added to every call.
	Latency time.Duration
	// PendingPolls is how many describe calls see a snapshot, copy or import
	// still pending before it completes (default 1).
	PendingPolls int
	// Inject decides, per call, whether it fails: given the op and how many
	// times it has been called (from 1), it returns a fault or nil.
	Inject func(op string, n int) *Fault
	// ImportConvert turns an imported disk (format, bytes) into raw disk
	// bytes. Without it import tasks fail as AWS does on a bad disk.
	ImportConvert func(format string, data []byte) ([]byte, error)
	// S3Get fetches an object for ImportSnapshot.
	S3Get func(bucket, key string) ([]byte, error)

	mu        sync.Mutex
	calls     []Call
	counts    map[string]int
	snapshots map[string]*Snapshot
	images    map[string]*Image
	imports   map[string]*importTask
	seq       int
}

// Snapshot is an EBS snapshot as the fake holds it.
type Snapshot struct {
	ID, Region, Description, Status, KMSKeyID, Parent string
	VolumeSize                                        int64 // GiB
	Encrypted                                         bool
	Tags                                              map[string]string
	Blocks                                            map[int32][]byte
	checksums                                         map[int32][]byte
	polls                                             int
}

// Image is an AMI as the fake holds it.
type Image struct {
	ID, Region, Name, Description, State                        string
	Architecture, BootMode, IMDSSupport, TPMSupport             string
	RootDeviceName, VirtualizationType                          string
	ENASupport                                                  bool
	SnapshotID, VolumeType                                      string
	VolumeSize                                                  int64
	DeleteOnTermination                                         bool
	SourceImage, SourceRegion                                   string
	Tags                                                        map[string]string
	LaunchUsers, LaunchOrganizations, LaunchOrganizationalUnits []string
	polls                                                       int
}

type importTask struct {
	ID, Region, Status, Message, SnapshotID, Description string
	polls                                                int
	data                                                 []byte
	format                                               string
	cancelled                                            bool
}

// New starts a fake on a TLS listener; use its Client() as the SDK's HTTP
// client.
func New() *Server {
	s := &Server{
		AccessKey: "AKIDLAYERIMG", PendingPolls: 1, counts: map[string]int{},
		snapshots: map[string]*Snapshot{}, images: map[string]*Image{}, imports: map[string]*importTask{},
	}
	s.Server = httptest.NewTLSServer(http.HandlerFunc(s.serve))
	return s
}

// Calls returns the calls made so far, in order.
func (s *Server) Calls() []Call {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.calls)
}

// Snapshots returns the snapshots that exist (not deleted).
func (s *Server) Snapshots() []*Snapshot {
	s.mu.Lock()
	defer s.mu.Unlock()
	return byID(s.snapshots)
}

// Images returns the images that exist (not deregistered).
func (s *Server) Images() []*Image {
	s.mu.Lock()
	defer s.mu.Unlock()
	return byID(s.images)
}

// byID lists the values of m, which is keyed by ID, in the order of their IDs.
func byID[V any](m map[string]V) []V {
	var out []V
	for _, id := range slices.Sorted(maps.Keys(m)) {
		out = append(out, m[id])
	}
	return out
}

// Bytes reassembles a snapshot into size bytes of disk.
func (sn *Snapshot) Bytes(size int64) []byte {
	b := make([]byte, size)
	for i, blk := range sn.Blocks {
		off := int64(i) * BlockSize
		if off < size {
			copy(b[off:], blk)
		}
	}
	return b
}

func (s *Server) id(prefix string) string {
	s.seq++
	return fmt.Sprintf("%s-%017x", prefix, s.seq)
}

// apiError is an error answer: the status, AWS's code and message.
type apiError struct {
	status        int
	code, message string
	reason        string // EBS ValidationException reason
}

func errf(status int, code, format string, args ...any) *apiError {
	return &apiError{status: status, code: code, message: fmt.Sprintf(format, args...)}
}

var credRE = regexp.MustCompile(`^AWS4-HMAC-SHA256 Credential=([A-Z0-9]+)/\d{8}/([a-z0-9-]+)/([a-z0-9]+)/aws4_request, ?SignedHeaders=[a-z0-9;-]+, ?Signature=[0-9a-f]{64}$`)

func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	if s.Latency > 0 {
		time.Sleep(s.Latency)
	}
	m := credRE.FindStringSubmatch(r.Header.Get("Authorization"))
	ebsCall := strings.HasPrefix(r.URL.Path, "/snapshots")
	reply := func(e *apiError, op, region, res string) {
		s.mu.Lock()
		status := http.StatusOK
		if e != nil {
			status = e.status
		}
		s.calls = append(s.calls, Call{Region: region, Service: map[bool]string{true: "ebs", false: "ec2"}[ebsCall], Op: op, Resource: res, Status: status})
		s.mu.Unlock()
		if e != nil {
			writeError(w, ebsCall, e)
		}
	}
	if m == nil {
		reply(errf(401, "AuthFailure", "AWS was not able to validate the provided access credentials"), "", "", "")
		return
	}
	if m[1] != s.AccessKey {
		reply(errf(401, "AuthFailure", "The access key ID %s does not exist", m[1]), "", m[2], "")
		return
	}
	region := m[2]
	if ebsCall {
		if m[3] != "ebs" {
			reply(errf(403, "AccessDeniedException", "credential scope names service %s, not ebs", m[3]), "", region, "")
			return
		}
		op, res, e := s.ebs(w, r, region)
		reply(e, op, region, res)
		return
	}
	if m[3] != "ec2" {
		reply(errf(401, "AuthFailure", "credential scope names service %s, not ec2", m[3]), "", region, "")
		return
	}
	if r.Method != http.MethodPost {
		reply(errf(400, "InvalidAction", "EC2 takes POST"), "", region, "")
		return
	}
	body, _ := io.ReadAll(r.Body)
	form, err := url.ParseQuery(string(body))
	if err != nil {
		reply(errf(400, "MalformedQueryString", "%v", err), "", region, "")
		return
	}
	op := form.Get("Action")
	if form.Get("Version") != "2016-11-15" {
		reply(errf(400, "InvalidParameterValue", "unsupported API version %q", form.Get("Version")), op, region, "")
		return
	}
	if f := s.fault(op); f != nil {
		reply(f, op, region, "")
		return
	}
	s.mu.Lock()
	out, res, e := s.ec2(op, form, region)
	s.mu.Unlock()
	reply(e, op, region, res)
	if e != nil {
		return
	}
	w.Header().Set("Content-Type", "text/xml;charset=UTF-8")
	w.Write([]byte(xml.Header))
	out.write(w)
}

func (s *Server) fault(op string) *apiError {
	s.mu.Lock()
	s.counts[op]++
	n := s.counts[op]
	s.mu.Unlock()
	if s.Inject == nil {
		return nil
	}
	if f := s.Inject(op, n); f != nil {
		return errf(f.Status, f.Code, "injected fault on %s call %d", op, n)
	}
	return nil
}

func writeError(w http.ResponseWriter, ebs bool, e *apiError) {
	reqID := fmt.Sprintf("fake-%d", time.Now().UnixNano())
	if ebs {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("X-Amzn-Errortype", e.code)
		w.Header().Set("X-Amzn-Requestid", reqID)
		w.WriteHeader(e.status)
		body := map[string]string{"Message": e.message}
		if e.reason != "" {
			body["Reason"] = e.reason
		}
		json.NewEncoder(w).Encode(body)
		return
	}
	w.Header().Set("Content-Type", "text/xml;charset=UTF-8")
	w.WriteHeader(e.status)
	fmt.Fprintf(w, `<?xml version="1.0" encoding="UTF-8"?>
<Response><Errors><Error><Code>%s</Code><Message>%s</Message></Error></Errors><RequestID>%s</RequestID></Response>`,
		xmlEscape(e.code), xmlEscape(e.message), reqID)
}

func xmlEscape(s string) string {
	var b bytes.Buffer
	xml.EscapeText(&b, []byte(s))
	return b.String()
}

// --- EBS direct APIs (REST-JSON) ---

var (
	blockPath    = regexp.MustCompile(`^/snapshots/([^/]+)/blocks/([^/]+)$`)
	completePath = regexp.MustCompile(`^/snapshots/completion/([^/]+)$`)
)

func validation(reason, format string, args ...any) *apiError {
	e := errf(400, "ValidationException", format, args...)
	e.reason = reason
	return e
}

func (s *Server) ebs(w http.ResponseWriter, r *http.Request, region string) (op, res string, e *apiError) {
	switch {
	case r.Method == http.MethodPost && r.URL.Path == "/snapshots":
		op = "StartSnapshot"
	case r.Method == http.MethodPut && blockPath.MatchString(r.URL.Path):
		op = "PutSnapshotBlock"
	case r.Method == http.MethodPost && completePath.MatchString(r.URL.Path):
		op = "CompleteSnapshot"
	default:
		return "", "", errf(404, "UnknownOperationException", "%s %s", r.Method, r.URL.Path)
	}
	if f := s.fault(op); f != nil {
		io.Copy(io.Discard, r.Body)
		return op, "", f
	}
	switch op {
	case "StartSnapshot":
		id, e := s.startSnapshot(w, r, region)
		return op, id, e
	case "PutSnapshotBlock":
		m := blockPath.FindStringSubmatch(r.URL.Path)
		return op, m[1], s.putBlock(w, r, m[1], m[2])
	default:
		m := completePath.FindStringSubmatch(r.URL.Path)
		return op, m[1], s.complete(w, r, m[1])
	}
}

func (s *Server) startSnapshot(w http.ResponseWriter, r *http.Request, region string) (string, *apiError) {
	var in struct {
		VolumeSize       *int64
		ParentSnapshotId string
		Tags             []struct{ Key, Value string }
		Description      string
		ClientToken      string
		Encrypted        bool
		KmsKeyArn        string
		Timeout          *int
	}
	if err := json.NewDecoder(r.Body).Decode(&in); err != nil {
		return "", validation("INVALID_PARAMETER_VALUE", "request body: %v", err)
	}
	switch {
	case in.VolumeSize == nil:
		return "", validation("INVALID_PARAMETER_VALUE", "VolumeSize is required")
	case *in.VolumeSize < 1 || *in.VolumeSize > 65536:
		return "", validation("INVALID_VOLUME_SIZE", "VolumeSize %d GiB is out of range", *in.VolumeSize)
	case in.Timeout != nil && (*in.Timeout < 10 || *in.Timeout > 4320):
		return "", validation("INVALID_PARAMETER_VALUE", "Timeout must be 10 to 4320 minutes")
	case in.KmsKeyArn != "" && !in.Encrypted:
		return "", validation("INVALID_PARAMETER_VALUE", "KmsKeyArn needs Encrypted")
	case len(in.Description) > 255:
		return "", validation("INVALID_PARAMETER_VALUE", "Description is longer than 255 characters")
	}
	tags, e := checkTags(in.Tags)
	if e != nil {
		return "", e
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if in.ParentSnapshotId != "" {
		p, ok := s.snapshots[in.ParentSnapshotId]
		if !ok || p.Region != region {
			return "", errf(404, "ResourceNotFoundException", "The snapshot %s does not exist", in.ParentSnapshotId)
		}
		if *in.VolumeSize < p.VolumeSize {
			return "", validation("INVALID_VOLUME_SIZE", "VolumeSize is smaller than the parent's")
		}
	}
	sn := &Snapshot{ID: s.id("snap"), Region: region, Description: in.Description, Status: "pending",
		KMSKeyID: in.KmsKeyArn, Parent: in.ParentSnapshotId, VolumeSize: *in.VolumeSize, Encrypted: in.Encrypted,
		Tags: tags, Blocks: map[int32][]byte{}, checksums: map[int32][]byte{}}
	if p := s.snapshots[in.ParentSnapshotId]; p != nil {
		for i, b := range p.Blocks {
			sn.Blocks[i] = b
		}
	}
	s.snapshots[sn.ID] = sn
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusCreated)
	json.NewEncoder(w).Encode(map[string]any{
		"SnapshotId": sn.ID, "OwnerId": Account, "Status": "pending", "StartTime": float64(time.Now().Unix()),
		"VolumeSize": sn.VolumeSize, "BlockSize": BlockSize, "Description": sn.Description, "ParentSnapshotId": sn.Parent,
		"Tags": in.Tags,
	})
	return sn.ID, nil
}

func checkTags(in []struct{ Key, Value string }) (map[string]string, *apiError) {
	if len(in) > 50 {
		return nil, validation("INVALID_TAG", "more than 50 tags")
	}
	tags := map[string]string{}
	for _, t := range in {
		if t.Key == "" || len(t.Key) > 128 || len(t.Value) > 256 || strings.HasPrefix(strings.ToLower(t.Key), "aws:") {
			return nil, validation("INVALID_TAG", "tag key %q is not allowed", t.Key)
		}
		tags[t.Key] = t.Value
	}
	return tags, nil
}

// pending is the snapshot that EBS direct may write blocks to or complete:
// one that StartSnapshot made and CompleteSnapshot has not. s.mu is held.
func (s *Server) pending(snapID string) (*Snapshot, *apiError) {
	sn, ok := s.snapshots[snapID]
	if !ok {
		return nil, errf(404, "ResourceNotFoundException", "The snapshot %s does not exist", snapID)
	}
	if sn.Status != "pending" || sn.checksums == nil {
		return nil, validation("INVALID_SNAPSHOT_ID", "The snapshot %s is not in the pending state", snapID)
	}
	return sn, nil
}

func (s *Server) putBlock(w http.ResponseWriter, r *http.Request, snapID, index string) *apiError {
	data, err := io.ReadAll(r.Body)
	if err != nil {
		return validation("INVALID_BLOCK", "reading the block: %v", err)
	}
	idx, err := strconv.ParseInt(index, 10, 32)
	if err != nil || idx < 0 {
		return validation("INVALID_BLOCK", "BlockIndex %q is not a block index", index)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	sn, e := s.pending(snapID)
	if e != nil {
		return e
	}
	if idx >= sn.VolumeSize<<30/BlockSize {
		return validation("INVALID_BLOCK", "BlockIndex %d is beyond the volume size of %d GiB", idx, sn.VolumeSize)
	}
	if n := r.Header.Get("X-Amz-Data-Length"); n != strconv.Itoa(BlockSize) {
		return validation("INVALID_BLOCK", "DataLength %q: a block must be %d bytes", n, BlockSize)
	}
	if len(data) != BlockSize {
		return validation("INVALID_BLOCK", "the block holds %d bytes; a block must be %d bytes", len(data), BlockSize)
	}
	if a := r.Header.Get("X-Amz-Checksum-Algorithm"); a != "SHA256" {
		return validation("INVALID_PARAMETER_VALUE", "ChecksumAlgorithm %q: only SHA256", a)
	}
	sum := sha256.Sum256(data)
	if got := r.Header.Get("X-Amz-Checksum"); got != base64.StdEncoding.EncodeToString(sum[:]) {
		return validation("INVALID_PARAMETER_VALUE", "The checksum %q does not match the block data", got)
	}
	if p := r.Header.Get("X-Amz-Progress"); p != "" {
		if v, err := strconv.Atoi(p); err != nil || v < 0 || v > 100 {
			return validation("INVALID_PARAMETER_VALUE", "Progress %q must be 0 to 100", p)
		}
	}
	sn.Blocks[int32(idx)] = data
	sn.checksums[int32(idx)] = sum[:]
	w.Header().Set("X-Amz-Checksum", base64.StdEncoding.EncodeToString(sum[:]))
	w.Header().Set("X-Amz-Checksum-Algorithm", "SHA256")
	w.WriteHeader(http.StatusCreated)
	return nil
}

func (s *Server) complete(w http.ResponseWriter, r *http.Request, snapID string) *apiError {
	s.mu.Lock()
	defer s.mu.Unlock()
	sn, e := s.pending(snapID)
	if e != nil {
		return e
	}
	n, err := strconv.Atoi(r.Header.Get("X-Amz-Changedblockscount"))
	if err != nil || n != len(sn.checksums) {
		return validation("INVALID_PARAMETER_VALUE", "ChangedBlocksCount %q: %d blocks were written", r.Header.Get("X-Amz-Changedblockscount"), len(sn.checksums))
	}
	if sum := r.Header.Get("X-Amz-Checksum"); sum != "" {
		if r.Header.Get("X-Amz-Checksum-Algorithm") != "SHA256" || r.Header.Get("X-Amz-Checksum-Aggregation-Method") != "LINEAR" {
			return validation("INVALID_PARAMETER_VALUE", "a checksum needs ChecksumAlgorithm SHA256 and ChecksumAggregationMethod LINEAR")
		}
		var idx []int32
		for i := range sn.checksums {
			idx = append(idx, i)
		}
		slices.Sort(idx)
		h := sha256.New()
		for _, i := range idx {
			h.Write(sn.checksums[i])
		}
		if want := base64.StdEncoding.EncodeToString(h.Sum(nil)); sum != want {
			return validation("INVALID_PARAMETER_VALUE", "The aggregate checksum does not match the blocks written")
		}
	}
	sn.checksums = nil // no more writes
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusAccepted)
	json.NewEncoder(w).Encode(map[string]string{"Status": "pending"})
	return nil
}
