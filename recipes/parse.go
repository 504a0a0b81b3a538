package recipes

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	goccy "github.com/goccy/go-yaml"
	goccyparser "github.com/goccy/go-yaml/parser"
	"gopkg.in/yaml.v3"

	"github.com/layerimg/layerimg/disk/format"
)

// Error is a problem at one place in a recipe file.
type Error struct {
	File string
	Pos  Pos
	Msg  string
}

func (e *Error) Error() string {
	if e.Pos.Line == 0 {
		return fmt.Sprintf("%s: %s", e.File, e.Msg)
	}
	return fmt.Sprintf("%s:%d:%d: %s", e.File, e.Pos.Line, e.Pos.Column, e.Msg)
}

// Errors is every problem found in one recipe, in file order.
type Errors []*Error

func (es Errors) Error() string {
	msgs := make([]string, len(es))
	for i, e := range es {
		msgs[i] = e.Error()
	}
	return strings.Join(msgs, "\n")
}

// Load reads, parses and validates the recipe at path, then expands its
// ${ARG}s with the recipe's defaults overridden by overrides.
func Load(path string, overrides map[string]string) (*Recipe, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading recipe: %w", err)
	}
	r, err := Parse(path, data)
	if err != nil {
		return nil, err
	}
	if err := r.Expand(overrides); err != nil {
		return nil, err
	}
	return r, nil
}

// Parse parses and validates recipe YAML. file names it in errors and its
// directory becomes the build context.
func Parse(file string, data []byte) (*Recipe, error) {
	p := &parser{file: file}
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil, Errors{p.yamlError(err, data)}
	}
	r := &Recipe{File: file, Dir: filepath.Dir(file)}
	if len(doc.Content) == 0 {
		return nil, Errors{{File: file, Msg: "recipe is empty"}}
	}
	p.recipe(doc.Content[0], r)
	if len(p.errs) == 0 {
		p.validate(r, doc.Content[0])
	}
	if len(p.errs) > 0 {
		return nil, p.errs
	}
	if r.Platform == "" {
		r.Platform = "linux/amd64"
	}
	for i := range r.Steps {
		if r.Steps[i].Name == "" {
			r.Steps[i].Name = fmt.Sprintf("step-%d", i+1)
		}
	}
	for i := range r.Tests {
		if r.Tests[i].Name == "" {
			r.Tests[i].Name = fmt.Sprintf("test-%d", i+1)
		}
	}
	return r, nil
}

type parser struct {
	file string
	errs Errors
}

func (p *parser) yamlError(err error, data []byte) *Error {
	// yaml.v3 says "yaml: line N: msg", where N is often the line of the
	// enclosing collection, counted from 0, and gives no column. goccy's
	// parser points at the offending character: take its position.
	msg := strings.TrimPrefix(err.Error(), "yaml: ")
	var line int
	if n, _ := fmt.Sscanf(msg, "line %d:", &line); n == 1 {
		msg = strings.TrimSpace(msg[strings.Index(msg, ":")+1:])
	}
	var se *goccy.SyntaxError
	if _, gerr := goccyparser.ParseBytes(data, 0); errors.As(gerr, &se) && se.Token != nil && se.Token.Position != nil {
		return &Error{File: p.file, Pos: Pos{Line: se.Token.Position.Line, Column: se.Token.Position.Column}, Msg: "invalid YAML: " + msg}
	}
	if line > 0 {
		return &Error{File: p.file, Pos: Pos{Line: line, Column: 1}, Msg: "invalid YAML: " + msg}
	}
	return &Error{File: p.file, Msg: "invalid YAML: " + msg}
}

func (p *parser) errorf(n *yaml.Node, format string, args ...any) {
	p.errs = append(p.errs, &Error{File: p.file, Pos: pos(n), Msg: fmt.Sprintf(format, args...)})
}

func pos(n *yaml.Node) Pos { return Pos{Line: n.Line, Column: n.Column} }

// fields walks a mapping node, calling set for each key in allowed and
// reporting unknown or repeated keys with the nearest valid one.
func (p *parser) fields(n *yaml.Node, what string, allowed []string, set func(key string, v *yaml.Node)) {
	if n.Kind != yaml.MappingNode {
		p.errorf(n, "%s must be a mapping with keys %s, not %s", what, strings.Join(allowed, ", "), kindName(n))
		return
	}
	seen := map[string]bool{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if !contains(allowed, k.Value) {
			msg := fmt.Sprintf("unknown key %q in %s", k.Value, what)
			if s := nearest(k.Value, allowed); s != "" {
				msg += fmt.Sprintf(" (did you mean %q?)", s)
			} else {
				msg += fmt.Sprintf(" (valid keys: %s)", strings.Join(allowed, ", "))
			}
			p.errorf(k, "%s", msg)
			continue
		}
		if seen[k.Value] {
			p.errorf(k, "key %q repeated in %s", k.Value, what)
			continue
		}
		seen[k.Value] = true
		set(k.Value, v)
	}
}

func (p *parser) str(n *yaml.Node, what string, dst *string) {
	if n.Kind != yaml.ScalarNode || n.Tag == "!!null" {
		p.errorf(n, "%s must be a string, not %s", what, kindName(n))
		return
	}
	*dst = n.Value
}

func (p *parser) strList(n *yaml.Node, what string, dst *[]string) {
	if n.Kind != yaml.SequenceNode {
		p.errorf(n, "%s must be a list of strings, not %s", what, kindName(n))
		return
	}
	for _, c := range n.Content {
		var s string
		p.str(c, what+" item", &s)
		*dst = append(*dst, s)
	}
}

func (p *parser) strMap(n *yaml.Node, what string, dst *map[string]string) {
	if n.Kind != yaml.MappingNode {
		p.errorf(n, "%s must be a mapping of names to strings, not %s", what, kindName(n))
		return
	}
	*dst = map[string]string{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if _, dup := (*dst)[k.Value]; dup {
			p.errorf(k, "key %q repeated in %s", k.Value, what)
		}
		var s string
		p.str(v, fmt.Sprintf("%s.%s", what, k.Value), &s)
		(*dst)[k.Value] = s
	}
}

func (p *parser) command(n *yaml.Node, what string, dst *Command) {
	switch n.Kind {
	case yaml.ScalarNode:
		p.str(n, what, &dst.Script)
		if dst.Script == "" {
			p.errorf(n, "%s is empty", what)
		}
	case yaml.SequenceNode:
		p.strList(n, what, &dst.Argv)
		if len(dst.Argv) == 0 {
			p.errorf(n, "%s is an empty list", what)
		}
	default:
		p.errorf(n, "%s must be a shell script (string) or an argv (list of strings), not %s", what, kindName(n))
	}
}

var (
	recipeKeys  = []string{"name", "platform", "args", "from", "steps", "tests", "disk", "outputs", "publish"}
	publishKeys = []string{"vsphere", "aws", "azure"}
	awsKeys     = []string{"region", "name", "description", "tags", "boot_mode", "architecture", "ena_support", "imds_support",
		"tpm_support", "root_device_name", "volume_type", "volume_size", "encrypted", "kms_key_id", "copy_to",
		"launch_permissions", "method", "s3_bucket", "role_name"}
	launchPermissionKeys = []string{"accounts", "organizations", "organizational_units"}
	azureKeys            = []string{"subscription_id", "resource_group", "location", "cloud", "image_name", "gallery", "hyper_v_generation",
		"security_type", "os_type", "tags", "keep_disk"}
	galleryKeys = []string{"name", "image_definition", "version", "replica_regions", "exclude_from_latest", "publisher", "offer", "sku"}
	vsphereKeys = []string{"url", "username", "password", "insecure", "thumbprint", "datacenter", "datastore", "cluster", "host",
		"resource_pool", "folder", "network", "template_name", "cpus", "memory_mb", "hardware_version", "guest_id", "firmware",
		"secure_boot", "disk_controller", "annotation", "replace_existing", "content_library"}
	diskKeys      = []string{"size", "filesystem", "label", "boot", "kernel_cmdline", "esp_size"}
	bootTestKeys  = []string{"expect", "timeout", "controllers", "secure_boot"}
	bootstrapKeys = []string{"distro", "suite", "mirror", "variant", "packages", "security_mirror", "suites", "snapshot"}
	stepKeys      = []string{"name", "run", "env", "workdir", "network", "secrets", "copy", "ansible", "check_idempotent"}
	ansibleKeys   = []string{"playbook", "roles", "collections", "requirements", "extra_vars", "tags", "skip_tags", "become"}
	secretKeys    = []string{"id", "src", "target"}
	copyKeys      = []string{"src", "dst", "mode", "owner"}
	testKeys      = []string{"name", "run", "boot"}
)

func (p *parser) recipe(n *yaml.Node, r *Recipe) {
	p.fields(n, "recipe", recipeKeys, func(k string, v *yaml.Node) {
		switch k {
		case "name":
			p.str(v, "name", &r.Name)
		case "platform":
			p.str(v, "platform", &r.Platform)
		case "args":
			p.strMap(v, "args", &r.Args)
		case "from":
			p.base(v, &r.From)
		case "steps":
			if v.Kind != yaml.SequenceNode {
				p.errorf(v, "steps must be a list, not %s", kindName(v))
				return
			}
			for i, c := range v.Content {
				var s Step
				p.step(c, i, &s)
				r.Steps = append(r.Steps, s)
			}
		case "disk":
			r.Disk = p.disk(v)
		case "publish":
			r.Publish = &Publish{}
			p.fields(v, "publish", publishKeys, func(k string, v *yaml.Node) {
				switch k {
				case "vsphere":
					r.Publish.VSphere = p.vsphere(v)
				case "aws":
					r.Publish.AWS = p.aws(v)
				case "azure":
					r.Publish.Azure = p.azure(v)
				}
			})
		case "outputs":
			p.strList(v, "outputs", &r.Outputs)
			for i, o := range r.Outputs {
				if _, err := format.Parse(o); err != nil {
					p.errorf(v.Content[i], "outputs: %v", err)
				}
			}
		case "tests":
			if v.Kind != yaml.SequenceNode {
				p.errorf(v, "tests must be a list, not %s", kindName(v))
				return
			}
			for i, c := range v.Content {
				t := Test{Pos: pos(c)}
				what := fmt.Sprintf("tests[%d]", i)
				if c.Kind == yaml.ScalarNode {
					p.command(c, what, &t.Run)
				} else {
					p.settings(c, what, testKeys, map[string]setter{
						"name": p.toStr(&t.Name), "run": p.toCommand(&t.Run),
						"boot": func(v *yaml.Node, what string) { t.Boot = p.bootTest(v, what) },
					})
					if t.Run.IsZero() == (t.Boot == nil) {
						p.errorf(c, "%s must have exactly one of run or boot", what)
					}
				}
				r.Tests = append(r.Tests, t)
			}
		}
	})
}

func (p *parser) disk(n *yaml.Node) *Disk {
	d := &Disk{}
	p.fields(n, "disk", diskKeys, func(k string, v *yaml.Node) {
		switch k {
		case "size":
			p.str(v, "disk.size", &d.Size)
			if d.Size != "auto" {
				if _, err := ParseSize(d.Size); err != nil {
					p.errorf(v, "disk.size: %v (or auto)", err)
				}
			}
		case "filesystem":
			p.str(v, "disk.filesystem", &d.Filesystem)
			if d.Filesystem != "ext4" {
				p.errorf(v, "disk.filesystem %q: only ext4 is supported", d.Filesystem)
			}
		case "label":
			p.str(v, "disk.label", &d.Label)
			if len(d.Label) > 16 {
				p.errorf(v, "disk.label %q is longer than ext4's 16 bytes", d.Label)
			}
		case "boot":
			p.str(v, "disk.boot", &d.Boot)
			if !contains([]string{"systemd-boot", "grub", "none"}, d.Boot) {
				p.errorf(v, "disk.boot %q: expected systemd-boot, grub or none", d.Boot)
			}
		case "kernel_cmdline":
			p.str(v, "disk.kernel_cmdline", &d.KernelCmdline)
		case "esp_size":
			p.str(v, "disk.esp_size", &d.ESPSize)
			if n, err := ParseSize(d.ESPSize); err != nil {
				p.errorf(v, "disk.esp_size: %v", err)
			} else if n < 256<<20 || n%(1<<20) != 0 {
				p.errorf(v, "disk.esp_size must be a whole number of MiB and at least 256MiB (FAT32 below that fails fsck), not %s", d.ESPSize)
			}
		}
	})
	return d
}

func (p *parser) boolean(n *yaml.Node, what string, dst *bool) {
	if n.Kind != yaml.ScalarNode || (n.Value != "true" && n.Value != "false") {
		p.errorf(n, "%s must be true or false", what)
		return
	}
	*dst = n.Value == "true"
}

func (p *parser) integer(n *yaml.Node, what string, dst *int) {
	v, err := strconv.Atoi(n.Value)
	if n.Kind != yaml.ScalarNode || err != nil || v <= 0 {
		p.errorf(n, "%s must be a positive whole number", what)
		return
	}
	*dst = v
}

// A setter parses one key's value into the field it sets; what is the key's
// path in the recipe, such as publish.aws.region.
type setter func(v *yaml.Node, what string)

// settings walks a mapping whose keys each set one field, parsing each
// key's value with its setter in table. keys gives the allowed keys in the
// order error messages list them.
func (p *parser) settings(n *yaml.Node, what string, keys []string, table map[string]setter) {
	p.fields(n, what, keys, func(k string, v *yaml.Node) {
		table[k](v, what+"."+k)
	})
}

// toStr sets a string; with allowed, it must be one of them.
func (p *parser) toStr(dst *string, allowed ...string) setter {
	return func(v *yaml.Node, what string) {
		p.str(v, what, dst)
		if len(allowed) > 0 {
			p.oneOf(v, what, *dst, allowed...)
		}
	}
}

func (p *parser) toCommand(dst *Command) setter {
	return func(v *yaml.Node, what string) { p.command(v, what, dst) }
}

func (p *parser) toBool(dst *bool) setter {
	return func(v *yaml.Node, what string) { p.boolean(v, what, dst) }
}

func (p *parser) toInt(dst *int) setter {
	return func(v *yaml.Node, what string) { p.integer(v, what, dst) }
}

func (p *parser) toList(dst *[]string) setter {
	return func(v *yaml.Node, what string) { p.strList(v, what, dst) }
}

func (p *parser) toMap(dst *map[string]string) setter {
	return func(v *yaml.Node, what string) { p.strMap(v, what, dst) }
}

func (p *parser) vsphere(n *yaml.Node) *VSphere {
	vs := &VSphere{}
	p.settings(n, "publish.vsphere", vsphereKeys, map[string]setter{
		"url": p.toStr(&vs.URL), "username": p.toStr(&vs.Username), "password": p.toStr(&vs.Password),
		"insecure": p.toBool(&vs.Insecure), "thumbprint": p.toStr(&vs.Thumbprint),
		"datacenter": p.toStr(&vs.Datacenter), "datastore": p.toStr(&vs.Datastore), "cluster": p.toStr(&vs.Cluster),
		"host": p.toStr(&vs.Host), "resource_pool": p.toStr(&vs.ResourcePool), "folder": p.toStr(&vs.Folder),
		"network": p.toStr(&vs.Network), "template_name": p.toStr(&vs.TemplateName),
		"cpus": p.toInt(&vs.CPUs), "memory_mb": p.toInt(&vs.MemoryMB),
		"hardware_version": p.toStr(&vs.HardwareVersion), "guest_id": p.toStr(&vs.GuestID),
		"firmware": func(v *yaml.Node, what string) {
			p.str(v, what, &vs.Firmware)
			if vs.Firmware != "efi" && vs.Firmware != "bios" {
				p.errorf(v, "%s must be efi or bios", what)
			}
		},
		"secure_boot": p.toBool(&vs.SecureBoot),
		"disk_controller": func(v *yaml.Node, what string) {
			p.str(v, what, &vs.DiskController)
			switch vs.DiskController {
			case "pvscsi", "nvme":
			case "lsilogic", "sata":
				p.errorf(v, "%s %s: Debian's cloud kernel has no LSI Logic or AHCI driver; use pvscsi or nvme", what, vs.DiskController)
			default:
				p.errorf(v, "%s must be pvscsi or nvme", what)
			}
		},
		"annotation": p.toStr(&vs.Annotation), "replace_existing": p.toBool(&vs.ReplaceExisting),
		"content_library": p.toStr(&vs.ContentLibrary),
	})
	return vs
}

// oneOf reports a value outside the allowed list.
func (p *parser) oneOf(n *yaml.Node, what, v string, allowed ...string) {
	if v != "" && !contains(allowed, v) {
		p.errorf(n, "%s %q: expected %s", what, v, strings.Join(allowed, ", "))
	}
}

func (p *parser) aws(n *yaml.Node) *AWS {
	a := &AWS{}
	p.settings(n, "publish.aws", awsKeys, map[string]setter{
		"region": p.toStr(&a.Region), "name": p.toStr(&a.Name), "description": p.toStr(&a.Description),
		"tags":         p.toMap(&a.Tags),
		"boot_mode":    p.toStr(&a.BootMode, AWSBootModes()...),
		"architecture": p.toStr(&a.Architecture, AWSArchitectures()...),
		"ena_support": func(v *yaml.Node, what string) {
			var b bool
			p.boolean(v, what, &b)
			a.ENASupport = &b
		},
		"imds_support":     p.toStr(&a.IMDSSupport, AWSIMDSSupport()...),
		"tpm_support":      p.toStr(&a.TPMSupport, AWSTPMSupport()...),
		"root_device_name": p.toStr(&a.RootDeviceName),
		"volume_type":      p.toStr(&a.VolumeType, AWSVolumeTypes()...),
		"volume_size":      p.toInt(&a.VolumeSize),
		"encrypted":        p.toBool(&a.Encrypted),
		"kms_key_id":       p.toStr(&a.KMSKeyID),
		"copy_to":          p.toList(&a.CopyTo),
		"launch_permissions": func(v *yaml.Node, what string) {
			lp := &LaunchPermissions{}
			p.settings(v, what, launchPermissionKeys, map[string]setter{
				"accounts": p.toList(&lp.Accounts), "organizations": p.toList(&lp.Organizations),
				"organizational_units": p.toList(&lp.OrganizationalUnits),
			})
			a.LaunchPermissions = lp
		},
		"method":    p.toStr(&a.Method, AWSMethods()...),
		"s3_bucket": p.toStr(&a.S3Bucket), "role_name": p.toStr(&a.RoleName),
	})
	return a
}

func (p *parser) azure(n *yaml.Node) *Azure {
	a := &Azure{}
	p.settings(n, "publish.azure", azureKeys, map[string]setter{
		"subscription_id": p.toStr(&a.SubscriptionID), "resource_group": p.toStr(&a.ResourceGroup),
		"location": p.toStr(&a.Location), "cloud": p.toStr(&a.Cloud, AzureClouds()...),
		"image_name": p.toStr(&a.ImageName),
		"gallery": func(v *yaml.Node, what string) {
			g := &Gallery{}
			p.settings(v, what, galleryKeys, map[string]setter{
				"name": p.toStr(&g.Name), "image_definition": p.toStr(&g.ImageDefinition),
				"version": func(v *yaml.Node, what string) {
					p.str(v, what, &g.Version)
					if !galleryVersionRE.MatchString(g.Version) && !strings.Contains(g.Version, "${") {
						p.errorf(v, "%s %q: expected MAJOR.MINOR.PATCH, such as 1.4.0", what, g.Version)
					}
				},
				"replica_regions":     p.toList(&g.ReplicaRegions),
				"exclude_from_latest": p.toBool(&g.ExcludeFromLatest),
				"publisher":           p.toStr(&g.Publisher), "offer": p.toStr(&g.Offer), "sku": p.toStr(&g.SKU),
			})
			a.Gallery = g
		},
		"hyper_v_generation": p.toStr(&a.HyperVGeneration, AzureHyperVGenerations()...),
		"security_type":      p.toStr(&a.SecurityType, AzureSecurityTypes()...),
		"os_type":            p.toStr(&a.OSType, AzureOSTypes()...),
		"tags":               p.toMap(&a.Tags),
		"keep_disk":          p.toBool(&a.KeepDisk),
	})
	return a
}

var galleryVersionRE = regexp.MustCompile(`^\d+\.\d+\.\d+$`)

func (p *parser) bootTest(n *yaml.Node, what string) *BootTest {
	b := &BootTest{}
	p.fields(n, what, bootTestKeys, func(k string, v *yaml.Node) {
		switch k {
		case "expect":
			p.str(v, what+".expect", &b.Expect)
			if _, err := regexp.Compile(b.Expect); err != nil {
				p.errorf(v, "%s.expect: %v", what, err)
			}
		case "timeout":
			p.str(v, what+".timeout", &b.Timeout)
			if d, err := time.ParseDuration(b.Timeout); err != nil || d <= 0 {
				p.errorf(v, "%s.timeout %q is not a duration such as 300s", what, b.Timeout)
			}
		case "controllers":
			p.strList(v, what+".controllers", &b.Controllers)
			for _, c := range b.Controllers {
				if c != "virtio" && c != "nvme" {
					p.errorf(v, "%s.controllers: %q is not virtio or nvme", what, c)
				}
			}
		case "secure_boot":
			if v.Kind != yaml.ScalarNode || (v.Value != "true" && v.Value != "false") {
				p.errorf(v, "%s.secure_boot must be true or false", what)
			}
			b.SecureBoot = v.Value == "true"
		}
	})
	return b
}

func (p *parser) base(n *yaml.Node, b *Base) {
	b.Pos = pos(n)
	if n.Kind == yaml.ScalarNode {
		p.str(n, "from", &b.Ref)
		return
	}
	p.fields(n, "from", []string{"bootstrap"}, func(k string, v *yaml.Node) {
		bs := &Bootstrap{}
		b.Bootstrap = bs
		set := map[string]setter{
			"distro": p.toStr(&bs.Distro), "suite": p.toStr(&bs.Suite), "mirror": p.toStr(&bs.Mirror),
			"variant": p.toStr(&bs.Variant), "packages": p.toList(&bs.Packages),
			"security_mirror": p.toStr(&bs.SecurityMirror), "suites": p.toList(&bs.Suites), "snapshot": p.toStr(&bs.Snapshot),
		}
		// Its errors name the keys bootstrap.KEY, without from.
		p.fields(v, "from.bootstrap", bootstrapKeys, func(k string, v *yaml.Node) {
			set[k](v, "bootstrap."+k)
		})
	})
}

func (p *parser) step(n *yaml.Node, i int, s *Step) {
	s.Pos = pos(n)
	p.settings(n, fmt.Sprintf("steps[%d]", i), stepKeys, map[string]setter{
		"name": p.toStr(&s.Name), "run": p.toCommand(&s.Run), "env": p.toMap(&s.Env), "workdir": p.toStr(&s.Workdir),
		"network": func(v *yaml.Node, what string) {
			p.str(v, what, &s.Network)
			if s.Network != "host" && s.Network != "none" {
				p.errorf(v, "%s must be host or none, not %q", what, s.Network)
			}
		},
		"secrets": func(v *yaml.Node, what string) { s.Secrets = p.secrets(v, what) },
		"copy":    func(v *yaml.Node, what string) { s.Copy = p.copies(v, what) },
		"ansible": func(v *yaml.Node, what string) {
			s.Ansible = &Ansible{}
			a := s.Ansible
			if v.Kind == yaml.MappingNode {
				// Run steps take it too, so it is the step's key: say so
				// rather than "unknown key".
				for i := 0; i+1 < len(v.Content); i += 2 {
					if k := v.Content[i]; k.Value == "check_idempotent" {
						p.errorf(k, "%s: check_idempotent is a key of the step, beside ansible:, not inside it", what)
						v = &yaml.Node{Kind: yaml.MappingNode, Content: append(append([]*yaml.Node(nil), v.Content[:i]...), v.Content[i+2:]...)}
						break
					}
				}
			}
			p.settings(v, what, ansibleKeys, map[string]setter{
				"playbook": p.toStr(&a.Playbook), "roles": p.toList(&a.Roles), "collections": p.toList(&a.Collections),
				"requirements": p.toStr(&a.Requirements), "extra_vars": p.toMap(&a.ExtraVars),
				"tags": p.toList(&a.Tags), "skip_tags": p.toList(&a.SkipTags), "become": p.toBool(&a.Become),
			})
		},
		"check_idempotent": p.toBool(&s.CheckIdempotent),
	})
}

// secrets parses a step's list of secrets.
func (p *parser) secrets(v *yaml.Node, what string) []Secret {
	if v.Kind != yaml.SequenceNode {
		p.errorf(v, "%s must be a list, not %s", what, kindName(v))
		return nil
	}
	var secs []Secret
	for j, c := range v.Content {
		var sec Secret
		p.settings(c, fmt.Sprintf("%s[%d]", what, j), secretKeys, map[string]setter{
			"id": p.toStr(&sec.ID), "src": p.toStr(&sec.Src), "target": p.toStr(&sec.Target),
		})
		secs = append(secs, sec)
	}
	return secs
}

// copies parses a step's copy: one mapping or a list of them.
func (p *parser) copies(v *yaml.Node, what string) []Copy {
	items := []*yaml.Node{v}
	if v.Kind == yaml.SequenceNode {
		items = v.Content
		if len(items) == 0 {
			p.errorf(v, "%s is an empty list", what)
		}
	}
	var cps []Copy
	for j, c := range items {
		var cp Copy
		w := what
		if v.Kind == yaml.SequenceNode {
			w = fmt.Sprintf("%s[%d]", what, j)
		}
		p.settings(c, w, copyKeys, map[string]setter{
			"src": p.toStr(&cp.Src), "dst": p.toStr(&cp.Dst),
			"mode": func(v *yaml.Node, what string) {
				p.str(v, what, &cp.Mode)
				if _, err := ParseMode(cp.Mode); err != nil {
					p.errorf(v, "%s: %v", what, err)
				}
			},
			"owner": func(v *yaml.Node, what string) {
				p.str(v, what, &cp.Owner)
				if _, _, err := ParseOwner(cp.Owner); err != nil {
					p.errorf(v, "%s: %v", what, err)
				}
			},
		})
		cps = append(cps, cp)
	}
	return cps
}

func kindName(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.AliasNode:
		return "an alias"
	}
	if n.Tag == "!!null" {
		return "empty"
	}
	return fmt.Sprintf("%q", n.Value)
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// nearest returns the candidate closest to s by edit distance, if close enough
// to be a likely typo.
func nearest(s string, candidates []string) string {
	best, bestD := "", len(s)/2+2
	for _, c := range candidates {
		if d := editDistance(strings.ToLower(s), c); d < bestD {
			best, bestD = c, d
		}
	}
	return best
}

func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// sortedKeys returns m's keys in order, for deterministic output.
func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
