package recipes

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const good = `name: web
platform: linux/arm64
args:
  SUITE: bookworm
  PKG: nginx
from:
  bootstrap:
    distro: debian
    suite: ${SUITE}
    packages: [ca-certificates, "${PKG}"]
steps:
  - name: conf
    copy:
      src: files/nginx.conf
      dst: /etc/nginx/nginx.conf
      mode: "0644"
      owner: "0:0"
  - copy:
      - {src: a, dst: /a}
      - {src: b, dst: /b/}
  - env:
      LANG: C.UTF-8
  - name: install
    run: apt-get install -y ${PKG} && echo $${HOME}
    env: {X: "1"}
    workdir: /srv
    network: none
    secrets:
      - {id: netrc, src: /run/netrc, target: /root/.netrc}
  - run: [/bin/echo, "$${SUITE}"]
tests:
  - command -v nginx
  - name: conf
    run: [nginx, -t]
`

func TestParseGood(t *testing.T) {
	r, err := Parse("dir/recipe.yaml", []byte(good))
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Expand(map[string]string{"PKG": "apache2"}); err != nil {
		t.Fatal(err)
	}
	if r.Dir != "dir" || r.Platform != "linux/arm64" {
		t.Errorf("dir %q platform %q", r.Dir, r.Platform)
	}
	bs := r.From.Bootstrap
	if bs == nil || bs.Suite != "bookworm" || strings.Join(bs.Packages, ",") != "ca-certificates,apache2" {
		t.Errorf("bootstrap = %+v", bs)
	}
	if len(r.Steps) != 5 {
		t.Fatalf("%d steps", len(r.Steps))
	}
	kinds := []string{"copy", "copy", "env", "run", "run"}
	for i, s := range r.Steps {
		if s.Kind() != kinds[i] {
			t.Errorf("step %d kind %s, want %s", i, s.Kind(), kinds[i])
		}
	}
	if r.Steps[1].Name != "step-2" || len(r.Steps[1].Copy) != 2 {
		t.Errorf("step 2 = %+v", r.Steps[1])
	}
	inst := r.Steps[3]
	// Args reach scripts as environment variables, never as script text.
	if got := inst.Run.Script; got != "apt-get install -y ${PKG} && echo ${HOME}" {
		t.Errorf("script = %q", got)
	}
	if got := strings.Join(inst.Run.ArgEnv, " "); got != "PKG=apache2" {
		t.Errorf("arg env = %q", got)
	}
	if inst.Network != "none" || inst.Workdir != "/srv" || inst.Secrets[0].Target != "/root/.netrc" || inst.Env["X"] != "1" {
		t.Errorf("install = %+v", inst)
	}
	if got := r.Steps[4].Run.Args(); strings.Join(got, " ") != "/bin/echo ${SUITE}" {
		t.Errorf("argv = %q", got)
	}
	if r.Steps[3].Pos.Line != 23 {
		t.Errorf("step 4 at line %d", r.Steps[3].Pos.Line)
	}
	if len(r.Tests) != 2 || r.Tests[0].Run.Script != "command -v nginx" || r.Tests[1].Name != "conf" {
		t.Errorf("tests = %+v", r.Tests)
	}
}

func TestParseErrors(t *testing.T) {
	for _, tc := range []struct {
		name, yaml, want string
	}{
		{"unknown top key", "name: x\nfrom: scratch\nstep: []\n", `recipe.yaml:3:1: unknown key "step" in recipe (did you mean "steps"?)`},
		{"unknown step key", "name: x\nfrom: scratch\nsteps:\n  - rn: echo\n", `recipe.yaml:4:5: unknown key "rn" in steps[0] (did you mean "run"?)`},
		{"unknown far key", "name: x\nfrom: scratch\nzzzzzzzzz: 1\n", `unknown key "zzzzzzzzz" in recipe (valid keys: name, platform, args, from, steps, tests, disk, outputs, publish)`},
		{"copy key", "name: x\nfrom: scratch\nsteps:\n  - copy: {src: a, dest: /a}\n", `recipe.yaml:4:20: unknown key "dest" in steps[0].copy (did you mean "dst"?)`},
		{"bootstrap key", "name: x\nfrom:\n  bootstrap: {distro: debian, suit: bookworm}\n", `unknown key "suit" in from.bootstrap (did you mean "suite"?)`},
		{"no name", "from: scratch\n", "name is required"},
		{"bad name", "name: Web Server\nfrom: scratch\n", `name "Web Server" must be lower-case`},
		{"no from", "name: x\n", "from is required"},
		{"two kinds", "name: x\nfrom: scratch\nsteps:\n  - run: a\n    copy: {src: a, dst: /a}\n", "recipe.yaml:4:5: step 1 must have exactly one of run, copy, ansible or env"},
		{"no kind", "name: x\nfrom: scratch\nsteps:\n  - name: a\n", "step 1 (a) must have exactly one of run, copy, ansible or env"},
		{"bad network", "name: x\nfrom: scratch\nsteps:\n  - run: a\n    network: bridge\n", `recipe.yaml:5:14: steps[0].network must be host or none, not "bridge"`},
		{"bad mode", "name: x\nfrom: scratch\nsteps:\n  - copy: {src: a, dst: /a, mode: rwx}\n", `steps[0].copy.mode: "rwx" is not an octal mode`},
		{"bad owner", "name: x\nfrom: scratch\nsteps:\n  - copy: {src: a, dst: /a, owner: root}\n", `must be numeric UID:GID`},
		{"owner out of range", "name: x\nfrom: scratch\nsteps:\n  - copy: {src: a, dst: /a, owner: \"0:4294967295\"}\n", `"0:4294967295": ids go from 0 to 4294967294`},
		{"relative dst", "name: x\nfrom: scratch\nsteps:\n  - copy: {src: a, dst: a}\n", `copy dst "a" must be an absolute path`},
		{"absolute src", "name: x\nfrom: scratch\nsteps:\n  - copy: {src: /etc/passwd, dst: /a}\n", `must be relative to the build context`},
		{"run type", "name: x\nfrom: scratch\nsteps:\n  - run: {a: b}\n", `steps[0].run must be a shell script (string) or an argv`},
		{"steps not list", "name: x\nfrom: scratch\nsteps: {}\n", "recipe.yaml:3:8: steps must be a list, not a mapping"},
		{"dup step", "name: x\nfrom: scratch\nsteps:\n  - {name: a, run: x}\n  - {name: a, run: y}\n", "name is already used by step 1"},
		{"bad yaml", "name: x\nfrom: [\n", "recipe.yaml:2:7: invalid YAML"},
		{"empty", "", "recipe is empty"},
		{"platform", "name: x\nplatform: windows/amd64\nfrom: scratch\n", `platform "windows/amd64" is not a linux platform`},
		{"secret no src", "name: x\nfrom: scratch\nsteps:\n  - run: a\n    secrets: [{id: tok}]\n", `secret "tok" needs src`},
		{"workdir on copy", "name: x\nfrom: scratch\nsteps:\n  - copy: {src: a, dst: /a}\n    workdir: /x\n", "workdir, network and secrets belong to run and ansible steps"},
		{"dup key", "name: x\nname: y\nfrom: scratch\n", `recipe.yaml:2:1: key "name" repeated`},
		{"bad variant", "name: x\nfrom:\n  bootstrap: {distro: debian, suite: b, variant: tiny}\n", `variant "tiny" is not an mmdebstrap variant`},
		{"disk key", "name: x\nfrom: scratch\ndisk: {sise: 4GiB}\n", `unknown key "sise" in disk (did you mean "size"?)`},
		{"disk size", "name: x\nfrom: scratch\ndisk: {size: lots}\n", `disk.size: "lots" is not a size`},
		{"disk fs", "name: x\nfrom: scratch\ndisk: {filesystem: xfs}\n", `only ext4 is supported`},
		{"disk boot", "name: x\nfrom: scratch\ndisk: {boot: lilo}\n", `disk.boot "lilo"`},
		{"small esp", "name: x\nfrom: scratch\ndisk: {esp_size: 100MiB}\n", `at least 256MiB`},
		{"output", "name: x\nfrom: scratch\noutputs: [raw, iso]\n", `recipe.yaml:3:16: outputs: unknown format "iso"`},
		{"boot test", "name: x\nfrom: scratch\ntests:\n  - boot: {controllers: [ide]}\n", `"ide" is not virtio or nvme`},
		{"boot timeout", "name: x\nfrom: scratch\ntests:\n  - boot: {timeout: soon}\n", `timeout "soon" is not a duration`},
		{"boot and run", "name: x\nfrom: scratch\ntests:\n  - {run: x, boot: {}}\n", `must have exactly one of run or boot`},
		{"bad regexp", "name: x\nfrom: scratch\ntests:\n  - boot: {expect: \"(\"}\n", `expect: error parsing regexp`},
		{"vsphere key", "name: x\nfrom: scratch\npublish:\n  vsphere: {templte_name: t}\n", `unknown key "templte_name" in publish.vsphere (did you mean "template_name"?)`},
		{"vsphere lsilogic", "name: x\nfrom: scratch\npublish:\n  vsphere: {disk_controller: lsilogic}\n", `no LSI Logic or AHCI driver`},
		{"vsphere cpus", "name: x\nfrom: scratch\npublish:\n  vsphere: {cpus: many}\n", `publish.vsphere.cpus must be a positive whole number`},
		{"vsphere bool", "name: x\nfrom: scratch\npublish:\n  vsphere: {insecure: maybe}\n", `publish.vsphere.insecure must be true or false`},
		{"aws key", "name: x\nfrom: scratch\npublish:\n  aws: {regoin: eu-west-1}\n", `unknown key "regoin" in publish.aws (did you mean "region"?)`},
		{"aws boot mode", "name: x\nfrom: scratch\npublish:\n  aws: {boot_mode: bios}\n", `publish.aws.boot_mode "bios": expected uefi, uefi-preferred, legacy-bios`},
		{"aws sharing", "name: x\nfrom: scratch\npublish:\n  aws: {launch_permissions: {acounts: [1]}}\n", `unknown key "acounts" in publish.aws.launch_permissions`},
		{"aws volume", "name: x\nfrom: scratch\npublish:\n  aws: {volume_type: sc1}\n", `publish.aws.volume_type "sc1"`},
		{"azure security", "name: x\nfrom: scratch\npublish:\n  azure: {security_type: Confidential}\n", `publish.azure.security_type "Confidential": expected Standard, TrustedLaunch`},
		{"azure version", "name: x\nfrom: scratch\npublish:\n  azure: {gallery: {name: g, version: v1}}\n", `publish.azure.gallery.version "v1"`},
		{"bad distro", "name: x\nfrom:\n  bootstrap: {distro: fedora, suite: b}\n", `distro must be debian`},
		{"ansible no playbook", "name: x\nfrom: scratch\nsteps:\n  - ansible: {roles: [r]}\n", `ansible.playbook is required`},
		{"ansible key", "name: x\nfrom: scratch\nsteps:\n  - ansible: {playbook: p.yml, extra_var: {a: b}}\n", `unknown key "extra_var" in steps[0].ansible (did you mean "extra_vars"?)`},
		{"ansible outside", "name: x\nfrom: scratch\nsteps:\n  - ansible: {playbook: ../p.yml}\n", `ansible path "../p.yml" must be relative to the build context`},
		{"ansible absolute", "name: x\nfrom: scratch\nsteps:\n  - ansible: {playbook: p.yml, roles: [/etc/ansible/roles]}\n", `ansible path "/etc/ansible/roles" must be relative`},
		{"ansible and run", "name: x\nfrom: scratch\nsteps:\n  - ansible: {playbook: p.yml}\n    run: x\n", `must have exactly one of run, copy, ansible or env`},
		{"ansible check inside", "name: x\nfrom: scratch\nsteps:\n  - ansible: {playbook: p.yml, check_idempotent: true}\n", `check_idempotent is a key of the step, beside ansible:, not inside it`},
		{"ansible extra var name", "name: x\nfrom: scratch\nsteps:\n  - ansible: {playbook: p.yml, extra_vars: {a-b: c}}\n", `"a-b" is not a valid variable name`},
		{"check on copy", "name: x\nfrom: scratch\nsteps:\n  - copy: {src: a, dst: /a}\n    check_idempotent: true\n", `check_idempotent belongs to run and ansible steps`},
		{"check not bool", "name: x\nfrom: scratch\nsteps:\n  - run: a\n    check_idempotent: yes please\n", `check_idempotent must be true or false`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse("recipe.yaml", []byte(tc.yaml))
			if err == nil {
				t.Fatalf("no error; want %q", tc.want)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error:\n%v\nwant it to contain:\n%s", err, tc.want)
			}
		})
	}
}

func TestParseReportsEveryError(t *testing.T) {
	_, err := Parse("r.yaml", []byte("name: x\nfrom: scratch\nsteps:\n  - rn: a\n  - run: b\n    netwrk: none\n"))
	es, ok := err.(Errors)
	if !ok || len(es) != 2 {
		t.Fatalf("want 2 errors, got %v", err)
	}
	if es[0].Pos.Line != 4 || es[1].Pos.Line != 6 {
		t.Errorf("lines %d, %d", es[0].Pos.Line, es[1].Pos.Line)
	}
}

func TestParseDisk(t *testing.T) {
	r, err := Parse("r.yaml", []byte("name: x\nfrom: scratch\ndisk: {size: 4GiB, boot: grub, esp_size: 512MiB, kernel_cmdline: quiet}\noutputs: [raw, vhd]\ntests:\n  - boot: {expect: ready, timeout: 90s, controllers: [virtio, nvme], secure_boot: true}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if r.Disk.Boot != "grub" || r.Disk.Size != "4GiB" || len(r.Outputs) != 2 {
		t.Errorf("disk %+v outputs %v", r.Disk, r.Outputs)
	}
	b := r.Tests[0].Boot
	if b == nil || !b.SecureBoot || len(b.Controllers) != 2 || b.Timeout != "90s" {
		t.Errorf("boot test %+v", b)
	}
	for in, want := range map[string]int64{"4GiB": 4 << 30, "512MiB": 512 << 20, "10G": 10 << 30, "4096": 4096} {
		if got, err := ParseSize(in); err != nil || got != want {
			t.Errorf("ParseSize(%q) = %d, %v", in, got, err)
		}
	}
}

func TestExpand(t *testing.T) {
	for _, tc := range []struct {
		in, want, err string
	}{
		{"plain", "plain", ""},
		{"${A}-${B}", "1-two", ""},
		{"$${A}", "${A}", ""},
		{"$HOME ${A}", "$HOME 1", ""},
		{"${NOPE}", "", "unknown arg ${NOPE}"},
		{"${A", "", "unterminated"},
	} {
		got, err := expand(tc.in, map[string]string{"A": "1", "B": "two"})
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("expand(%q) err = %v, want %q", tc.in, err, tc.err)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("expand(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}
}

func TestExpandErrors(t *testing.T) {
	r, err := Parse("r.yaml", []byte("name: x\nargs: {A: a}\nfrom: scratch\nsteps:\n  - run: echo ${B}\n"))
	if err != nil {
		t.Fatal(err)
	}
	err = r.Expand(nil)
	if err == nil || !strings.Contains(err.Error(), "r.yaml:5:5: step 1 (step-1): unknown arg ${B}") {
		t.Errorf("err = %v", err)
	}
	r, _ = Parse("r.yaml", []byte("name: x\nargs: {A: a}\nfrom: scratch\n"))
	if err := r.Expand(map[string]string{"Z": "1"}); err == nil || !strings.Contains(err.Error(), "--arg Z: the recipe declares no such arg") {
		t.Errorf("err = %v", err)
	}
}

func TestExamplesValidate(t *testing.T) {
	files, _ := filepath.Glob("examples/*.yaml")
	if len(files) == 0 {
		t.Fatal("no examples")
	}
	for _, f := range files {
		if _, err := Load(f, nil); err != nil {
			t.Errorf("%s: %v", f, err)
		}
	}
}

func TestLoadMissingFile(t *testing.T) {
	_, err := Load(filepath.Join(t.TempDir(), "nope.yaml"), nil)
	if err == nil || !os.IsNotExist(unwrapAll(err)) {
		t.Errorf("err = %v", err)
	}
}

func unwrapAll(err error) error {
	for {
		u, ok := err.(interface{ Unwrap() error })
		if !ok {
			return err
		}
		err = u.Unwrap()
	}
}

// An arg's value is data: whatever it holds, the script text stays as the
// recipe wrote it and the value travels in the command's environment.
func TestArgsNeverBecomeScript(t *testing.T) {
	const src = "name: x\nargs: {GREETING: hi, UNUSED: u}\nfrom: scratch\nsteps:\n" +
		"  - run: echo \"${GREETING}\" > /etc/greeting; echo $${HOME} ${GREETING}\n" +
		"  - run: echo plain\n" +
		"tests:\n  - run: test \"${GREETING}\" = \"$(cat /etc/greeting)\"\n"
	r, err := Parse("r.yaml", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	hostile := `x"; echo INJECTED > /injected; echo "`
	if err := r.Expand(map[string]string{"GREETING": hostile}); err != nil {
		t.Fatal(err)
	}
	if got, want := r.Steps[0].Run.Script, `echo "${GREETING}" > /etc/greeting; echo ${HOME} ${GREETING}`; got != want {
		t.Errorf("script = %q, want %q", got, want)
	}
	if got := r.Steps[0].Run.ArgEnv; len(got) != 1 || got[0] != "GREETING="+hostile {
		t.Errorf("arg env = %q", got)
	}
	if got := r.Steps[1].Run.ArgEnv; got != nil {
		t.Errorf("a step that names no arg got %q", got)
	}
	if got := r.Tests[0].Run.ArgEnv; len(got) != 1 || got[0] != "GREETING="+hostile {
		t.Errorf("test arg env = %q", got)
	}
}

func TestArgvFormRefusesArgs(t *testing.T) {
	r, err := Parse("r.yaml", []byte("name: x\nargs: {A: a}\nfrom: scratch\nsteps:\n  - run: [/bin/sh, -c, \"echo ${A}\"]\n"))
	if err != nil {
		t.Fatal(err)
	}
	err = r.Expand(nil)
	if err == nil || !strings.Contains(err.Error(), "r.yaml:5:5: step 1 (step-1): an argv-form command has no shell to expand args") {
		t.Fatalf("err = %v", err)
	}
}

// A YAML syntax error is reported where the parser found it: line and
// column, not the enclosing collection's line at column 1.
func TestYAMLErrorPositions(t *testing.T) {
	for _, tc := range []struct{ name, yaml, want string }{
		// The flow list opened on line 4 is still open when line 5 starts.
		{"unclosed [", "name: x\nfrom: scratch\nsteps:\n  - run: [echo, hi\n  - run: echo\n", "recipe.yaml:5:3: invalid YAML: did not find expected ',' or ']'"},
		{"bad indent", "name: x\nfrom: scratch\nsteps:\n  - run: echo\n   name: bad\n", "recipe.yaml:5:4: invalid YAML: "},
		{"tab", "name: x\nfrom: scratch\nsteps:\n  - run: echo\n  \t- run: echo\n", "recipe.yaml:5:3: invalid YAML: found a tab character"},
		{"duplicate key", "name: x\nfrom: scratch\nsteps:\n  - run: echo\n    run: again\n", `recipe.yaml:5:5: key "run" repeated in steps[0]`},
	} {
		_, err := Parse("recipe.yaml", []byte(tc.yaml))
		if err == nil || !strings.HasPrefix(err.Error(), tc.want) {
			t.Errorf("%s: got %v, want %s...", tc.name, err, tc.want)
		}
	}
}

func TestParseAnsibleStep(t *testing.T) {
	r, err := Parse("dir/recipe.yaml", []byte(`name: x
args: {PKG: less}
from: scratch
steps:
  - name: conf
    network: none
    env: {A: b}
    secrets: [{id: tok, src: tok.txt}]
    check_idempotent: true
    ansible:
      playbook: ansible/site.yml
      roles: [ansible/roles]
      collections: [ansible/collections]
      requirements: ansible/requirements.yml
      extra_vars: {pkg: "${PKG}", literal: "$${X} {{ y }}"}
      tags: [base]
      skip_tags: [slow]
      become: true
`))
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Expand(map[string]string{"PKG": "vim"}); err != nil {
		t.Fatal(err)
	}
	s := r.Steps[0]
	a := s.Ansible
	if s.Kind() != "ansible" || !s.CheckIdempotent || s.Network != "none" || len(s.Secrets) != 1 || s.Env["A"] != "b" {
		t.Errorf("step: %+v", s)
	}
	if a.Playbook != "ansible/site.yml" || a.Roles[0] != "ansible/roles" || a.Collections[0] != "ansible/collections" ||
		a.Requirements != "ansible/requirements.yml" || a.Tags[0] != "base" || a.SkipTags[0] != "slow" || !a.Become {
		t.Errorf("ansible: %+v", a)
	}
	if a.ExtraVars["pkg"] != "vim" || a.ExtraVars["literal"] != "${X} {{ y }}" {
		t.Errorf("extra_vars after expansion: %v", a.ExtraVars)
	}
}
