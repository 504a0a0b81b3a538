package recipes

import (
	"fmt"
	"sort"
	"strings"
)

// Expand replaces ${NAME} in every step and test field with the recipe's args,
// overridden by overrides. "$${NAME}" stays as the literal "${NAME}", so shell
// scripts can still use their own braces. An unknown name is an error naming
// the step.
//
// Commands (run steps and tests) are the exception: an arg's value is data,
// never script text, so it reaches the command as an environment variable
// (Command.ArgEnv) and the shell expands ${NAME} itself, as Docker passes
// build args. An exec-form command has no shell, so ${NAME} there is refused.
func (r *Recipe) Expand(overrides map[string]string) error {
	args := map[string]string{}
	for k, v := range r.Args {
		args[k] = v
	}
	var errs Errors
	for k, v := range overrides {
		if _, ok := r.Args[k]; !ok {
			errs = append(errs, &Error{File: r.File, Msg: fmt.Sprintf("--arg %s: the recipe declares no such arg (declared: %s)", k, strings.Join(sortedKeys(r.Args), ", "))})
			continue
		}
		args[k] = v
	}
	r.Args = args
	ex := func(pos Pos, where string, s *string) {
		out, err := expand(*s, args)
		if err != nil {
			errs = append(errs, &Error{File: r.File, Pos: pos, Msg: fmt.Sprintf("%s: %v", where, err)})
			return
		}
		*s = out
	}
	exCmd := func(pos Pos, where string, c *Command) {
		script, names, err := shellRefs(c.Script, args)
		if err != nil {
			errs = append(errs, &Error{File: r.File, Pos: pos, Msg: fmt.Sprintf("%s: %v", where, err)})
			return
		}
		c.Script, c.ArgEnv = script, nil
		for _, n := range names {
			c.ArgEnv = append(c.ArgEnv, n+"="+args[n])
		}
		for i, a := range c.Argv {
			if _, names, err := shellRefs(a, args); err != nil || len(names) > 0 {
				errs = append(errs, &Error{File: r.File, Pos: pos, Msg: fmt.Sprintf("%s: an argv-form command has no shell to expand args in %q; write it as a script (run: ...), where ${NAME} reads the arg from the environment", where, a)})
				break
			}
			c.Argv[i] = strings.ReplaceAll(c.Argv[i], "$${", "${")
		}
	}
	if bs := r.From.Bootstrap; bs != nil {
		ex(r.From.Pos, "from", &bs.Suite)
		ex(r.From.Pos, "from", &bs.Mirror)
		ex(r.From.Pos, "from", &bs.SecurityMirror)
		ex(r.From.Pos, "from", &bs.Snapshot)
		for i := range bs.Suites {
			ex(r.From.Pos, "from", &bs.Suites[i])
		}
		for i := range bs.Packages {
			ex(r.From.Pos, "from", &bs.Packages[i])
		}
	} else {
		ex(r.From.Pos, "from", &r.From.Ref)
	}
	for i := range r.Steps {
		s := &r.Steps[i]
		where := fmt.Sprintf("step %d (%s)", i+1, s.Name)
		exCmd(s.Pos, where, &s.Run)
		ex(s.Pos, where, &s.Workdir)
		for k, v := range s.Env {
			ex(s.Pos, where, &v)
			s.Env[k] = v
		}
		for j := range s.Copy {
			ex(s.Pos, where, &s.Copy[j].Src)
			ex(s.Pos, where, &s.Copy[j].Dst)
		}
		for j := range s.Secrets {
			ex(s.Pos, where, &s.Secrets[j].Src)
		}
		if a := s.Ansible; a != nil {
			// Ansible's own {{ }} is its business; only ${NAME} is ours.
			for _, f := range []*string{&a.Playbook, &a.Requirements} {
				ex(s.Pos, where, f)
			}
			for _, l := range [][]string{a.Roles, a.Collections, a.Tags, a.SkipTags} {
				for j := range l {
					ex(s.Pos, where, &l[j])
				}
			}
			for k, v := range a.ExtraVars {
				ex(s.Pos, where, &v)
				a.ExtraVars[k] = v
			}
		}
	}
	if d := r.Disk; d != nil {
		ex(Pos{}, "disk", &d.KernelCmdline)
		ex(Pos{}, "disk", &d.Label)
	}
	if r.Publish != nil && r.Publish.VSphere != nil {
		vs := r.Publish.VSphere
		for _, f := range []*string{&vs.URL, &vs.Username, &vs.Password, &vs.TemplateName, &vs.Annotation, &vs.Folder, &vs.Network, &vs.Datastore, &vs.Cluster, &vs.ResourcePool} {
			ex(Pos{}, "publish.vsphere", f)
		}
	}
	exTags := func(where string, tags map[string]string) {
		for k, v := range tags {
			ex(Pos{}, where, &v)
			tags[k] = v
		}
	}
	if a := r.Publish.aws(); a != nil {
		for _, f := range []*string{&a.Region, &a.Name, &a.Description, &a.KMSKeyID, &a.S3Bucket, &a.RoleName} {
			ex(Pos{}, "publish.aws", f)
		}
		for i := range a.CopyTo {
			ex(Pos{}, "publish.aws", &a.CopyTo[i])
		}
		exTags("publish.aws", a.Tags)
	}
	if a := r.Publish.azure(); a != nil {
		for _, f := range []*string{&a.SubscriptionID, &a.ResourceGroup, &a.Location, &a.ImageName} {
			ex(Pos{}, "publish.azure", f)
		}
		if g := a.Gallery; g != nil {
			for _, f := range []*string{&g.Name, &g.ImageDefinition, &g.Version, &g.Offer, &g.SKU} {
				ex(Pos{}, "publish.azure.gallery", f)
			}
		}
		exTags("publish.azure", a.Tags)
	}
	for i := range r.Tests {
		exCmd(r.Tests[i].Pos, fmt.Sprintf("test %d (%s)", i+1, r.Tests[i].Name), &r.Tests[i].Run)
	}
	if len(errs) > 0 {
		return errs
	}
	return nil
}

// shellRefs checks a script's ${NAME} references against args and returns
// the script with "$${X}" unescaped to the shell's own "${X}", and the names
// of the args it references, sorted. The args themselves are left in place
// for the shell to expand from the environment.
func shellRefs(s string, args map[string]string) (string, []string, error) {
	seen := map[string]bool{}
	var names []string
	out, err := scan(s, func(name string) (string, error) {
		if _, ok := args[name]; !ok {
			return "", fmt.Errorf("unknown arg ${%s} (declare it under args, or write $${%s} for a shell variable)", name, name)
		}
		if !seen[name] {
			seen[name] = true
			names = append(names, name)
		}
		return "${" + name + "}", nil
	})
	sort.Strings(names)
	return out, names, err
}

func expand(s string, args map[string]string) (string, error) {
	return scan(s, func(name string) (string, error) {
		v, ok := args[name]
		if !ok {
			return "", fmt.Errorf("unknown arg ${%s} (declare it under args, or write $${%s} for a literal)", name, name)
		}
		return v, nil
	})
}

// scan replaces each ${NAME} in s with sub(NAME), and "$${" with "${".
func scan(s string, sub func(name string) (string, error)) (string, error) {
	if !strings.Contains(s, "${") {
		return s, nil
	}
	var b strings.Builder
	for {
		i := strings.Index(s, "${")
		if i < 0 {
			b.WriteString(s)
			return b.String(), nil
		}
		if i > 0 && s[i-1] == '$' { // "$${X}": literal "${X}"
			b.WriteString(s[:i-1])
			b.WriteString("${")
			s = s[i+2:]
			continue
		}
		b.WriteString(s[:i])
		end := strings.IndexByte(s[i:], '}')
		if end < 0 {
			return "", fmt.Errorf("unterminated ${ in %q", s)
		}
		v, err := sub(s[i+2 : i+end])
		if err != nil {
			return "", err
		}
		b.WriteString(v)
		s = s[i+end+1:]
	}
}

func (p *Publish) aws() *AWS {
	if p == nil {
		return nil
	}
	return p.AWS
}

func (p *Publish) azure() *Azure {
	if p == nil {
		return nil
	}
	return p.Azure
}
