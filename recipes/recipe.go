// Package recipes defines the layerimg recipe format: its Go types, strict
// YAML parsing with file:line:column errors, validation and ${ARG} expansion.
// It never touches the disk beyond reading the recipe, nor the network.
package recipes

// Recipe is one image definition, as written in recipe.yaml.
type Recipe struct {
	Name     string            `yaml:"name" json:"name"`
	Platform string            `yaml:"platform" json:"platform,omitempty"`
	Args     map[string]string `yaml:"args" json:"args,omitempty"`
	From     Base              `yaml:"from" json:"from"`
	Steps    []Step            `yaml:"steps" json:"steps,omitempty"`
	Tests    []Test            `yaml:"tests" json:"tests,omitempty"`
	Disk     *Disk             `yaml:"disk" json:"disk,omitempty"`
	Outputs  []string          `yaml:"outputs" json:"outputs,omitempty"`
	Publish  *Publish          `yaml:"publish" json:"publish,omitempty"`

	// File is the path the recipe was read from; Dir is its build context.
	File string `yaml:"-" json:"-"`
	Dir  string `yaml:"-" json:"-"`
}

// Base is where the image starts. Exactly one of Ref or Bootstrap is set;
// Ref holds a registry reference, "oci-layout:DIR[:tag|@digest]",
// "docker-archive:FILE" or "scratch".
type Base struct {
	Ref       string     `yaml:"-" json:"-"`
	Bootstrap *Bootstrap `yaml:"bootstrap" json:"bootstrap,omitempty"`
	Pos       Pos        `yaml:"-" json:"-"`
}

// Bootstrap makes a Debian base with mmdebstrap.
type Bootstrap struct {
	Distro   string   `yaml:"distro" json:"distro"`
	Suite    string   `yaml:"suite" json:"suite"`
	Mirror   string   `yaml:"mirror" json:"mirror,omitempty"`
	Variant  string   `yaml:"variant" json:"variant,omitempty"`
	Packages []string `yaml:"packages" json:"packages,omitempty"`
	// SecurityMirror is the archive SUITE-security comes from; "none"
	// leaves the security suite out. See Sources for its default.
	SecurityMirror string `yaml:"security_mirror" json:"security_mirror,omitempty"`
	// Suites lists the suites apt reads; default SUITE, SUITE-updates and
	// SUITE-security (SUITE alone for unstable and experimental).
	Suites []string `yaml:"suites" json:"suites,omitempty"`
	// Snapshot (YYYYMMDDTHHMMSSZ) reads both archives from
	// snapshot.debian.org as they were then, instead of the mirrors.
	Snapshot string `yaml:"snapshot" json:"snapshot,omitempty"`
}

// Step is one build step: exactly one of Run, Copy, Ansible or Env.
type Step struct {
	Name    string            `yaml:"name" json:"name,omitempty"`
	Run     Command           `yaml:"run" json:"run,omitempty"`
	Env     map[string]string `yaml:"env" json:"env,omitempty"`
	Workdir string            `yaml:"workdir" json:"workdir,omitempty"`
	Network string            `yaml:"network" json:"network,omitempty"`
	Secrets []Secret          `yaml:"secrets" json:"secrets,omitempty"`
	Copy    []Copy            `yaml:"copy" json:"copy,omitempty"`
	Ansible *Ansible          `yaml:"ansible" json:"ansible,omitempty"`
	// CheckIdempotent runs a run or ansible step a second time on its own
	// result and fails the step if that changes anything.
	CheckIdempotent bool `yaml:"check_idempotent" json:"check_idempotent,omitempty"`

	Pos Pos `yaml:"-" json:"-"`
}

// Ansible runs a playbook with the host's ansible-playbook against the
// step's sandbox. Paths are relative to the build context.
type Ansible struct {
	Playbook     string            `yaml:"playbook" json:"playbook"`
	Roles        []string          `yaml:"roles" json:"roles,omitempty"`
	Collections  []string          `yaml:"collections" json:"collections,omitempty"`
	Requirements string            `yaml:"requirements" json:"requirements,omitempty"`
	ExtraVars    map[string]string `yaml:"extra_vars" json:"extra_vars,omitempty"`
	Tags         []string          `yaml:"tags" json:"tags,omitempty"`
	SkipTags     []string          `yaml:"skip_tags" json:"skip_tags,omitempty"`
	// Become is accepted for playbooks' sake and ignored: tasks run as
	// root in the sandbox.
	Become bool `yaml:"become" json:"become,omitempty"`
}

// Command is a shell script (one string, run with /bin/sh -e -c, so the first
// failing command fails the step) or an argv.
type Command struct {
	Script string   `json:"script,omitempty"`
	Argv   []string `json:"argv,omitempty"`
	// ArgEnv holds the declared args the script names as ${NAME}, as
	// NAME=VALUE in name order: Expand passes args to commands as
	// environment variables, never as text a shell would parse.
	ArgEnv []string `json:"-"`
}

// IsZero reports whether no command was given.
func (c Command) IsZero() bool { return c.Script == "" && len(c.Argv) == 0 }

// Args returns the argv to execute.
func (c Command) Args() []string {
	if c.Script != "" {
		return []string{"/bin/sh", "-e", "-c", c.Script}
	}
	return c.Argv
}

// Secret is a host file bind-mounted read-only into one run step.
type Secret struct {
	ID     string `yaml:"id" json:"id"`
	Src    string `yaml:"src" json:"src"`
	Target string `yaml:"target" json:"target,omitempty"`
}

// Copy copies files or a directory from the build context into the image.
type Copy struct {
	Src   string `yaml:"src" json:"src"`
	Dst   string `yaml:"dst" json:"dst"`
	Mode  string `yaml:"mode" json:"mode,omitempty"`
	Owner string `yaml:"owner" json:"owner,omitempty"`
}

// Test is a command run against the finished rootfs (never captured), or a
// boot of the finished disk.
type Test struct {
	Name string    `yaml:"name" json:"name,omitempty"`
	Run  Command   `yaml:"run" json:"run"`
	Boot *BootTest `yaml:"boot" json:"boot,omitempty"`
	Pos  Pos       `yaml:"-" json:"-"`
}

// BootTest boots the disk in qemu and waits for Expect on the serial console.
type BootTest struct {
	Expect      string   `yaml:"expect" json:"expect,omitempty"`
	Timeout     string   `yaml:"timeout" json:"timeout,omitempty"`
	Controllers []string `yaml:"controllers" json:"controllers,omitempty"`
	SecureBoot  bool     `yaml:"secure_boot" json:"secure_boot,omitempty"`
}

// Disk says how the rootfs becomes a bootable disk.
type Disk struct {
	Size          string `yaml:"size" json:"size,omitempty"` // "auto" or a size such as 4GiB
	Filesystem    string `yaml:"filesystem" json:"filesystem,omitempty"`
	Label         string `yaml:"label" json:"label,omitempty"`
	Boot          string `yaml:"boot" json:"boot,omitempty"`
	KernelCmdline string `yaml:"kernel_cmdline" json:"kernel_cmdline,omitempty"`
	ESPSize       string `yaml:"esp_size" json:"esp_size,omitempty"`
}

// Pos is a position in the recipe file.
type Pos struct {
	Line, Column int
}

// Kind names what a step does.
func (s *Step) Kind() string {
	switch {
	case !s.Run.IsZero():
		return "run"
	case len(s.Copy) > 0:
		return "copy"
	case s.Ansible != nil:
		return "ansible"
	case len(s.Env) > 0:
		return "env"
	}
	return ""
}

// Publish says where the finished disks go.
type Publish struct {
	VSphere *VSphere `yaml:"vsphere" json:"vsphere,omitempty"`
	AWS     *AWS     `yaml:"aws" json:"aws,omitempty"`
	Azure   *Azure   `yaml:"azure" json:"azure,omitempty"`
}

// AWS publishes the disk as an AMI. Credentials come from the SDK's chain,
// never from the recipe.
type AWS struct {
	Region            string             `yaml:"region" json:"region,omitempty"`
	Name              string             `yaml:"name" json:"name,omitempty"`
	Description       string             `yaml:"description" json:"description,omitempty"`
	Tags              map[string]string  `yaml:"tags" json:"tags,omitempty"`
	BootMode          string             `yaml:"boot_mode" json:"boot_mode,omitempty"`
	Architecture      string             `yaml:"architecture" json:"architecture,omitempty"`
	ENASupport        *bool              `yaml:"ena_support" json:"ena_support,omitempty"`
	IMDSSupport       string             `yaml:"imds_support" json:"imds_support,omitempty"`
	TPMSupport        string             `yaml:"tpm_support" json:"tpm_support,omitempty"`
	RootDeviceName    string             `yaml:"root_device_name" json:"root_device_name,omitempty"`
	VolumeType        string             `yaml:"volume_type" json:"volume_type,omitempty"`
	VolumeSize        int                `yaml:"volume_size" json:"volume_size,omitempty"`
	Encrypted         bool               `yaml:"encrypted" json:"encrypted,omitempty"`
	KMSKeyID          string             `yaml:"kms_key_id" json:"kms_key_id,omitempty"`
	CopyTo            []string           `yaml:"copy_to" json:"copy_to,omitempty"`
	LaunchPermissions *LaunchPermissions `yaml:"launch_permissions" json:"launch_permissions,omitempty"`
	Method            string             `yaml:"method" json:"method,omitempty"`
	S3Bucket          string             `yaml:"s3_bucket" json:"s3_bucket,omitempty"`
	RoleName          string             `yaml:"role_name" json:"role_name,omitempty"`
}

// LaunchPermissions shares an AMI.
type LaunchPermissions struct {
	Accounts            []string `yaml:"accounts" json:"accounts,omitempty"`
	Organizations       []string `yaml:"organizations" json:"organizations,omitempty"`
	OrganizationalUnits []string `yaml:"organizational_units" json:"organizational_units,omitempty"`
}

// Azure publishes the VHD as a managed image and/or a gallery image
// version. Credentials come from azidentity, never from the recipe.
type Azure struct {
	SubscriptionID   string            `yaml:"subscription_id" json:"subscription_id,omitempty"`
	ResourceGroup    string            `yaml:"resource_group" json:"resource_group,omitempty"`
	Location         string            `yaml:"location" json:"location,omitempty"`
	Cloud            string            `yaml:"cloud" json:"cloud,omitempty"`
	ImageName        string            `yaml:"image_name" json:"image_name,omitempty"`
	Gallery          *Gallery          `yaml:"gallery" json:"gallery,omitempty"`
	HyperVGeneration string            `yaml:"hyper_v_generation" json:"hyper_v_generation,omitempty"`
	SecurityType     string            `yaml:"security_type" json:"security_type,omitempty"`
	OSType           string            `yaml:"os_type" json:"os_type,omitempty"`
	Tags             map[string]string `yaml:"tags" json:"tags,omitempty"`
	KeepDisk         bool              `yaml:"keep_disk" json:"keep_disk,omitempty"`
}

// Gallery names an Azure Compute Gallery image version to create.
type Gallery struct {
	Name              string   `yaml:"name" json:"name,omitempty"`
	ImageDefinition   string   `yaml:"image_definition" json:"image_definition,omitempty"`
	Version           string   `yaml:"version" json:"version,omitempty"`
	ReplicaRegions    []string `yaml:"replica_regions" json:"replica_regions,omitempty"`
	ExcludeFromLatest bool     `yaml:"exclude_from_latest" json:"exclude_from_latest,omitempty"`
	Publisher         string   `yaml:"publisher" json:"publisher,omitempty"`
	Offer             string   `yaml:"offer" json:"offer,omitempty"`
	SKU               string   `yaml:"sku" json:"sku,omitempty"`
}

// VSphere publishes the VMDK as a vSphere template. Empty connection and
// placement fields fall back to the GOVC_* environment variables.
type VSphere struct {
	URL             string `yaml:"url" json:"url,omitempty"`
	Username        string `yaml:"username" json:"username,omitempty"`
	Password        string `yaml:"password" json:"-"`
	Insecure        bool   `yaml:"insecure" json:"insecure,omitempty"`
	Thumbprint      string `yaml:"thumbprint" json:"thumbprint,omitempty"`
	Datacenter      string `yaml:"datacenter" json:"datacenter,omitempty"`
	Datastore       string `yaml:"datastore" json:"datastore,omitempty"`
	Cluster         string `yaml:"cluster" json:"cluster,omitempty"`
	Host            string `yaml:"host" json:"host,omitempty"`
	ResourcePool    string `yaml:"resource_pool" json:"resource_pool,omitempty"`
	Folder          string `yaml:"folder" json:"folder,omitempty"`
	Network         string `yaml:"network" json:"network,omitempty"`
	TemplateName    string `yaml:"template_name" json:"template_name,omitempty"`
	CPUs            int    `yaml:"cpus" json:"cpus,omitempty"`
	MemoryMB        int    `yaml:"memory_mb" json:"memory_mb,omitempty"`
	HardwareVersion string `yaml:"hardware_version" json:"hardware_version,omitempty"`
	GuestID         string `yaml:"guest_id" json:"guest_id,omitempty"`
	Firmware        string `yaml:"firmware" json:"firmware,omitempty"`
	SecureBoot      bool   `yaml:"secure_boot" json:"secure_boot,omitempty"`
	DiskController  string `yaml:"disk_controller" json:"disk_controller,omitempty"`
	Annotation      string `yaml:"annotation" json:"annotation,omitempty"`
	ReplaceExisting bool   `yaml:"replace_existing" json:"replace_existing,omitempty"`
	ContentLibrary  string `yaml:"content_library" json:"content_library,omitempty"`
}
