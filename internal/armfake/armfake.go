// Package armfake is a strict stand-in for the Azure Resource Manager
// operations that publishing an image uses: managed disks (create for
// upload, grant and revoke access, delete), managed images, and Azure
// Compute Gallery image definitions and versions. It speaks ARM's REST API
// over TLS with its long-running-operation headers, so armcompute talks to
// it unchanged. The disk's storage is a page blob in a real Azurite: grant
// access hands out a SAS URL into Azurite (through a proxy that can inject
// faults), so the upload itself runs against Microsoft's emulator.
//
// No ARM emulator exists; what it rejects is taken from the REST API
// reference and from what Azure is documented to refuse.
package armfake

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/blob"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/container"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/pageblob"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/sas"
)

// Token is the only bearer token accepted.
const Token = "layerimg-fake-token"

const mib = 1 << 20

// Call is one ARM request the fake answered.
type Call struct {
	Method, Op, Resource string
	Status               int
}

func (c Call) String() string {
	return fmt.Sprintf("%s %s %s -> %d", c.Method, c.Op, c.Resource, c.Status)
}

// Fault fails a call with Azure's error shape. An Async fault lets a
// long-running operation start (202/201) and fail when polled, as Azure
// reports most failures of creating things.
type Fault struct {
	Status int
	Code   string
	Async  bool
}

// Disk is a managed disk.
type Disk struct {
	ID, Name, Location, State, HyperVGeneration, OSType, SecurityType string
	Architecture                                                      string // x64 or Arm64 (supportedCapabilities)
	UploadSize                                                        int64
	Tags                                                              map[string]string
	Blob                                                              string // the page blob's URL in Azurite
	Deleted                                                           bool
}

// Image is a managed image.
type Image struct {
	ID, Name, Location, SourceDisk, HyperVGeneration, OSState string
	Tags                                                      map[string]string
}

// GalleryImage is an image definition.
type GalleryImage struct {
	ID, Location, OSType, OSState, HyperVGeneration, SecurityType string
	Publisher, Offer, SKU                                         string
	Architecture                                                  string // x64 or Arm64
}

// Version is a gallery image version.
type Version struct {
	ID, SourceDisk    string
	TargetRegions     []string
	ExcludeFromLatest bool
	Tags              map[string]string
}

// Server is the fake. Set its fields before the first request.
type Server struct {
	*httptest.Server
	Subscription string
	// PendingPolls is how many status polls a long-running operation
	// answers InProgress before it succeeds (default 0).
	PendingPolls int
	// Inject fails the n-th call (from 1) of op: CreateDisk, GetDisk,
	// GrantAccess, RevokeAccess, DeleteDisk, CreateImage, GetImage,
	// DeleteImage, GetGalleryImage, CreateGalleryImage, CreateVersion,
	// GetVersion, DeleteVersion; and UploadPages for the blob proxy.
	Inject func(op string, n int) *Fault

	azurite, account, key string
	proxy                 *httptest.Server

	mu        sync.Mutex
	calls     []Call
	counts    map[string]int
	disks     map[string]*Disk
	images    map[string]*Image
	galleries map[string]string // id -> location
	defs      map[string]*GalleryImage
	versions  map[string]*Version
	ops       map[string]*operation
	pages     []blob.HTTPRange // page writes that reached Azurite
	async     *Fault           // for the operation the current request starts
}

type operation struct {
	polls  int
	done   bool
	err    *Fault
	msg    string
	result any
	finish func() (*Fault, string)
}

// New starts the fake; blobs go to the Azurite account at azuriteURL
// (http://127.0.0.1:PORT/devstoreaccount1) with its shared key.
func New(subscription, azuriteURL, account, key string) *Server {
	s := &Server{Subscription: subscription, azurite: azuriteURL, account: account, key: key,
		counts: map[string]int{}, disks: map[string]*Disk{}, images: map[string]*Image{}, galleries: map[string]string{},
		defs: map[string]*GalleryImage{}, versions: map[string]*Version{}, ops: map[string]*operation{}}
	s.Server = httptest.NewTLSServer(http.HandlerFunc(s.serve))
	target, _ := url.Parse(azuriteURL)
	target.Path = ""
	rp := httputil.NewSingleHostReverseProxy(target)
	s.proxy = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPut && r.URL.Query().Get("comp") == "page" {
			if f := s.fault("UploadPages"); f != nil {
				io.Copy(io.Discard, r.Body)
				w.Header().Set("x-ms-error-code", f.Code)
				w.WriteHeader(f.Status)
				fmt.Fprintf(w, `<?xml version="1.0" encoding="utf-8"?><Error><Code>%s</Code><Message>injected</Message></Error>`, f.Code)
				return
			}
			var rg blob.HTTPRange
			fmt.Sscanf(strings.TrimPrefix(r.Header.Get("x-ms-range"), "bytes="), "%d-%d", &rg.Offset, &rg.Count)
			rg.Count = rg.Count - rg.Offset + 1
			rec := &statusRecorder{ResponseWriter: w}
			rp.ServeHTTP(rec, r)
			if rec.status/100 == 2 {
				s.mu.Lock()
				s.pages = append(s.pages, rg)
				s.mu.Unlock()
			}
			return
		}
		rp.ServeHTTP(w, r)
	}))
	return s
}

type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (r *statusRecorder) WriteHeader(c int) { r.status = c; r.ResponseWriter.WriteHeader(c) }
func (r *statusRecorder) Write(b []byte) (int, error) {
	if r.status == 0 {
		r.status = 200
	}
	return r.ResponseWriter.Write(b)
}

// Close stops the fake and its blob proxy.
func (s *Server) Close() {
	s.proxy.Close()
	s.Server.Close()
}

// AddGallery makes a gallery exist (galleries are made by hand, once).
func (s *Server) AddGallery(rg, name, location string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.galleries[strings.ToLower(s.rid(rg, "galleries/"+name))] = location
}

func (s *Server) rid(rg, rest string) string {
	return fmt.Sprintf("/subscriptions/%s/resourceGroups/%s/providers/Microsoft.Compute/%s", s.Subscription, rg, rest)
}

// Calls returns the ARM calls so far, in order (status polls excluded).
func (s *Server) Calls() []Call {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.calls)
}

// Pages returns the page writes that reached Azurite.
func (s *Server) Pages() []blob.HTTPRange {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.pages)
}

// Disks returns every disk, deleted ones included (their blobs stay in
// Azurite for the tests to read).
func (s *Server) Disks() []Disk { return snapshot(s, s.disks) }

// Images returns the managed images.
func (s *Server) Images() []Image { return snapshot(s, s.images) }

// Versions returns the gallery image versions.
func (s *Server) Versions() []Version { return snapshot(s, s.versions) }

// GalleryImages returns the image definitions.
func (s *Server) GalleryImages() []GalleryImage { return snapshot(s, s.defs) }

// snapshot copies a resource map's values, in resource ID order.
func snapshot[T any](s *Server, m map[string]*T) []T {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]T, 0, len(m))
	for _, k := range slices.Sorted(maps.Keys(m)) {
		out = append(out, *m[k])
	}
	return out
}

// BlobClient reads a disk's blob with the account key (for tests).
func (s *Server) BlobClient(d Disk) (*pageblob.Client, error) {
	cred, err := blob.NewSharedKeyCredential(s.account, s.key)
	if err != nil {
		return nil, err
	}
	return pageblob.NewClientWithSharedKeyCredential(d.Blob, cred, nil)
}

func (s *Server) fault(op string) *Fault {
	s.mu.Lock()
	s.counts[op]++
	n := s.counts[op]
	s.mu.Unlock()
	if s.Inject == nil {
		return nil
	}
	return s.Inject(op, n)
}

// decodeResource reads a PUT's body into in and checks what ARM checks
// first of every resource: the body is JSON and names a location (which
// in holds at *location). It answers a 400 itself and says whether to go on.
func decodeResource(w http.ResponseWriter, body []byte, in any, location *string) bool {
	if err := json.Unmarshal(body, in); err != nil {
		armError(w, 400, "InvalidRequestContent", "The request content was invalid: %v", err)
		return false
	}
	if *location == "" {
		armError(w, 400, "LocationRequired", "The location property is required for this definition.")
		return false
	}
	return true
}

// armError writes ARM's error shape.
func armError(w http.ResponseWriter, status int, code, format string, args ...any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("x-ms-error-code", code)
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(map[string]any{"error": map[string]string{"code": code, "message": fmt.Sprintf(format, args...)}})
}

var (
	pathRE    = regexp.MustCompile(`^/subscriptions/([^/]+)/resourceGroups/([^/]+)/providers/Microsoft\.Compute/(.+)$`)
	versionRE = regexp.MustCompile(`^\d+\.\d+\.\d+$`)
	nameRE    = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,78}[A-Za-z0-9_]$`)
)

func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	if r.Header.Get("Authorization") != "Bearer "+Token {
		armError(w, 401, "AuthenticationFailed", "Authentication failed. The 'Authorization' header is missing or invalid.")
		return
	}
	if strings.HasPrefix(r.URL.Path, "/_ops/") {
		s.operation(w, r)
		return
	}
	if r.URL.Query().Get("api-version") == "" {
		armError(w, 400, "MissingApiVersionParameter", "The api-version query parameter (?api-version=) is required for all requests.")
		return
	}
	m := pathRE.FindStringSubmatch(r.URL.Path)
	if m == nil {
		armError(w, 404, "InvalidResourceType", "no route for %s", r.URL.Path)
		return
	}
	if m[1] != s.Subscription {
		armError(w, 404, "SubscriptionNotFound", "The subscription '%s' could not be found.", m[1])
		return
	}
	rg, rest := m[2], strings.Split(m[3], "/")
	id := s.rid(rg, m[3])
	var op string
	switch {
	case len(rest) == 2 && rest[0] == "disks":
		op = map[string]string{"PUT": "CreateDisk", "GET": "GetDisk", "DELETE": "DeleteDisk"}[r.Method]
	case len(rest) == 3 && rest[0] == "disks" && rest[2] == "beginGetAccess" && r.Method == "POST":
		op, id = "GrantAccess", s.rid(rg, "disks/"+rest[1])
	case len(rest) == 3 && rest[0] == "disks" && rest[2] == "endGetAccess" && r.Method == "POST":
		op, id = "RevokeAccess", s.rid(rg, "disks/"+rest[1])
	case len(rest) == 2 && rest[0] == "images":
		op = map[string]string{"PUT": "CreateImage", "GET": "GetImage", "DELETE": "DeleteImage"}[r.Method]
	case len(rest) == 2 && rest[0] == "galleries" && r.Method == "GET":
		op = "GetGallery"
	case len(rest) == 4 && rest[0] == "galleries" && rest[2] == "images":
		op = map[string]string{"PUT": "CreateGalleryImage", "GET": "GetGalleryImage"}[r.Method]
	case len(rest) == 6 && rest[0] == "galleries" && rest[2] == "images" && rest[4] == "versions":
		op = map[string]string{"PUT": "CreateVersion", "GET": "GetVersion", "DELETE": "DeleteVersion"}[r.Method]
	}
	if op == "" {
		armError(w, 405, "MethodNotAllowed", "%s %s", r.Method, r.URL.Path)
		return
	}
	rec := &statusRecorder{ResponseWriter: w}
	defer func() {
		s.mu.Lock()
		s.calls = append(s.calls, Call{Method: r.Method, Op: op, Resource: id, Status: rec.status})
		s.mu.Unlock()
	}()
	f := s.fault(op)
	if f != nil && !f.Async {
		armError(rec, f.Status, f.Code, "injected fault on %s", op)
		return
	}
	body, _ := io.ReadAll(r.Body)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.async = f
	defer func() { s.async = nil }()
	key := strings.ToLower(id)
	switch op {
	case "CreateDisk":
		s.createDisk(rec, r, key, id, rest[1], body)
	case "GetDisk":
		getResource(rec, s.disk(key), diskJSON, "ResourceNotFound", "The Resource '%s' was not found.", id)
	case "GrantAccess":
		s.grantAccess(rec, r, key, id, body)
	case "RevokeAccess":
		d := s.disk(key)
		if d == nil {
			armError(rec, 404, "ResourceNotFound", "The Resource '%s' was not found.", id)
			return
		}
		s.lro(rec, r, 202, nil, func() (*Fault, string) {
			if d.State == "ActiveUpload" {
				d.State = "Unattached"
			}
			return nil, ""
		}, nil)
	case "DeleteDisk":
		d := s.disk(key)
		if d == nil {
			rec.WriteHeader(204)
			return
		}
		if d.State == "ActiveUpload" || d.State == "ActiveSASFrozen" {
			armError(rec, 409, "OperationNotAllowed", "Disk %s is in %s state; revoke access before deleting it.", d.Name, d.State)
			return
		}
		s.lro(rec, r, 202, nil, func() (*Fault, string) { d.Deleted = true; return nil, "" }, nil)
	case "CreateImage":
		s.createImage(rec, r, key, id, rest[1], body)
	case "GetImage":
		getResource(rec, s.images[key], imageJSON, "NotFound", "The Resource '%s' was not found.", id)
	case "DeleteImage":
		deleteResource(s, rec, r, s.images, key)
	case "GetGallery":
		loc, ok := s.galleries[key]
		if !ok {
			armError(rec, 404, "ResourceNotFound", "The gallery '%s' was not found.", id)
			return
		}
		writeJSON(rec, 200, map[string]any{"id": id, "name": rest[1], "location": loc, "properties": map[string]any{"provisioningState": "Succeeded"}})
	case "CreateGalleryImage":
		s.createGalleryImage(rec, r, rg, key, id, rest, body)
	case "GetGalleryImage":
		getResource(rec, s.defs[key], defJSON, "ResourceNotFound", "The gallery image '%s' was not found.", id)
	case "CreateVersion":
		s.createVersion(rec, r, rg, key, id, rest, body)
	case "GetVersion":
		getResource(rec, s.versions[key], versionJSON, "ResourceNotFound", "The gallery image version '%s' was not found.", id)
	case "DeleteVersion":
		deleteResource(s, rec, r, s.versions, key)
	}
}

// disk is the disk at key unless there is none or it is deleted.
func (s *Server) disk(key string) *Disk {
	if d := s.disks[key]; d != nil && !d.Deleted {
		return d
	}
	return nil
}

// getResource answers a GET of v with its JSON, or with ARM's 404 (code,
// and a message that names id) when there is none.
func getResource[T any](w http.ResponseWriter, v *T, toJSON func(*T) map[string]any, code, msg, id string) {
	if v == nil {
		armError(w, 404, code, msg, id)
		return
	}
	writeJSON(w, 200, toJSON(v))
}

// deleteResource answers a DELETE of m[key]: a long-running operation that
// removes it, or 204 when it is not there.
func deleteResource[T any](s *Server, w http.ResponseWriter, r *http.Request, m map[string]*T, key string) {
	if m[key] == nil {
		w.WriteHeader(204)
		return
	}
	s.lro(w, r, 202, nil, func() (*Fault, string) { delete(m, key); return nil, "" }, nil)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

// lro answers a long-running operation: status code, the
// Azure-AsyncOperation and Location headers, and the body. finish runs
// when the operation's status is first polled past PendingPolls; result is
// what the Location URL returns afterwards.
func (s *Server) lro(w http.ResponseWriter, r *http.Request, status int, body any, finish func() (*Fault, string), result func() any) {
	b := make([]byte, 8)
	rand.Read(b)
	id := hex.EncodeToString(b)
	op := &operation{polls: s.PendingPolls, finish: finish}
	if f := s.async; f != nil {
		op.finish = func() (*Fault, string) { return f, "injected failure of the operation" }
	}
	if result != nil {
		op.result = result
	}
	s.ops[id] = op
	base := "https://" + r.Host
	w.Header().Set("Azure-AsyncOperation", base+"/_ops/"+id+"?api-version=2024-03-02")
	w.Header().Set("Location", base+"/_ops/"+id+"/result?api-version=2024-03-02")
	if body != nil {
		// The resource as it is while the operation runs: a client that
		// took this for the final state would be wrong.
		if m, ok := body.(map[string]any); ok {
			if props, ok := m["properties"].(map[string]any); ok {
				props["provisioningState"] = "Creating"
			}
		}
		writeJSON(w, status, body)
		return
	}
	w.WriteHeader(status)
}

func (s *Server) operation(w http.ResponseWriter, r *http.Request) {
	rest := strings.Split(strings.TrimPrefix(r.URL.Path, "/_ops/"), "/")
	s.mu.Lock()
	defer s.mu.Unlock()
	op := s.ops[rest[0]]
	if op == nil {
		armError(w, 404, "NotFound", "no operation %s", rest[0])
		return
	}
	if !op.done {
		if op.polls > 0 {
			op.polls--
			if len(rest) == 2 {
				w.WriteHeader(202)
				return
			}
			writeJSON(w, 200, map[string]string{"status": "InProgress"})
			return
		}
		op.done = true
		op.err, op.msg = op.finish()
	}
	if len(rest) == 2 { // the Location URL: the final result
		if op.err != nil {
			armError(w, op.err.Status, op.err.Code, "%s", op.msg)
			return
		}
		if f, ok := op.result.(func() any); ok {
			writeJSON(w, 200, f())
			return
		}
		w.WriteHeader(200)
		return
	}
	if op.err != nil {
		writeJSON(w, 200, map[string]any{"status": "Failed", "error": map[string]string{"code": op.err.Code, "message": op.msg}})
		return
	}
	writeJSON(w, 200, map[string]string{"status": "Succeeded"})
}

type diskBody struct {
	Location   string                 `json:"location"`
	Tags       map[string]string      `json:"tags"`
	SKU        *struct{ Name string } `json:"sku"`
	Properties *struct {
		OSType           string `json:"osType"`
		HyperVGeneration string `json:"hyperVGeneration"`
		CreationData     *struct {
			CreateOption    string `json:"createOption"`
			UploadSizeBytes *int64 `json:"uploadSizeBytes"`
		} `json:"creationData"`
		SecurityProfile *struct {
			SecurityType string `json:"securityType"`
		} `json:"securityProfile"`
		SupportedCapabilities *struct {
			Architecture string `json:"architecture"`
		} `json:"supportedCapabilities"`
	} `json:"properties"`
}

// architecture is an architecture as ARM reads it: x64 when not given;
// ok is false for a value outside the enum.
func architecture(a string) (string, bool) {
	switch a {
	case "", "x64":
		return "x64", true
	case "Arm64":
		return a, true
	}
	return a, false
}

func (s *Server) createDisk(w http.ResponseWriter, r *http.Request, key, id, name string, body []byte) {
	if !nameRE.MatchString(name) {
		armError(w, 400, "InvalidResourceName", "The resource name '%s' is invalid.", name)
		return
	}
	var in diskBody
	if !decodeResource(w, body, &in, &in.Location) {
		return
	}
	p := in.Properties
	switch {
	case p == nil || p.CreationData == nil || p.CreationData.CreateOption == "":
		armError(w, 400, "InvalidParameter", "Required parameter 'creationData.createOption' is missing (null).")
		return
	case p.CreationData.CreateOption != "Upload":
		armError(w, 400, "InvalidParameter", "This fake makes disks for upload only; createOption %q", p.CreationData.CreateOption)
		return
	case p.CreationData.UploadSizeBytes == nil:
		armError(w, 400, "InvalidParameter", "Required parameter 'uploadSizeBytes' is missing (null).")
		return
	}
	n := *p.CreationData.UploadSizeBytes
	if n < 20*mib+512 || n > 32<<40+512 || (n-512)%mib != 0 {
		armError(w, 400, "InvalidParameter", "The value %d of parameter 'uploadSizeBytes' is invalid: it must be a whole number of MiB plus 512 bytes for the VHD footer, between 20 MiB + 512 and 32 TiB + 512.", n)
		return
	}
	if p.HyperVGeneration != "" && p.HyperVGeneration != "V1" && p.HyperVGeneration != "V2" {
		armError(w, 400, "InvalidParameter", "hyperVGeneration %q", p.HyperVGeneration)
		return
	}
	arch := ""
	if p.SupportedCapabilities != nil {
		arch = p.SupportedCapabilities.Architecture
	}
	arch, ok := architecture(arch)
	switch {
	case !ok:
		armError(w, 400, "InvalidParameter", "The value '%s' of parameter 'supportedCapabilities.architecture' is invalid: expected x64 or Arm64.", arch)
		return
	case arch == "Arm64" && p.HyperVGeneration != "V2":
		armError(w, 400, "InvalidParameter", "An Arm64 disk needs hyperVGeneration V2.")
		return
	}
	if s.disk(key) != nil {
		armError(w, 409, "Conflict", "Disk %s already exists.", name)
		return
	}
	// The disk's storage: a page blob in Azurite of the upload's size.
	blobURL := fmt.Sprintf("%s/disks/%s-%d", s.azurite, strings.ToLower(name), time.Now().UnixNano())
	if err := s.makeBlob(blobURL, n); err != nil {
		armError(w, 500, "InternalServerError", "storage: %v", err)
		return
	}
	d := &Disk{ID: id, Name: name, Location: in.Location, State: "ReadyToUpload", HyperVGeneration: p.HyperVGeneration,
		OSType: p.OSType, UploadSize: n, Tags: in.Tags, Blob: blobURL, Architecture: arch}
	if p.SecurityProfile != nil {
		d.SecurityType = p.SecurityProfile.SecurityType
	}
	s.disks[key] = d
	s.lro(w, r, 202, diskJSON(d), func() (*Fault, string) { return nil, "" }, nil)
}

func (s *Server) makeBlob(blobURL string, size int64) error {
	cred, err := blob.NewSharedKeyCredential(s.account, s.key)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cc, err := container.NewClientWithSharedKeyCredential(s.azurite+"/disks", cred, nil)
	if err != nil {
		return err
	}
	if _, err := cc.Create(ctx, nil); err != nil && !strings.Contains(err.Error(), "ContainerAlreadyExists") {
		return err
	}
	pb, err := pageblob.NewClientWithSharedKeyCredential(blobURL, cred, nil)
	if err != nil {
		return err
	}
	_, err = pb.Create(ctx, size, nil)
	return err
}

func diskJSON(d *Disk) map[string]any {
	props := map[string]any{
		"osType": d.OSType, "hyperVGeneration": d.HyperVGeneration, "diskState": d.State, "provisioningState": "Succeeded",
		"diskSizeGB":            (d.UploadSize - 512 + 1<<30 - 1) >> 30,
		"creationData":          map[string]any{"createOption": "Upload", "uploadSizeBytes": d.UploadSize},
		"supportedCapabilities": map[string]string{"architecture": d.Architecture},
	}
	if d.SecurityType != "" {
		props["securityProfile"] = map[string]string{"securityType": d.SecurityType}
	}
	return map[string]any{"id": d.ID, "name": d.Name, "type": "Microsoft.Compute/disks", "location": d.Location,
		"tags": d.Tags, "sku": map[string]string{"name": "Standard_LRS"}, "properties": props}
}

func (s *Server) grantAccess(w http.ResponseWriter, r *http.Request, key, id string, body []byte) {
	d := s.disk(key)
	if d == nil {
		armError(w, 404, "ResourceNotFound", "The Resource '%s' was not found.", id)
		return
	}
	var in struct {
		Access            string `json:"access"`
		DurationInSeconds *int   `json:"durationInSeconds"`
	}
	if err := json.Unmarshal(body, &in); err != nil || in.DurationInSeconds == nil || *in.DurationInSeconds <= 0 {
		armError(w, 400, "InvalidParameter", "access and durationInSeconds are required")
		return
	}
	switch {
	case d.State == "ReadyToUpload" && in.Access != "Write":
		armError(w, 409, "OperationNotAllowed", "Disk %s is ReadyToUpload: only Write access can be granted.", d.Name)
		return
	case d.State == "ActiveUpload":
		armError(w, 409, "OperationNotAllowed", "Disk %s already has an active upload SAS.", d.Name)
		return
	case d.State != "ReadyToUpload" && in.Access == "Write":
		armError(w, 409, "OperationNotAllowed", "Write access is only for disks in ReadyToUpload state; %s is %s.", d.Name, d.State)
		return
	}
	sasURL, err := s.sas(d.Blob, time.Duration(*in.DurationInSeconds)*time.Second)
	if err != nil {
		armError(w, 500, "InternalServerError", "sas: %v", err)
		return
	}
	s.lro(w, r, 202, nil, func() (*Fault, string) {
		d.State = "ActiveUpload"
		return nil, ""
	}, func() any { return map[string]string{"accessSAS": sasURL} })
}

// sas signs a blob SAS for the disk's blob, pointing at the fault proxy.
func (s *Server) sas(blobURL string, d time.Duration) (string, error) {
	cred, err := blob.NewSharedKeyCredential(s.account, s.key)
	if err != nil {
		return "", err
	}
	u, _ := url.Parse(blobURL)
	parts := strings.SplitN(strings.TrimPrefix(u.Path, "/"+s.account+"/"), "/", 2)
	qp, err := sas.BlobSignatureValues{
		Protocol: sas.ProtocolHTTPSandHTTP, ExpiryTime: time.Now().Add(d).UTC(),
		Permissions:   (&sas.BlobPermissions{Read: true, Write: true}).String(),
		ContainerName: parts[0], BlobName: parts[1],
	}.SignWithSharedKey(cred)
	if err != nil {
		return "", err
	}
	return s.proxy.URL + u.Path + "?" + qp.Encode(), nil
}

// checkSource is what Azure checks of a disk an image is made from.
func (s *Server) checkSource(w http.ResponseWriter, diskID, location, hyperV string) *Disk {
	d := s.disks[strings.ToLower(diskID)]
	switch {
	case d == nil || d.Deleted:
		armError(w, 404, "NotFound", "Source disk '%s' was not found.", diskID)
	case d.State == "ReadyToUpload" || d.State == "ActiveUpload":
		armError(w, 409, "OperationNotAllowed", "Disk %s is in %s state; the upload must be finished and access revoked before an image can be made from it.", d.Name, d.State)
	case d.Location != location:
		armError(w, 400, "InvalidParameter", "Source disk %s is in %s, not %s.", d.Name, d.Location, location)
	case hyperV != "" && d.HyperVGeneration != "" && !strings.EqualFold(hyperV, d.HyperVGeneration):
		armError(w, 400, "InvalidParameter", "The image's hyperVGeneration %s does not match the disk's %s.", hyperV, d.HyperVGeneration)
	default:
		if err := s.checkFooter(d); err != nil {
			armError(w, 400, "InvalidVhd", "Disk %s does not hold a valid fixed VHD: %v", d.Name, err)
			return nil
		}
		return d
	}
	return nil
}

// checkFooter reads the blob's last 512 bytes: a fixed VHD footer whose
// size matches the disk, with a right checksum.
func (s *Server) checkFooter(d *Disk) error {
	pb, err := s.BlobClient(*d)
	if err != nil {
		return err
	}
	resp, err := pb.DownloadStream(context.Background(), &blob.DownloadStreamOptions{Range: blob.HTTPRange{Offset: d.UploadSize - 512, Count: 512}})
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	f, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	var sum uint32
	for i, b := range f {
		if i < 64 || i >= 68 {
			sum += uint32(b)
		}
	}
	switch {
	case len(f) != 512 || !bytes.Equal(f[:8], []byte("conectix")):
		return fmt.Errorf("no footer in the last 512 bytes")
	case binary.BigEndian.Uint32(f[60:]) != 2:
		return fmt.Errorf("not a fixed VHD")
	case binary.BigEndian.Uint32(f[64:]) != ^sum:
		return fmt.Errorf("footer checksum is wrong")
	case int64(binary.BigEndian.Uint64(f[48:])) != d.UploadSize-512:
		return fmt.Errorf("footer size %d, disk %d", binary.BigEndian.Uint64(f[48:]), d.UploadSize-512)
	}
	return nil
}

func (s *Server) createImage(w http.ResponseWriter, r *http.Request, key, id, name string, body []byte) {
	var in struct {
		Location   string            `json:"location"`
		Tags       map[string]string `json:"tags"`
		Properties *struct {
			HyperVGeneration string `json:"hyperVGeneration"`
			StorageProfile   *struct {
				OSDisk *struct {
					OSType      string `json:"osType"`
					OSState     string `json:"osState"`
					ManagedDisk *struct {
						ID string `json:"id"`
					} `json:"managedDisk"`
				} `json:"osDisk"`
			} `json:"storageProfile"`
		} `json:"properties"`
	}
	if !decodeResource(w, body, &in, &in.Location) {
		return
	}
	p := in.Properties
	switch {
	case p == nil || p.StorageProfile == nil || p.StorageProfile.OSDisk == nil:
		armError(w, 400, "InvalidParameter", "Required parameter 'storageProfile.osDisk' is missing (null).")
		return
	case p.StorageProfile.OSDisk.OSType != "Linux" && p.StorageProfile.OSDisk.OSType != "Windows":
		armError(w, 400, "InvalidParameter", "Required parameter 'osDisk.osType' is missing or invalid.")
		return
	case p.StorageProfile.OSDisk.OSState != "Generalized" && p.StorageProfile.OSDisk.OSState != "Specialized":
		armError(w, 400, "InvalidParameter", "Required parameter 'osDisk.osState' is missing or invalid.")
		return
	case p.StorageProfile.OSDisk.ManagedDisk == nil || p.StorageProfile.OSDisk.ManagedDisk.ID == "":
		armError(w, 400, "InvalidParameter", "The image needs a source: osDisk.managedDisk.id.")
		return
	}
	if old := s.images[key]; old != nil && !strings.EqualFold(old.SourceDisk, p.StorageProfile.OSDisk.ManagedDisk.ID) {
		armError(w, 409, "PropertyChangeNotAllowed", "Changing property 'osDisk.managedDisk.id' is not allowed.")
		return
	}
	d := s.checkSource(w, p.StorageProfile.OSDisk.ManagedDisk.ID, in.Location, p.HyperVGeneration)
	if d == nil {
		return
	}
	if d.Architecture == "Arm64" {
		armError(w, 400, "InvalidParameter", "Managed images do not support Arm64 disks; capture disk %s in an Azure Compute Gallery image.", d.Name)
		return
	}
	im := &Image{ID: id, Name: name, Location: in.Location, SourceDisk: d.ID, HyperVGeneration: p.HyperVGeneration,
		OSState: p.StorageProfile.OSDisk.OSState, Tags: in.Tags}
	s.lro(w, r, 201, imageJSON(im), func() (*Fault, string) {
		s.images[key] = im
		return nil, ""
	}, nil)
}

func imageJSON(im *Image) map[string]any {
	return map[string]any{"id": im.ID, "name": im.Name, "type": "Microsoft.Compute/images", "location": im.Location, "tags": im.Tags,
		"properties": map[string]any{"hyperVGeneration": im.HyperVGeneration, "provisioningState": "Succeeded",
			"storageProfile": map[string]any{"osDisk": map[string]any{"osType": "Linux", "osState": im.OSState,
				"managedDisk": map[string]string{"id": im.SourceDisk}}}}}
}

func (s *Server) createGalleryImage(w http.ResponseWriter, r *http.Request, rg, key, id string, rest []string, body []byte) {
	if _, ok := s.galleries[strings.ToLower(s.rid(rg, "galleries/"+rest[1]))]; !ok {
		armError(w, 404, "ParentResourceNotFound", "Can not perform requested operation on nested resource. Parent resource '%s' not found.", rest[1])
		return
	}
	var in struct {
		Location   string `json:"location"`
		Properties *struct {
			OSType           string                                  `json:"osType"`
			OSState          string                                  `json:"osState"`
			HyperVGeneration string                                  `json:"hyperVGeneration"`
			Identifier       *struct{ Publisher, Offer, SKU string } `json:"identifier"`
			Features         []struct{ Name, Value string }          `json:"features"`
			Architecture     string                                  `json:"architecture"`
		} `json:"properties"`
	}
	if !decodeResource(w, body, &in, &in.Location) {
		return
	}
	p := in.Properties
	switch {
	case p == nil || p.OSType == "" || p.OSState == "":
		armError(w, 400, "InvalidParameter", "Required parameters 'osType' and 'osState' are missing.")
		return
	case p.Identifier == nil || p.Identifier.Publisher == "" || p.Identifier.Offer == "" || p.Identifier.SKU == "":
		armError(w, 400, "InvalidParameter", "Required parameter 'identifier' (publisher, offer, sku) is missing.")
		return
	}
	arch, ok := architecture(p.Architecture)
	switch {
	case !ok:
		armError(w, 400, "InvalidParameter", "The value '%s' of parameter 'architecture' is invalid: expected x64 or Arm64.", arch)
		return
	case arch == "Arm64" && p.HyperVGeneration != "V2":
		armError(w, 400, "InvalidParameter", "Arm64 image definitions need hyperVGeneration V2.")
		return
	}
	g := &GalleryImage{ID: id, Location: in.Location, OSType: p.OSType, OSState: p.OSState, HyperVGeneration: p.HyperVGeneration,
		Publisher: p.Identifier.Publisher, Offer: p.Identifier.Offer, SKU: p.Identifier.SKU, Architecture: arch}
	for _, f := range p.Features {
		if f.Name == "SecurityType" {
			g.SecurityType = f.Value
			if g.HyperVGeneration != "V2" {
				armError(w, 400, "InvalidParameter", "SecurityType %s needs hyperVGeneration V2.", f.Value)
				return
			}
		}
	}
	s.lro(w, r, 201, defJSON(g), func() (*Fault, string) { s.defs[key] = g; return nil, "" }, nil)
}

func defJSON(g *GalleryImage) map[string]any {
	props := map[string]any{"osType": g.OSType, "osState": g.OSState, "hyperVGeneration": g.HyperVGeneration, "provisioningState": "Succeeded",
		"architecture": g.Architecture,
		"identifier":   map[string]string{"publisher": g.Publisher, "offer": g.Offer, "sku": g.SKU}}
	if g.SecurityType != "" {
		props["features"] = []map[string]string{{"name": "SecurityType", "value": g.SecurityType}}
	}
	return map[string]any{"id": g.ID, "location": g.Location, "properties": props}
}

func (s *Server) createVersion(w http.ResponseWriter, r *http.Request, rg, key, id string, rest []string, body []byte) {
	def := s.defs[strings.ToLower(s.rid(rg, strings.Join(rest[:4], "/")))]
	if def == nil {
		armError(w, 404, "ParentResourceNotFound", "Parent resource '%s/%s' not found.", rest[1], rest[3])
		return
	}
	if !versionRE.MatchString(rest[5]) {
		armError(w, 400, "InvalidParameter", "The gallery image version name '%s' is invalid: expected MAJOR.MINOR.PATCH.", rest[5])
		return
	}
	var in struct {
		Location   string            `json:"location"`
		Tags       map[string]string `json:"tags"`
		Properties *struct {
			PublishingProfile *struct {
				TargetRegions     []struct{ Name string } `json:"targetRegions"`
				ExcludeFromLatest bool                    `json:"excludeFromLatest"`
			} `json:"publishingProfile"`
			StorageProfile *struct {
				OSDiskImage *struct {
					Source *struct {
						ID string `json:"id"`
					} `json:"source"`
				} `json:"osDiskImage"`
			} `json:"storageProfile"`
		} `json:"properties"`
	}
	if !decodeResource(w, body, &in, &in.Location) {
		return
	}
	p := in.Properties
	switch {
	case p == nil || p.StorageProfile == nil || p.StorageProfile.OSDiskImage == nil || p.StorageProfile.OSDiskImage.Source == nil || p.StorageProfile.OSDiskImage.Source.ID == "":
		armError(w, 400, "InvalidParameter", "The version needs a source: storageProfile.osDiskImage.source.id.")
		return
	case s.versions[key] != nil:
		armError(w, 409, "PropertyChangeNotAllowed", "Gallery image version %s exists; its source cannot change.", rest[5])
		return
	}
	var regions []string
	if p.PublishingProfile != nil {
		for _, t := range p.PublishingProfile.TargetRegions {
			regions = append(regions, t.Name)
		}
	}
	if len(regions) > 0 && !slices.Contains(regions, in.Location) {
		armError(w, 400, "InvalidParameter", "targetRegions must include the source region %s.", in.Location)
		return
	}
	d := s.checkSource(w, p.StorageProfile.OSDiskImage.Source.ID, in.Location, "")
	if d == nil {
		return
	}
	if def.HyperVGeneration != "" && d.HyperVGeneration != "" && def.HyperVGeneration != d.HyperVGeneration {
		armError(w, 400, "InvalidParameter", "The disk is %s and the image definition %s.", d.HyperVGeneration, def.HyperVGeneration)
		return
	}
	da, _ := architecture(d.Architecture)
	if ga, _ := architecture(def.Architecture); da != ga {
		armError(w, 400, "InvalidParameter", "The source disk's architecture %s does not match the gallery image definition's %s.", da, ga)
		return
	}
	v := &Version{ID: id, SourceDisk: d.ID, TargetRegions: regions, Tags: in.Tags}
	if p.PublishingProfile != nil {
		v.ExcludeFromLatest = p.PublishingProfile.ExcludeFromLatest
	}
	s.lro(w, r, 201, versionJSON(v), func() (*Fault, string) { s.versions[key] = v; return nil, "" }, nil)
}

func versionJSON(v *Version) map[string]any {
	var tr []map[string]any
	for _, r := range v.TargetRegions {
		tr = append(tr, map[string]any{"name": r, "regionalReplicaCount": 1})
	}
	return map[string]any{"id": v.ID, "tags": v.Tags, "properties": map[string]any{"provisioningState": "Succeeded",
		"publishingProfile": map[string]any{"targetRegions": tr, "excludeFromLatest": v.ExcludeFromLatest},
		"storageProfile":    map[string]any{"osDiskImage": map[string]any{"source": map[string]string{"id": v.SourceDisk}}}}}
}
