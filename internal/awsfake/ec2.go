package awsfake

import (
	"encoding/xml"
	"fmt"
	"io"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
)

// EC2's query protocol flattens lists as Name.1.Field; values picks out the
// numbered entries under prefix.
func values(f url.Values, prefix string) []string {
	var out []string
	for i := 1; ; i++ {
		v, ok := f[prefix+"."+strconv.Itoa(i)]
		if !ok {
			return out
		}
		out = append(out, v[0])
	}
}

// entries returns, for each numbered entry under prefix, its fields.
func entries(f url.Values, prefix string) []url.Values {
	var out []url.Values
	for i := 1; ; i++ {
		p := prefix + "." + strconv.Itoa(i) + "."
		e := url.Values{}
		for k, v := range f {
			if strings.HasPrefix(k, p) {
				e[strings.TrimPrefix(k, p)] = v
			}
		}
		if len(e) == 0 {
			return out
		}
		out = append(out, e)
	}
}

type xmlTag struct {
	Key   string `xml:"key"`
	Value string `xml:"value"`
}

func tagSet(m map[string]string) []xmlTag {
	var out []xmlTag
	for k, v := range m {
		out = append(out, xmlTag{k, v})
	}
	slices.SortFunc(out, func(a, b xmlTag) int { return strings.Compare(a.Key, b.Key) })
	return out
}

type xmlEBS struct {
	SnapshotID          string `xml:"snapshotId"`
	VolumeSize          int64  `xml:"volumeSize"`
	VolumeType          string `xml:"volumeType"`
	DeleteOnTermination bool   `xml:"deleteOnTermination"`
}

type xmlMapping struct {
	DeviceName string `xml:"deviceName"`
	EBS        xmlEBS `xml:"ebs"`
}

type xmlImage struct {
	ImageID            string       `xml:"imageId"`
	Name               string       `xml:"name"`
	Description        string       `xml:"description,omitempty"`
	State              string       `xml:"imageState"`
	OwnerID            string       `xml:"imageOwnerId"`
	Architecture       string       `xml:"architecture"`
	BootMode           string       `xml:"bootMode,omitempty"`
	ENASupport         bool         `xml:"enaSupport"`
	IMDSSupport        string       `xml:"imdsSupport,omitempty"`
	TPMSupport         string       `xml:"tpmSupport,omitempty"`
	RootDeviceName     string       `xml:"rootDeviceName"`
	RootDeviceType     string       `xml:"rootDeviceType"`
	VirtualizationType string       `xml:"virtualizationType"`
	Mappings           []xmlMapping `xml:"blockDeviceMapping>item"`
	Tags               []xmlTag     `xml:"tagSet>item"`
}

type xmlSnapshot struct {
	SnapshotID  string   `xml:"snapshotId"`
	Status      string   `xml:"status"`
	Progress    string   `xml:"progress"`
	VolumeSize  int64    `xml:"volumeSize"`
	OwnerID     string   `xml:"ownerId"`
	Description string   `xml:"description"`
	Encrypted   bool     `xml:"encrypted"`
	Tags        []xmlTag `xml:"tagSet>item"`
}

type xmlTaskDetail struct {
	Status        string `xml:"status"`
	StatusMessage string `xml:"statusMessage,omitempty"`
	SnapshotID    string `xml:"snapshotId,omitempty"`
	Progress      string `xml:"progress,omitempty"`
	Format        string `xml:"format,omitempty"`
}

type xmlImportTask struct {
	ImportTaskID string        `xml:"importTaskId"`
	Description  string        `xml:"description,omitempty"`
	Detail       xmlTaskDetail `xml:"snapshotTaskDetail"`
}

// response is an answer's body, written as the fields of <OpResponse>.
type response struct {
	op   string
	body any
}

func reply(op string, body any) *response { return &response{op, body} }

func (r *response) write(w io.Writer) error {
	enc := xml.NewEncoder(w)
	start := xml.StartElement{Name: xml.Name{Local: r.op + "Response"},
		Attr: []xml.Attr{{Name: xml.Name{Local: "xmlns"}, Value: "http://ec2.amazonaws.com/doc/2016-11-15/"}}}
	if err := enc.EncodeElement(r.body, start); err != nil {
		return err
	}
	return enc.Flush()
}

type returnTrue struct {
	Return bool `xml:"return"`
}

var (
	amiNameRE = regexp.MustCompile(`^[A-Za-z0-9()\[\] ./\-'@_]{3,128}$`)
	accountRE = regexp.MustCompile(`^\d{12}$`)
	orgRE     = regexp.MustCompile(`^arn:aws:organizations::\d{12}:organization/o-[a-z0-9]{10,32}$`)
	ouRE      = regexp.MustCompile(`^arn:aws:organizations::\d{12}:ou/o-[a-z0-9]{10,32}/ou-[a-z0-9]{4,32}-[a-z0-9]{8,32}$`)
)

func (s *Server) image(id, region string) (*Image, *apiError) {
	im, ok := s.images[id]
	if !ok || im.Region != region {
		if !strings.HasPrefix(id, "ami-") {
			return nil, errf(400, "InvalidAMIID.Malformed", "Invalid id: %q", id)
		}
		return nil, errf(400, "InvalidAMIID.NotFound", "The image id '[%s]' does not exist", id)
	}
	return im, nil
}

func (s *Server) snapshot(id, region string) (*Snapshot, *apiError) {
	sn, ok := s.snapshots[id]
	if !ok || sn.Region != region {
		return nil, errf(400, "InvalidSnapshot.NotFound", "The snapshot '%s' does not exist.", id)
	}
	return sn, nil
}

// ec2 answers one query-protocol action; s.mu is held.
func (s *Server) ec2(op string, f url.Values, region string) (*response, string, *apiError) {
	switch op {
	case "DescribeSnapshots":
		return s.describeSnapshots(f, region)
	case "DeleteSnapshot":
		id := f.Get("SnapshotId")
		if _, e := s.snapshot(id, region); e != nil {
			return nil, id, e
		}
		for _, im := range s.images {
			if im.SnapshotID == id {
				return nil, id, errf(400, "InvalidSnapshot.InUse", "The snapshot %s is currently in use by %s", id, im.ID)
			}
		}
		delete(s.snapshots, id)
		return reply(op, returnTrue{true}), id, nil
	case "RegisterImage":
		return s.registerImage(f, region)
	case "DescribeImages":
		return s.describeImages(f, region)
	case "DeregisterImage":
		id := f.Get("ImageId")
		if _, e := s.image(id, region); e != nil {
			return nil, id, e
		}
		delete(s.images, id)
		return reply(op, returnTrue{true}), id, nil
	case "CreateTags":
		return s.createTags(f, region)
	case "CopyImage":
		return s.copyImage(f, region)
	case "ModifyImageAttribute":
		return s.modifyImageAttribute(f, region)
	case "ImportSnapshot":
		return s.importSnapshot(f, region)
	case "DescribeImportSnapshotTasks":
		return s.describeImports(f, region)
	case "CancelImportTask":
		id := f.Get("ImportTaskId")
		t, ok := s.imports[id]
		if !ok || t.Region != region {
			return nil, id, errf(400, "InvalidConversionTaskId", "The import task %s does not exist", id)
		}
		if t.Status == "completed" {
			return nil, id, errf(400, "IncorrectState", "The import task %s is completed", id)
		}
		t.Status, t.cancelled = "deleted", true
		return reply(op, struct {
			ImportTaskID  string `xml:"importTaskId"`
			State         string `xml:"state"`
			PreviousState string `xml:"previousState"`
		}{id, "deleting", "active"}), id, nil
	}
	return nil, "", errf(400, "InvalidAction", "The action %s is not valid for this web service.", op)
}

// matches applies DescribeX's tag:K filters.
func matches(f url.Values, tags map[string]string, state string) bool {
	for _, flt := range entries(f, "Filter") {
		name := flt.Get("Name")
		vals := values(flt, "Value")
		switch {
		case strings.HasPrefix(name, "tag:"):
			if !slices.Contains(vals, tags[strings.TrimPrefix(name, "tag:")]) {
				return false
			}
		case name == "state" || name == "status":
			if !slices.Contains(vals, state) {
				return false
			}
		}
	}
	return true
}

func (s *Server) describeSnapshots(f url.Values, region string) (*response, string, *apiError) {
	ids := values(f, "SnapshotId")
	for _, id := range ids {
		if _, e := s.snapshot(id, region); e != nil {
			return nil, id, e
		}
	}
	var out []xmlSnapshot
	for _, sn := range s.snapshots {
		if sn.Region != region || (len(ids) > 0 && !slices.Contains(ids, sn.ID)) {
			continue
		}
		if sn.Status == "pending" && sn.checksums == nil { // completion requested
			if sn.polls++; sn.polls > s.PendingPolls {
				sn.Status = "completed"
			}
		}
		if !matches(f, sn.Tags, sn.Status) {
			continue
		}
		prog := "99%"
		if sn.Status == "completed" {
			prog = "100%"
		}
		out = append(out, xmlSnapshot{SnapshotID: sn.ID, Status: sn.Status, Progress: prog, VolumeSize: sn.VolumeSize,
			OwnerID: Account, Description: sn.Description, Encrypted: sn.Encrypted, Tags: tagSet(sn.Tags)})
	}
	slices.SortFunc(out, func(a, b xmlSnapshot) int { return strings.Compare(a.SnapshotID, b.SnapshotID) })
	return reply("DescribeSnapshots", struct {
		Set []xmlSnapshot `xml:"snapshotSet>item"`
	}{out}), strings.Join(ids, ","), nil
}

func (s *Server) registerImage(f url.Values, region string) (*response, string, *apiError) {
	im := &Image{ID: s.id("ami"), Region: region, Name: f.Get("Name"), Description: f.Get("Description"), State: "available",
		Architecture: f.Get("Architecture"), BootMode: f.Get("BootMode"), IMDSSupport: f.Get("ImdsSupport"),
		TPMSupport: f.Get("TpmSupport"), RootDeviceName: f.Get("RootDeviceName"), VirtualizationType: f.Get("VirtualizationType"),
		ENASupport: f.Get("EnaSupport") == "true", Tags: map[string]string{}}
	if im.Architecture == "" {
		im.Architecture = "x86_64"
	}
	if im.VirtualizationType == "" {
		im.VirtualizationType = "paravirtual"
	}
	switch {
	case !amiNameRE.MatchString(im.Name):
		return nil, "", errf(400, "InvalidAMIName.Malformed", "AMI names must be between 3 and 128 characters long, and may contain letters, numbers, '(', ')', '.', '-', '/' and '_'; got %q", im.Name)
	case len(im.Description) > 255:
		return nil, "", errf(400, "InvalidParameterValue", "Description is longer than 255 characters")
	case !slices.Contains([]string{"i386", "x86_64", "arm64"}, im.Architecture):
		return nil, "", errf(400, "InvalidParameterValue", "Value (%s) for parameter architecture is invalid", im.Architecture)
	case im.BootMode != "" && !slices.Contains([]string{"legacy-bios", "uefi", "uefi-preferred"}, im.BootMode):
		return nil, "", errf(400, "InvalidParameterValue", "Value (%s) for parameter bootMode is invalid", im.BootMode)
	case im.Architecture == "arm64" && im.BootMode != "" && im.BootMode != "uefi":
		return nil, "", errf(400, "InvalidParameterCombination", "arm64 images boot only in uefi mode")
	case im.IMDSSupport != "" && im.IMDSSupport != "v2.0":
		return nil, "", errf(400, "InvalidParameterValue", "Value (%s) for parameter imdsSupport is invalid", im.IMDSSupport)
	case im.TPMSupport != "" && im.TPMSupport != "v2.0":
		return nil, "", errf(400, "InvalidParameterValue", "Value (%s) for parameter tpmSupport is invalid", im.TPMSupport)
	case im.TPMSupport != "" && im.BootMode != "uefi":
		return nil, "", errf(400, "InvalidParameterCombination", "tpmSupport needs bootMode uefi")
	case im.VirtualizationType != "hvm" && im.BootMode != "":
		return nil, "", errf(400, "InvalidParameterCombination", "bootMode needs virtualizationType hvm")
	case f.Get("ImageLocation") != "":
		return nil, "", errf(400, "InvalidParameterCombination", "instance-store images are not supported here")
	}
	for _, o := range s.images {
		if o.Region == region && o.Name == im.Name {
			return nil, "", errf(400, "InvalidAMIName.Duplicate", "AMI name %s is already in use by AMI %s", im.Name, o.ID)
		}
	}
	if im.RootDeviceName == "" {
		return nil, "", errf(400, "InvalidParameterValue", "RootDeviceName is required for an EBS-backed image")
	}
	found := false
	for _, m := range entries(f, "BlockDeviceMapping") {
		if m.Get("DeviceName") != im.RootDeviceName {
			continue
		}
		found = true
		id := m.Get("Ebs.SnapshotId")
		if id == "" {
			return nil, "", errf(400, "InvalidBlockDeviceMapping", "the root device %s has no snapshot", im.RootDeviceName)
		}
		sn, e := s.snapshot(id, region)
		if e != nil {
			return nil, id, e
		}
		if sn.Status != "completed" {
			return nil, id, errf(400, "IncorrectState", "Snapshot %s is not completed", id)
		}
		im.SnapshotID, im.VolumeType = id, m.Get("Ebs.VolumeType")
		im.VolumeSize = sn.VolumeSize
		if v := m.Get("Ebs.VolumeSize"); v != "" {
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil || n < sn.VolumeSize {
				return nil, id, errf(400, "InvalidBlockDeviceMapping", "Volume of size %s GiB is smaller than snapshot '%s', expect size >= %d GiB", v, id, sn.VolumeSize)
			}
			im.VolumeSize = n
		}
		if im.VolumeType == "" {
			im.VolumeType = "gp2"
		}
		if !slices.Contains([]string{"standard", "gp2", "gp3", "io1", "io2", "st1", "sc1"}, im.VolumeType) {
			return nil, id, errf(400, "InvalidParameterValue", "Value (%s) for parameter volumeType is invalid", im.VolumeType)
		}
		if im.VolumeType == "st1" || im.VolumeType == "sc1" {
			return nil, id, errf(400, "InvalidBlockDeviceMapping", "%s volumes cannot be boot volumes", im.VolumeType)
		}
		im.DeleteOnTermination = m.Get("Ebs.DeleteOnTermination") != "false"
	}
	if !found {
		return nil, "", errf(400, "InvalidBlockDeviceMapping", "no block device mapping for the root device %s", im.RootDeviceName)
	}
	for _, ts := range entries(f, "TagSpecification") {
		if ts.Get("ResourceType") != "image" {
			return nil, "", errf(400, "InvalidParameterValue", "RegisterImage tags only images, not %q", ts.Get("ResourceType"))
		}
		for _, t := range entries(ts, "Tag") {
			im.Tags[t.Get("Key")] = t.Get("Value")
		}
	}
	s.images[im.ID] = im
	return reply("RegisterImage", struct {
		ImageID string `xml:"imageId"`
	}{im.ID}), im.ID, nil
}

func (s *Server) describeImages(f url.Values, region string) (*response, string, *apiError) {
	owners := values(f, "Owner")
	for _, o := range owners {
		if o != "self" && o != Account && o != "amazon" {
			return nil, "", errf(400, "InvalidUserID.Malformed", "Invalid user id: %q", o)
		}
	}
	ids := values(f, "ImageId")
	for _, id := range ids {
		if _, e := s.image(id, region); e != nil {
			return nil, id, e
		}
	}
	var out []xmlImage
	for _, im := range s.images {
		if im.Region != region || (len(ids) > 0 && !slices.Contains(ids, im.ID)) {
			continue
		}
		if im.State == "pending" {
			if im.polls++; im.polls > s.PendingPolls {
				im.State = "available"
			}
		}
		if !matches(f, im.Tags, im.State) {
			continue
		}
		out = append(out, xmlImage{ImageID: im.ID, Name: im.Name, Description: im.Description, State: im.State, OwnerID: Account,
			Architecture: im.Architecture, BootMode: im.BootMode, ENASupport: im.ENASupport, IMDSSupport: im.IMDSSupport,
			TPMSupport: im.TPMSupport, RootDeviceName: im.RootDeviceName, RootDeviceType: "ebs", VirtualizationType: im.VirtualizationType,
			Mappings: []xmlMapping{{DeviceName: im.RootDeviceName, EBS: xmlEBS{SnapshotID: im.SnapshotID, VolumeSize: im.VolumeSize,
				VolumeType: im.VolumeType, DeleteOnTermination: im.DeleteOnTermination}}},
			Tags: tagSet(im.Tags)})
	}
	slices.SortFunc(out, func(a, b xmlImage) int { return strings.Compare(a.ImageID, b.ImageID) })
	return reply("DescribeImages", struct {
		Set []xmlImage `xml:"imagesSet>item"`
	}{out}), strings.Join(ids, ","), nil
}

func (s *Server) createTags(f url.Values, region string) (*response, string, *apiError) {
	ids := values(f, "ResourceId")
	tags := entries(f, "Tag")
	if len(ids) == 0 || len(tags) == 0 {
		return nil, "", errf(400, "MissingParameter", "CreateTags needs ResourceId and Tag")
	}
	for _, id := range ids {
		var have map[string]string
		if strings.HasPrefix(id, "ami-") {
			im, e := s.image(id, region)
			if e != nil {
				return nil, id, e
			}
			have = im.Tags
		} else {
			sn, e := s.snapshot(id, region)
			if e != nil {
				return nil, id, e
			}
			have = sn.Tags
		}
		n := len(have)
		for _, t := range tags {
			if _, dup := have[t.Get("Key")]; !dup {
				n++
			}
		}
		if n > 50 {
			return nil, id, errf(400, "TagLimitExceeded", "The maximum number of tags for %s is 50", id)
		}
	}
	for _, t := range tags {
		if k := t.Get("Key"); k == "" || strings.HasPrefix(strings.ToLower(k), "aws:") || len(k) > 128 || len(t.Get("Value")) > 256 {
			return nil, "", errf(400, "InvalidParameterValue", "Tag key %q is not allowed", k)
		}
	}
	for _, id := range ids {
		m := map[string]string{}
		if im := s.images[id]; im != nil {
			m = im.Tags
		} else {
			m = s.snapshots[id].Tags
		}
		for _, t := range tags {
			m[t.Get("Key")] = t.Get("Value")
		}
	}
	return reply("CreateTags", returnTrue{true}), strings.Join(ids, ","), nil
}

func (s *Server) copyImage(f url.Values, region string) (*response, string, *apiError) {
	srcRegion, srcID, name := f.Get("SourceRegion"), f.Get("SourceImageId"), f.Get("Name")
	if srcRegion == "" || srcID == "" || name == "" {
		return nil, "", errf(400, "MissingParameter", "CopyImage needs SourceRegion, SourceImageId and Name")
	}
	if !amiNameRE.MatchString(name) {
		return nil, "", errf(400, "InvalidAMIName.Malformed", "invalid AMI name %q", name)
	}
	src, e := s.image(srcID, srcRegion)
	if e != nil {
		return nil, srcID, e
	}
	if src.State != "available" {
		return nil, srcID, errf(400, "IncorrectState", "Image %s is not available", srcID)
	}
	for _, o := range s.images {
		if o.Region == region && o.Name == name {
			return nil, "", errf(400, "InvalidAMIName.Duplicate", "AMI name %s is already in use by AMI %s", name, o.ID)
		}
	}
	srcSnap := s.snapshots[src.SnapshotID]
	sn := &Snapshot{ID: s.id("snap"), Region: region, Description: "Copied for " + srcID, Status: "completed",
		VolumeSize: srcSnap.VolumeSize, Encrypted: f.Get("Encrypted") == "true" || srcSnap.Encrypted, KMSKeyID: f.Get("KmsKeyId"),
		Tags: map[string]string{}, Blocks: srcSnap.Blocks}
	s.snapshots[sn.ID] = sn
	im := *src
	im.ID, im.Region, im.Name, im.Description, im.State = s.id("ami"), region, name, f.Get("Description"), "pending"
	im.SnapshotID, im.SourceImage, im.SourceRegion, im.polls = sn.ID, srcID, srcRegion, 0
	im.Tags, im.LaunchUsers, im.LaunchOrganizations, im.LaunchOrganizationalUnits = map[string]string{}, nil, nil, nil
	if f.Get("CopyImageTags") == "true" {
		for k, v := range src.Tags {
			im.Tags[k] = v
		}
	}
	s.images[im.ID] = &im
	return reply("CopyImage", struct {
		ImageID string `xml:"imageId"`
	}{im.ID}), im.ID, nil
}

func (s *Server) modifyImageAttribute(f url.Values, region string) (*response, string, *apiError) {
	id := f.Get("ImageId")
	im, e := s.image(id, region)
	if e != nil {
		return nil, id, e
	}
	if im.State != "available" {
		return nil, id, errf(400, "IncorrectState", "Image %s is not available", id)
	}
	add := entries(f, "LaunchPermission.Add")
	if len(add) == 0 {
		return nil, id, errf(400, "MissingParameter", "no launch permission to add")
	}
	for _, p := range add {
		switch {
		case p.Get("UserId") != "":
			if !accountRE.MatchString(p.Get("UserId")) {
				return nil, id, errf(400, "InvalidUserID.Malformed", "Invalid user id: %q", p.Get("UserId"))
			}
			im.LaunchUsers = append(im.LaunchUsers, p.Get("UserId"))
		case p.Get("OrganizationArn") != "":
			if !orgRE.MatchString(p.Get("OrganizationArn")) {
				return nil, id, errf(400, "InvalidParameterValue", "Invalid organization ARN: %q", p.Get("OrganizationArn"))
			}
			im.LaunchOrganizations = append(im.LaunchOrganizations, p.Get("OrganizationArn"))
		case p.Get("OrganizationalUnitArn") != "":
			if !ouRE.MatchString(p.Get("OrganizationalUnitArn")) {
				return nil, id, errf(400, "InvalidParameterValue", "Invalid organizational unit ARN: %q", p.Get("OrganizationalUnitArn"))
			}
			im.LaunchOrganizationalUnits = append(im.LaunchOrganizationalUnits, p.Get("OrganizationalUnitArn"))
		case p.Get("Group") == "all":
			return nil, id, errf(400, "InvalidParameterValue", "this fake refuses public images")
		default:
			return nil, id, errf(400, "InvalidParameterValue", "an empty launch permission")
		}
	}
	return reply("ModifyImageAttribute", returnTrue{true}), id, nil
}

func (s *Server) importSnapshot(f url.Values, region string) (*response, string, *apiError) {
	format := strings.ToUpper(f.Get("DiskContainer.Format"))
	bucket, key := f.Get("DiskContainer.UserBucket.S3Bucket"), f.Get("DiskContainer.UserBucket.S3Key")
	switch {
	case !slices.Contains([]string{"VMDK", "VHD", "RAW"}, format):
		return nil, "", errf(400, "InvalidParameter", "Format %q: expected VMDK, VHD or RAW", format)
	case bucket == "" || key == "":
		return nil, "", errf(400, "InvalidParameter", "DiskContainer needs UserBucket.S3Bucket and UserBucket.S3Key")
	case s.S3Get == nil:
		return nil, "", errf(400, "InvalidParameter", "S3 bucket %s is not reachable", bucket)
	}
	data, err := s.S3Get(bucket, key)
	if err != nil {
		return nil, "", errf(400, "InvalidParameter", "The service role vmimport cannot read s3://%s/%s: %v", bucket, key, err)
	}
	t := &importTask{ID: s.id("import-snap"), Region: region, Status: "active", Message: "pending", data: data, format: format,
		Description: f.Get("Description")}
	s.imports[t.ID] = t
	return reply("ImportSnapshot", xmlImportTask{ImportTaskID: t.ID, Description: t.Description,
		Detail: xmlTaskDetail{Status: "active", StatusMessage: "pending", Format: format}}), t.ID, nil
}

func (s *Server) describeImports(f url.Values, region string) (*response, string, *apiError) {
	ids := values(f, "ImportTaskId")
	var out []xmlImportTask
	for _, id := range ids {
		t, ok := s.imports[id]
		if !ok || t.Region != region {
			return nil, id, errf(400, "InvalidConversionTaskId.Malformed", "The import task %s does not exist", id)
		}
		if t.Status == "active" {
			t.polls++
			switch {
			case t.polls <= s.PendingPolls:
				t.Message = "converting"
			case s.ImportConvert == nil:
				t.Status, t.Message = "deleted", "ClientError: Unsupported disk image format"
			default:
				raw, err := s.ImportConvert(t.format, t.data)
				if err != nil {
					t.Status, t.Message = "deleted", "ClientError: "+err.Error()
					break
				}
				sn := &Snapshot{ID: s.id("snap"), Region: region, Status: "completed", Description: "Created by ImportSnapshot " + id,
					VolumeSize: (int64(len(raw)) + 1<<30 - 1) >> 30, Tags: map[string]string{}, Blocks: map[int32][]byte{}}
				for off := 0; off < len(raw); off += BlockSize {
					blk := make([]byte, BlockSize)
					copy(blk, raw[off:])
					if !isZero(blk) {
						sn.Blocks[int32(off/BlockSize)] = blk
					}
				}
				s.snapshots[sn.ID] = sn
				t.Status, t.Message, t.SnapshotID = "completed", "", sn.ID
			}
		}
		out = append(out, xmlImportTask{ImportTaskID: t.ID, Description: t.Description,
			Detail: xmlTaskDetail{Status: t.Status, StatusMessage: t.Message, SnapshotID: t.SnapshotID, Format: t.format}})
	}
	return reply("DescribeImportSnapshotTasks", struct {
		Set []xmlImportTask `xml:"importSnapshotTaskSet>item"`
	}{out}), strings.Join(ids, ","), nil
}

func isZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

// String describes a call for test failure messages.
func (c Call) String() string {
	return fmt.Sprintf("%s %s:%s %s -> %d", c.Region, c.Service, c.Op, c.Resource, c.Status)
}
