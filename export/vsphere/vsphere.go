package vsphere

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/vmware/govmomi"
	"github.com/vmware/govmomi/find"
	"github.com/vmware/govmomi/object"
	"github.com/vmware/govmomi/ovf"
	"github.com/vmware/govmomi/session"
	"github.com/vmware/govmomi/view"
	"github.com/vmware/govmomi/vim25"
	"github.com/vmware/govmomi/vim25/mo"
	"github.com/vmware/govmomi/vim25/soap"
	"github.com/vmware/govmomi/vim25/types"

	"github.com/layerimg/layerimg/disk/vmdk"
	"github.com/layerimg/layerimg/export/internal/envvar"
	"github.com/layerimg/layerimg/export/undo"
	"github.com/layerimg/layerimg/internal/progress"
)

// DigestKey is the extraConfig key that carries the disk's content digest.
const DigestKey = "guestinfo.layerimg.digest"

// SBOMKey is the extraConfig key that carries the build's SBOM digest.
const SBOMKey = "guestinfo.layerimg.sbom"

// Config is where and how to publish.
type Config struct {
	URL, Username, Password string
	Insecure                bool
	Thumbprint              string

	Datacenter, Datastore, Cluster, Host, ResourcePool, Folder, Network string

	TemplateName    string
	CPUs, MemoryMB  int
	HardwareVersion string // vmx-NN
	GuestID         string
	Firmware        string // efi or bios
	SecureBoot      bool
	DiskController  string // pvscsi or nvme
	Annotation      string
	ReplaceExisting bool
	// ContentLibrary, when set, also stores the OVF and VMDK as an item of
	// that (existing) content library, named after the template.
	ContentLibrary string
	// SBOM is the build's SBOM digest (sha256:...), recorded as SBOMKey.
	SBOM string

	// Digest is the disk's content digest: publishing it twice returns the
	// template already there. BootMode is the disk's boot layout.
	Digest, BootMode string
	Force            bool
	Log              *slog.Logger
}

// The govc variables that name the server and the user; FromEnv reads them
// with the other GOVC_* placement variables.
const (
	EnvURL      = "GOVC_URL"
	EnvUsername = "GOVC_USERNAME"
	EnvPassword = "GOVC_PASSWORD"
)

// FromEnv fills empty fields from the GOVC_* variables govc users have set.
// It is the only place the package reads them.
func (c Config) FromEnv() Config {
	envvar.Default(&c.URL, EnvURL)
	envvar.Default(&c.Username, EnvUsername)
	envvar.Default(&c.Password, EnvPassword)
	envvar.Default(&c.Thumbprint, "GOVC_TLS_KNOWN_HOSTS_THUMBPRINT")
	envvar.Default(&c.Datacenter, "GOVC_DATACENTER")
	envvar.Default(&c.Datastore, "GOVC_DATASTORE")
	envvar.Default(&c.Cluster, "GOVC_CLUSTER")
	envvar.Default(&c.Host, "GOVC_HOST")
	envvar.Default(&c.ResourcePool, "GOVC_RESOURCE_POOL")
	envvar.Default(&c.Folder, "GOVC_FOLDER")
	envvar.Default(&c.Network, "GOVC_NETWORK")
	if !c.Insecure {
		c.Insecure, _ = strconv.ParseBool(os.Getenv("GOVC_INSECURE"))
	}
	return c
}

// Firmwares lists the firmware a template can boot with, the default first.
func Firmwares() []string { return []string{"efi", "bios"} }

// DiskControllers lists the controllers that Debian's cloud kernel finds
// its root disk on, the default first.
func DiskControllers() []string { return []string{"pvscsi", "nvme"} }

// DefaultConfig holds the values Publish gives a Config's empty fields. A
// CLI shows them as its flags' defaults.
func DefaultConfig() Config {
	return Config{
		CPUs:            2,
		MemoryMB:        2048,
		HardwareVersion: "vmx-19",
		GuestID:         "debian12_64Guest",
		Firmware:        Firmwares()[0],
		DiskController:  DiskControllers()[0],
	}
}

func (c *Config) defaults() error {
	if c.Log == nil {
		c.Log = slog.New(slog.DiscardHandler)
	}
	d := DefaultConfig()
	if c.CPUs == 0 {
		c.CPUs = d.CPUs
	}
	if c.MemoryMB == 0 {
		c.MemoryMB = d.MemoryMB
	}
	if c.HardwareVersion == "" {
		c.HardwareVersion = d.HardwareVersion
	}
	if c.GuestID == "" {
		c.GuestID = d.GuestID
	}
	if c.Firmware == "" {
		c.Firmware = d.Firmware
	}
	if c.DiskController == "" {
		c.DiskController = d.DiskController
	}
	switch {
	case c.URL == "":
		return errors.New("vsphere: no URL (set url in publish.vsphere, --url, or GOVC_URL)")
	case c.TemplateName == "":
		return errors.New("vsphere: template_name is required")
	case c.DiskController == "lsilogic" || c.DiskController == "sata":
		return fmt.Errorf("vsphere: disk_controller %s: Debian's cloud kernel has no LSI Logic or AHCI driver and would not find its root; use pvscsi or nvme", c.DiskController)
	case c.DiskController != "pvscsi" && c.DiskController != "nvme":
		return fmt.Errorf("vsphere: disk_controller %q: expected pvscsi or nvme", c.DiskController)
	case c.Firmware != "efi" && c.Firmware != "bios":
		return fmt.Errorf("vsphere: firmware %q: expected efi or bios", c.Firmware)
	case c.SecureBoot && c.BootMode != "" && c.BootMode != "grub":
		return fmt.Errorf("vsphere: secure_boot needs the disk's boot: grub layout (shim and signed GRUB); this disk uses %s", c.BootMode)
	case c.SecureBoot && c.Firmware != "efi":
		return errors.New("vsphere: secure_boot needs firmware: efi")
	}
	return nil
}

// Result names the published template.
type Result struct {
	Template    string `json:"template"`
	MoRef       string `json:"moref"`
	Existing    bool   `json:"existing"`
	LibraryItem string `json:"library_item,omitempty"`
}

// CertError is a server certificate that is not trusted.
type CertError struct {
	Host, Thumbprint string
	Err              error
}

func (e *CertError) Error() string {
	return fmt.Sprintf("vsphere: the certificate of %s is not trusted (%v); if it is the right server, pin it with thumbprint: %s (or GOVC_TLS_KNOWN_HOSTS_THUMBPRINT)", e.Host, e.Err, e.Thumbprint)
}

// connect logs in, verifying TLS unless told otherwise.
func connect(ctx context.Context, c Config) (*govmomi.Client, *url.Userinfo, error) {
	raw := c.URL
	if !strings.Contains(raw, "://") {
		raw = "https://" + raw
	}
	u, err := url.Parse(raw)
	if err != nil {
		// Not err itself: a *url.Error quotes the whole URL, password too.
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return nil, nil, fmt.Errorf("vsphere: the vCenter URL does not parse: %w", err)
	}
	if u.Path == "" || u.Path == "/" {
		u.Path = "/sdk"
	}
	user := u.User
	u.User = nil
	if c.Username != "" {
		user = url.UserPassword(c.Username, c.Password)
	}
	sc := soap.NewClient(u, c.Insecure)
	if c.Thumbprint != "" {
		sc.SetThumbprint(u.Host, c.Thumbprint)
	}
	vc, err := vim25.NewClient(ctx, sc)
	if err != nil {
		if isCertError(err) {
			return nil, nil, &CertError{Host: u.Host, Thumbprint: fetchThumbprint(u.Host), Err: err}
		}
		return nil, nil, fmt.Errorf("vsphere: connecting to %s: %w", u.Host, err)
	}
	client := &govmomi.Client{Client: vc, SessionManager: session.NewManager(vc)}
	if user != nil {
		if err := client.Login(ctx, user); err != nil {
			return nil, nil, fmt.Errorf("vsphere: logging in to %s as %s: %w", u.Host, user.Username(), err)
		}
	}
	return client, user, nil
}

func isCertError(err error) bool {
	var ua x509.UnknownAuthorityError
	var cv *tls.CertificateVerificationError
	var hn x509.HostnameError
	return errors.As(err, &ua) || errors.As(err, &cv) || errors.As(err, &hn) || strings.Contains(err.Error(), "certificate")
}

// fetchThumbprint reads the server's certificate without trusting it, only
// to show its SHA-1 thumbprint to the user.
func fetchThumbprint(host string) string {
	if !strings.Contains(host, ":") {
		host += ":443"
	}
	dialer := &net.Dialer{Timeout: 10 * time.Second}
	conn, err := tls.DialWithDialer(dialer, "tcp", host, &tls.Config{InsecureSkipVerify: true}) //nolint:gosec // read, never trusted
	if err != nil {
		return "(unavailable: " + err.Error() + ")"
	}
	defer conn.Close()
	certs := conn.ConnectionState().PeerCertificates
	if len(certs) == 0 {
		return "(no certificate)"
	}
	return soap.ThumbprintSHA1(certs[0])
}

// Publish imports vmdkPath as a VM and marks it a template. A failure or
// interrupt aborts the lease and destroys the half-imported VM; with
// ReplaceExisting the old template is renamed aside first and only deleted
// once the new one is in place, so the name is never left empty.
func Publish(ctx context.Context, vmdkPath string, cfg Config) (res *Result, err error) {
	if err := cfg.defaults(); err != nil {
		return nil, err
	}
	capacity, stream, err := vmdk.Info(vmdkPath)
	if err != nil {
		return nil, err
	}
	if !stream {
		return nil, fmt.Errorf("vsphere: %s is not a streamOptimized VMDK (layerimg convert --to vmdk makes one)", vmdkPath)
	}
	fi, err := os.Stat(vmdkPath)
	if err != nil {
		return nil, err
	}
	client, user, err := connect(ctx, cfg)
	if err != nil {
		return nil, err
	}
	defer client.Logout(context.Background())
	c := client.Client

	finder := find.NewFinder(c, true)
	dc, err := finder.DatacenterOrDefault(ctx, cfg.Datacenter)
	if err != nil {
		return nil, fmt.Errorf("vsphere: datacenter %q: %w", cfg.Datacenter, err)
	}
	finder.SetDatacenter(dc)
	ds, err := finder.DatastoreOrDefault(ctx, cfg.Datastore)
	if err != nil {
		return nil, fmt.Errorf("vsphere: datastore %q: %w", cfg.Datastore, err)
	}
	pool, host, err := placement(ctx, finder, cfg)
	if err != nil {
		return nil, err
	}
	folder, err := finder.FolderOrDefault(ctx, cfg.Folder)
	if err != nil {
		return nil, fmt.Errorf("vsphere: folder %q: %w", cfg.Folder, err)
	}
	netw, err := finder.NetworkOrDefault(ctx, cfg.Network)
	if err != nil {
		return nil, fmt.Errorf("vsphere: network %q: %w", cfg.Network, err)
	}

	if cfg.Digest != "" && !cfg.Force {
		if vm, name, err := findByDigest(ctx, c, cfg.Digest); err != nil {
			return nil, err
		} else if vm != nil {
			cfg.Log.Info("this disk is already published", "template", name)
			return &Result{Template: name, MoRef: vm.Reference().Value, Existing: true}, nil
		}
	}

	var old *object.VirtualMachine
	if vm, err := finder.VirtualMachine(ctx, cfg.TemplateName); err == nil {
		if !cfg.ReplaceExisting {
			return nil, fmt.Errorf("vsphere: a VM or template named %q exists; set replace_existing to replace it", cfg.TemplateName)
		}
		old = vm
	}
	// Import under a name of its own, and take the real name only once the
	// template is complete: a failure at any point before leaves the old
	// template, name and all, as it was.
	staging := fmt.Sprintf("%s-layerimg-%d", cfg.TemplateName, time.Now().UnixNano())
	u := &undo.Stack{Cloud: "vSphere", Log: cfg.Log}
	defer func() {
		if err != nil {
			u.Rollback(ctx)
		}
	}()
	vm, err := importVM(ctx, c, cfg, u, staging, vmdkPath, fi.Size(), capacity, pool, ds, folder, host, netw)
	if err != nil {
		return nil, err
	}
	if err := finish(ctx, vm, cfg); err != nil {
		return nil, err
	}
	if err := swapIn(ctx, vm, old, cfg); err != nil {
		return nil, err
	}
	// The template is complete under its name: a failure from here on
	// (the content library) keeps it.
	u.Commit()
	cfg.Log.Info("published vSphere template", "name", cfg.TemplateName, "moref", vm.Reference().Value)
	res = &Result{Template: cfg.TemplateName, MoRef: vm.Reference().Value}
	if cfg.ContentLibrary != "" {
		desc, err := descriptor(templateParams(cfg, cfg.TemplateName, vmdkPath, fi.Size(), capacity))
		if err != nil {
			return nil, err
		}
		if res.LibraryItem, err = uploadToLibrary(ctx, c, user, cfg, desc, vmdkPath); err != nil {
			return nil, err
		}
		cfg.Log.Info("stored in content library", "library", cfg.ContentLibrary, "item", res.LibraryItem)
	}
	return res, nil
}

func placement(ctx context.Context, finder *find.Finder, cfg Config) (*object.ResourcePool, *object.HostSystem, error) {
	var host *object.HostSystem
	if cfg.Host != "" {
		h, err := finder.HostSystem(ctx, cfg.Host)
		if err != nil {
			return nil, nil, fmt.Errorf("vsphere: host %q: %w", cfg.Host, err)
		}
		host = h
	}
	switch {
	case cfg.ResourcePool != "":
		p, err := finder.ResourcePool(ctx, cfg.ResourcePool)
		if err != nil {
			return nil, nil, fmt.Errorf("vsphere: resource pool %q: %w", cfg.ResourcePool, err)
		}
		return p, host, nil
	case cfg.Cluster != "":
		cl, err := finder.ClusterComputeResource(ctx, cfg.Cluster)
		if err != nil {
			return nil, nil, fmt.Errorf("vsphere: cluster %q: %w", cfg.Cluster, err)
		}
		p, err := cl.ResourcePool(ctx)
		return p, host, err
	case host != nil:
		p, err := host.ResourcePool(ctx)
		return p, host, err
	}
	p, err := finder.DefaultResourcePool(ctx)
	if err != nil {
		return nil, nil, fmt.Errorf("vsphere: no resource pool given and no default: %w", err)
	}
	return p, nil, nil
}

// swapIn gives vm the template's name: the old template (if any) is renamed
// aside, vm renamed, and the old one deleted; if vm cannot take the name,
// the old one gets it back.
func swapIn(ctx context.Context, vm, old *object.VirtualMachine, cfg Config) error {
	rename := func(v *object.VirtualMachine, name string) error {
		return waitTask(ctx, "Rename_Task", v.Reference(), func() (*object.Task, error) { return v.Rename(ctx, name) })
	}
	if old != nil {
		if err := rename(old, fmt.Sprintf("%s-replaced-%d", cfg.TemplateName, time.Now().Unix())); err != nil {
			return err
		}
	}
	if err := rename(vm, cfg.TemplateName); err != nil {
		if old != nil {
			bg, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			if rerr := waitTask(bg, "Rename_Task", old.Reference(), func() (*object.Task, error) { return old.Rename(bg, cfg.TemplateName) }); rerr != nil {
				cfg.Log.Error("could not give the old template its name back", "vm", old.Reference().Value, "err", rerr)
			}
		}
		return err
	}
	if old != nil {
		if err := waitTask(ctx, "Destroy_Task", old.Reference(), func() (*object.Task, error) { return old.Destroy(ctx) }); err != nil {
			cfg.Log.Warn("the new template is in place, but the old one could not be deleted", "vm", old.Reference().Value, "err", err)
		}
	}
	return nil
}

func templateParams(cfg Config, name, vmdkPath string, size, capacity int64) ovfParams {
	return ovfParams{
		Name: name, GuestID: cfg.GuestID, HardwareVersion: cfg.HardwareVersion, Controller: cfg.DiskController,
		Firmware: cfg.Firmware, DiskFile: filepath.Base(vmdkPath), DiskFileSize: size, Capacity: capacity,
		CPUs: cfg.CPUs, MemoryMB: cfg.MemoryMB, SecureBoot: cfg.SecureBoot,
	}
}

// importVM creates the VM from the OVF and uploads the VMDK over the lease.
func importVM(ctx context.Context, c *vim25.Client, cfg Config, u *undo.Stack, name, vmdkPath string, size, capacity int64,
	pool *object.ResourcePool, ds *object.Datastore, folder *object.Folder, host *object.HostSystem, netw object.NetworkReference) (*object.VirtualMachine, error) {
	p := templateParams(cfg, name, vmdkPath, size, capacity)
	// The disk goes in on PVSCSI; finish moves it to NVMe when asked, as not
	// every importer (govmomi's simulator among them) takes an OVF NVMe
	// controller.
	p.Controller = "pvscsi"
	desc, err := descriptor(p)
	if err != nil {
		return nil, err
	}
	params := &types.OvfCreateImportSpecParams{
		EntityName:       name,
		DiskProvisioning: string(types.OvfCreateImportSpecParamsDiskProvisioningTypeThin),
		NetworkMapping:   []types.OvfNetworkMapping{{Name: "VM Network", Network: netw.Reference()}},
	}
	spec, err := ovf.NewManager(c).CreateImportSpec(ctx, desc, pool, ds, params)
	if err != nil {
		return nil, fmt.Errorf("vsphere: CreateImportSpec: %w", err)
	}
	if spec.Error != nil {
		return nil, fmt.Errorf("vsphere: CreateImportSpec: %s", spec.Error[0].LocalizedMessage)
	}
	for _, w := range spec.Warning {
		cfg.Log.Warn("vSphere import", "warning", w.LocalizedMessage)
	}
	lease, err := pool.ImportVApp(ctx, spec.ImportSpec, folder, host)
	if err != nil {
		return nil, fmt.Errorf("vsphere: ImportVApp: %w", err)
	}
	info, err := lease.Wait(ctx, spec.FileItem)
	if err != nil {
		return nil, fmt.Errorf("vsphere: waiting for the NFC lease: %w", err)
	}
	vm := object.NewVirtualMachine(c, info.Entity)
	// On failure, newest first: abort the lease (telling vCenter why), then
	// delete the VM it made.
	u.Push("delete half-imported VM "+vm.Reference().Value, func(ctx context.Context) error {
		return waitTask(ctx, "Destroy_Task", vm.Reference(), func() (*object.Task, error) { return vm.Destroy(ctx) })
	})
	reason := "the import failed"
	forgetLease := u.Push("abort the NFC lease", func(ctx context.Context) error {
		return lease.Abort(ctx, &types.LocalizedMethodFault{LocalizedMessage: reason})
	})
	fail := func(err error) (*object.VirtualMachine, error) {
		reason = err.Error()
		return nil, err
	}
	// The updater reports progress and keeps the lease alive while a long
	// upload runs.
	updater := lease.StartUpdater(ctx, info)
	defer updater.Done()
	for _, item := range info.Items {
		f, err := os.Open(vmdkPath)
		if err != nil {
			return fail(err)
		}
		start := time.Now()
		// The item is the progress sink the updater reads; the meter is
		// the display's.
		m := progress.Start(ctx, "uploading "+filepath.Base(vmdkPath)+" over NFC", size)
		err = lease.Upload(ctx, item, m.Reader(f), soap.Upload{ContentLength: size})
		m.Finish()
		f.Close()
		if err != nil {
			return fail(fmt.Errorf("vsphere: NFC upload of %s to %s: %w", filepath.Base(vmdkPath), item.URL.Host, err))
		}
		cfg.Log.Info("uploaded disk", "bytes", size, "elapsed", time.Since(start).Round(time.Millisecond))
	}
	if err := ctx.Err(); err != nil {
		return fail(err)
	}
	if err := lease.Complete(ctx); err != nil {
		return fail(fmt.Errorf("vsphere: HttpNfcLeaseComplete: %w", err))
	}
	forgetLease()
	return vm, nil
}

// finish sets what the OVF import may not have (the simulator ignores the
// firmware in the OVF), records the digest, and marks the VM a template.
func finish(ctx context.Context, vm *object.VirtualMachine, cfg Config) error {
	spec := types.VirtualMachineConfigSpec{
		Annotation: cfg.Annotation,
		Firmware:   cfg.Firmware,
		ExtraConfig: []types.BaseOptionValue{
			&types.OptionValue{Key: DigestKey, Value: cfg.Digest},
		},
	}
	if cfg.SBOM != "" {
		spec.ExtraConfig = append(spec.ExtraConfig, &types.OptionValue{Key: SBOMKey, Value: cfg.SBOM})
	}
	if cfg.Firmware == "efi" {
		sb := cfg.SecureBoot
		spec.BootOptions = &types.VirtualMachineBootOptions{EfiSecureBootEnabled: &sb}
	}
	if cfg.DiskController == "nvme" {
		changes, err := toNVMe(ctx, vm)
		if err != nil {
			return err
		}
		spec.DeviceChange = changes
	}
	if err := waitTask(ctx, "ReconfigVM_Task", vm.Reference(), func() (*object.Task, error) { return vm.Reconfigure(ctx, spec) }); err != nil {
		return err
	}
	if err := vm.MarkAsTemplate(ctx); err != nil {
		return fmt.Errorf("vsphere: MarkAsTemplate on %s: %w", vm.Reference().Value, err)
	}
	return nil
}

// toNVMe is the device change that adds an NVMe controller, moves every disk
// onto it and removes the SCSI controller they were on.
func toNVMe(ctx context.Context, vm *object.VirtualMachine) ([]types.BaseVirtualDeviceConfigSpec, error) {
	devices, err := vm.Device(ctx)
	if err != nil {
		return nil, fmt.Errorf("vsphere: reading the devices of %s: %w", vm.Reference().Value, err)
	}
	nvme := &types.VirtualNVMEController{VirtualController: types.VirtualController{
		BusNumber: 0, VirtualDevice: types.VirtualDevice{Key: -100},
	}}
	changes := []types.BaseVirtualDeviceConfigSpec{
		&types.VirtualDeviceConfigSpec{Operation: types.VirtualDeviceConfigSpecOperationAdd, Device: nvme},
	}
	unit := int32(0)
	for _, d := range devices.SelectByType((*types.VirtualDisk)(nil)) {
		disk := d.(*types.VirtualDisk)
		disk.ControllerKey = -100
		u := unit
		disk.UnitNumber = &u
		unit++
		changes = append(changes, &types.VirtualDeviceConfigSpec{Operation: types.VirtualDeviceConfigSpecOperationEdit, Device: disk})
	}
	for _, d := range devices.SelectByType((*types.ParaVirtualSCSIController)(nil)) {
		changes = append(changes, &types.VirtualDeviceConfigSpec{Operation: types.VirtualDeviceConfigSpecOperationRemove, Device: d})
	}
	return changes, nil
}

// waitTask runs a task and names it, its object and its fault on failure.
func waitTask(ctx context.Context, name string, obj types.ManagedObjectReference, start func() (*object.Task, error)) error {
	t, err := start()
	if err == nil {
		_, err = t.WaitForResult(ctx, nil)
	}
	if err != nil {
		return fmt.Errorf("vsphere: task %s on %s: %w", name, obj.Value, err)
	}
	return nil
}

// findByDigest finds a VM or template whose extraConfig carries digest.
func findByDigest(ctx context.Context, c *vim25.Client, digest string) (*object.VirtualMachine, string, error) {
	m := view.NewManager(c)
	v, err := m.CreateContainerView(ctx, c.ServiceContent.RootFolder, []string{"VirtualMachine"}, true)
	if err != nil {
		return nil, "", err
	}
	defer v.Destroy(context.Background())
	var vms []mo.VirtualMachine
	if err := v.Retrieve(ctx, []string{"VirtualMachine"}, []string{"name", "config.extraConfig"}, &vms); err != nil {
		return nil, "", err
	}
	for _, vm := range vms {
		if vm.Config == nil {
			continue
		}
		for _, o := range vm.Config.ExtraConfig {
			if ov := o.GetOptionValue(); ov.Key == DigestKey && ov.Value == digest {
				return object.NewVirtualMachine(c, vm.Reference()), vm.Name, nil
			}
		}
	}
	return nil, "", nil
}
