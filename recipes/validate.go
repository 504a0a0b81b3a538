package recipes

import (
	"fmt"
	"path"
	"regexp"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

var (
	nameRE     = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]*$`)
	platformRE = regexp.MustCompile(`^linux/(amd64|arm64|386|arm|ppc64le|s390x|riscv64)(/v[0-9]+)?$`)
	secretIDRE = regexp.MustCompile(`^[A-Za-z0-9._-]+$`)
	envNameRE  = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
	snapshotRE = regexp.MustCompile(`^[0-9]{8}T[0-9]{6}Z$`)
)

// validate checks what the per-field parsing could not: required fields and
// relations between fields.
func (p *parser) validate(r *Recipe, root *yaml.Node) {
	at := func(pos Pos, format string, args ...any) {
		p.errs = append(p.errs, &Error{File: p.file, Pos: pos, Msg: fmt.Sprintf(format, args...)})
	}
	top := pos(root)
	if r.Name == "" {
		at(top, "name is required")
	} else if !nameRE.MatchString(r.Name) {
		at(top, "name %q must be lower-case letters, digits, '.', '_' or '-'", r.Name)
	}
	if r.Platform != "" && !platformRE.MatchString(r.Platform) {
		at(top, "platform %q is not a linux platform such as linux/amd64 or linux/arm64", r.Platform)
	}
	for k := range r.Args {
		if !envNameRE.MatchString(k) {
			at(top, "args: %q is not a valid argument name", k)
		}
	}
	b := r.From
	switch {
	case b.Ref == "" && b.Bootstrap == nil:
		at(top, "from is required: a registry reference, oci-layout:DIR, docker-archive:FILE, scratch, or bootstrap: {...}")
	case b.Bootstrap != nil:
		bs := b.Bootstrap
		if bs.Distro != "debian" {
			at(b.Pos, "from.bootstrap.distro must be debian (the only distro supported), not %q", bs.Distro)
		}
		if bs.Suite == "" {
			at(b.Pos, "from.bootstrap.suite is required (for example bookworm)")
		}
		if bs.Mirror != "" && !strings.HasPrefix(bs.Mirror, "http://") && !strings.HasPrefix(bs.Mirror, "https://") {
			at(b.Pos, "from.bootstrap.mirror %q must be an http:// or https:// URL", bs.Mirror)
		}
		if m := bs.SecurityMirror; m != "" && m != "none" && !strings.Contains(m, "${") && !strings.HasPrefix(m, "http://") && !strings.HasPrefix(m, "https://") {
			at(b.Pos, "from.bootstrap.security_mirror %q must be an http:// or https:// URL, or none", m)
		}
		for _, m := range []struct{ key, url string }{{"mirror", bs.Mirror}, {"security_mirror", bs.SecurityMirror}} {
			if err := noCredentials(m.key, m.url); err != nil {
				at(b.Pos, "%v", err)
			}
		}
		if s := bs.Snapshot; s != "" && !strings.Contains(s, "${") && !snapshotRE.MatchString(s) {
			at(b.Pos, "from.bootstrap.snapshot %q is not a snapshot.debian.org timestamp such as 20240115T000000Z", s)
		}
		switch bs.Variant {
		case "", "minbase", "buildd", "required", "important", "standard", "essential", "apt":
		default:
			at(b.Pos, "from.bootstrap.variant %q is not an mmdebstrap variant (minbase, essential, apt, required, important, standard, buildd)", bs.Variant)
		}
	}
	names := map[string]int{}
	for i := range r.Steps {
		s := &r.Steps[i]
		what := fmt.Sprintf("step %d", i+1)
		if s.Name != "" {
			what = fmt.Sprintf("step %d (%s)", i+1, s.Name)
			if !nameRE.MatchString(s.Name) {
				at(s.Pos, "%s: name must be lower-case letters, digits, '.', '_' or '-'", what)
			}
			if j, dup := names[s.Name]; dup {
				at(s.Pos, "%s: name is already used by step %d", what, j)
			}
			names[s.Name] = i + 1
		}
		kinds := 0
		if !s.Run.IsZero() {
			kinds++
		}
		if len(s.Copy) > 0 {
			kinds++
		}
		if s.Ansible != nil {
			kinds++
		}
		if s.Run.IsZero() && s.Ansible == nil && len(s.Env) > 0 {
			kinds++
		}
		if kinds != 1 {
			at(s.Pos, "%s must have exactly one of run, copy, ansible or env", what)
			continue
		}
		if s.Run.IsZero() && s.Ansible == nil && (s.Workdir != "" || s.Network != "" || len(s.Secrets) > 0) {
			at(s.Pos, "%s: workdir, network and secrets belong to run and ansible steps", what)
		}
		if s.Run.IsZero() && s.Ansible == nil && s.CheckIdempotent {
			at(s.Pos, "%s: check_idempotent belongs to run and ansible steps", what)
		}
		if a := s.Ansible; a != nil {
			validateAnsible(a, func(format string, args ...any) { at(s.Pos, what+": "+format, args...) })
		}
		if s.Workdir != "" && !path.IsAbs(s.Workdir) {
			at(s.Pos, "%s: workdir %q must be an absolute path", what, s.Workdir)
		}
		for k := range s.Env {
			if !envNameRE.MatchString(k) {
				at(s.Pos, "%s: env name %q is not valid", what, k)
			}
		}
		ids := map[string]bool{}
		for _, sec := range s.Secrets {
			switch {
			case !secretIDRE.MatchString(sec.ID):
				at(s.Pos, "%s: secret id %q must be letters, digits, '.', '_' or '-'", what, sec.ID)
			case ids[sec.ID]:
				at(s.Pos, "%s: secret id %q repeated", what, sec.ID)
			case sec.Src == "":
				at(s.Pos, "%s: secret %q needs src (a host file)", what, sec.ID)
			case sec.Target != "" && !path.IsAbs(sec.Target):
				at(s.Pos, "%s: secret %q target must be an absolute path", what, sec.ID)
			}
			ids[sec.ID] = true
		}
		for _, c := range s.Copy {
			if c.Src == "" || c.Dst == "" {
				at(s.Pos, "%s: copy needs src and dst", what)
			} else if !path.IsAbs(c.Dst) {
				at(s.Pos, "%s: copy dst %q must be an absolute path in the image", what, c.Dst)
			} else if path.IsAbs(c.Src) {
				at(s.Pos, "%s: copy src %q must be relative to the build context (the recipe's folder)", what, c.Src)
			}
		}
	}
}

// validateAnsible checks an ansible step's paths: each is relative to the
// build context, as copy sources are.
func validateAnsible(a *Ansible, errorf func(string, ...any)) {
	if a.Playbook == "" {
		errorf("ansible.playbook is required (a playbook file in the build context)")
	}
	paths := append([]string{a.Playbook, a.Requirements}, append(append([]string(nil), a.Roles...), a.Collections...)...)
	for _, p := range paths {
		if p == "" {
			continue
		}
		if path.IsAbs(p) || p == ".." || strings.HasPrefix(path.Clean(p), "../") {
			errorf("ansible path %q must be relative to the build context (the recipe's folder) and inside it", p)
		}
	}
	for k := range a.ExtraVars {
		if !envNameRE.MatchString(k) {
			errorf("ansible.extra_vars: %q is not a valid variable name", k)
		}
	}
}

// ParseMode parses an octal file mode such as "0644" or "755".
func ParseMode(s string) (uint32, error) {
	m, err := strconv.ParseUint(s, 8, 32)
	if err != nil || m > 0o7777 {
		return 0, fmt.Errorf("%q is not an octal mode such as 0644", s)
	}
	return uint32(m), nil
}

// maxID is the largest uid or gid a file can have.
const maxID = 1<<32 - 2

// ParseOwner parses a numeric "UID:GID" or "UID" owner. Names are refused:
// resolving them would depend on the image's /etc/passwd at build time.
func ParseOwner(s string) (uid, gid int, err error) {
	u, g, ok := strings.Cut(s, ":")
	if !ok {
		g = u
	}
	uid, err1 := strconv.Atoi(u)
	gid, err2 := strconv.Atoi(g)
	if err1 != nil || err2 != nil || uid < 0 || gid < 0 {
		return 0, 0, fmt.Errorf("%q must be numeric UID:GID such as 0:0 or 1000:1000", s)
	}
	// 2^32-1 is (uid_t)-1, "no owner" to chown: no file can have it.
	if uid > maxID || gid > maxID {
		return 0, 0, fmt.Errorf("%q: ids go from 0 to %d", s, maxID)
	}
	return uid, gid, nil
}

// ParseSize parses a size such as 4GiB, 512MiB, 10G or a number of bytes.
func ParseSize(s string) (int64, error) {
	units := []struct {
		suffix string
		mult   int64
	}{{"TiB", 1 << 40}, {"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}, {"T", 1 << 40}, {"G", 1 << 30}, {"M", 1 << 20}, {"K", 1 << 10}, {"B", 1}}
	num, mult := s, int64(1)
	for _, u := range units {
		if strings.HasSuffix(s, u.suffix) {
			num, mult = strings.TrimSuffix(s, u.suffix), u.mult
			break
		}
	}
	n, err := strconv.ParseInt(strings.TrimSpace(num), 10, 64)
	if err != nil || n <= 0 || n > (1<<50)/mult {
		return 0, fmt.Errorf("%q is not a size such as 4GiB or 512MiB", s)
	}
	return n * mult, nil
}
