package layers

import (
	"bytes"
	"cmp"
	"context"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"

	"golang.org/x/sys/unix"
	"gopkg.in/yaml.v3"

	"github.com/layerimg/layerimg/recipes"
	"github.com/layerimg/layerimg/rootfs"
)

// The connection plugin (tasks run through the sandbox's agent) and the
// callback (task counts for the manifest and the idempotency check) that
// every Ansible step gets, written to a temporary directory.
//
//go:embed ansible
var ansiblePlugins embed.FS

// ansibleRemoteTmp is Ansible's working directory inside the sandbox. It is
// taken out of the upper dir after the playbook, so it never reaches a
// layer: it held the modules' arguments, secrets included.
const ansibleRemoteTmp = "/tmp/.layerimg-ansible"

// playbookDirs are the directories beside a playbook that Ansible reads
// without being told (roles, vars, files and templates of the play): their
// files are part of the step's key.
var playbookDirs = []string{"roles", "group_vars", "host_vars", "vars", "files", "templates", "tasks", "handlers", "library", "module_utils", "filter_plugins", "collections"}

// AnsibleVersion is the host's ansible-playbook version ("core 2.14.18"),
// part of every Ansible step's key.
func AnsibleVersion(ctx context.Context) (string, error) {
	out, err := exec.CommandContext(ctx, "ansible-playbook", "--version").Output()
	if errors.Is(err, exec.ErrNotFound) {
		return "", errors.New("ansible steps need ansible-playbook on the host (Debian: apt-get install ansible-core)")
	}
	if err != nil {
		return "", fmt.Errorf("ansible-playbook --version: %w", err)
	}
	first, _, _ := strings.Cut(string(out), "\n")
	if i := strings.IndexByte(first, '['); i >= 0 {
		first = strings.Trim(first[i:], "[]")
	}
	return strings.TrimSpace(first), nil
}

// AnsibleKeyFiles digests every build-context file an Ansible step reads:
// the playbook, the directories Ansible reads beside it, its roles and
// collections paths, the requirements file and the local files it names.
func AnsibleKeyFiles(contextDir string, a *recipes.Ansible) ([]FileDigest, error) {
	srcs := []string{a.Playbook}
	pbDir := filepath.Dir(a.Playbook)
	for _, d := range playbookDirs {
		if fi, err := os.Stat(filepath.Join(contextDir, pbDir, d)); err == nil && fi.IsDir() {
			srcs = append(srcs, filepath.Join(pbDir, d))
		}
	}
	srcs = append(srcs, a.Roles...)
	srcs = append(srcs, a.Collections...)
	if a.Requirements != "" {
		srcs = append(srcs, a.Requirements)
		local, err := requirementFiles(contextDir, a.Requirements)
		if err != nil {
			return nil, err
		}
		srcs = append(srcs, local...)
	}
	var out []FileDigest
	seen := map[string]bool{}
	for _, s := range srcs {
		fds, err := CopyKeyFiles(contextDir, []recipes.Copy{{Src: s, Dst: "/"}})
		if err != nil {
			return nil, fmt.Errorf("ansible: %w", err)
		}
		for _, f := range fds {
			if !seen[f.Path] {
				seen[f.Path] = true
				out = append(out, f)
			}
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Path < out[j].Path })
	return out, nil
}

// requirementFiles lists the local collection and role tarballs and
// directories a Galaxy requirements file names, relative to the build
// context. A role from anywhere else is refused: roles are installed
// offline (ansible-galaxy has no --offline for them, so layerimg checks).
func requirementFiles(contextDir, req string) ([]string, error) {
	data, err := os.ReadFile(filepath.Join(contextDir, req))
	if err != nil {
		return nil, fmt.Errorf("ansible requirements: %w", err)
	}
	var doc struct {
		Collections []yaml.Node `yaml:"collections"`
		Roles       []yaml.Node `yaml:"roles"`
	}
	if err := yaml.Unmarshal(data, &doc); err != nil {
		// The old form: a bare list of roles.
		var roles []yaml.Node
		if yaml.Unmarshal(data, &roles) != nil {
			return nil, fmt.Errorf("ansible requirements %s: %w", req, err)
		}
		doc.Roles = roles
	}
	var out []string
	for _, n := range doc.Roles {
		var r struct{ Name, Src string }
		if n.Kind == yaml.ScalarNode {
			r.Src = n.Value
		} else if err := n.Decode(&r); err != nil {
			return nil, fmt.Errorf("ansible requirements %s: %w", req, err)
		}
		local := strings.TrimPrefix(r.Src, "file://")
		p := filepath.Join(filepath.Dir(req), local)
		if local == "" || strings.Contains(local, "://") || filepath.IsAbs(local) {
			return nil, fmt.Errorf("ansible requirements %s: role %q comes from %q: roles are installed offline, from a tarball or directory in the build context", req, cmp.Or(r.Name, r.Src), r.Src)
		}
		if _, err := os.Stat(filepath.Join(contextDir, p)); err != nil {
			return nil, fmt.Errorf("ansible requirements %s: role %q: %w", req, cmp.Or(r.Name, r.Src), err)
		}
		out = append(out, p)
	}
	for _, n := range doc.Collections {
		var c struct {
			Name, Source, Type string
		}
		if n.Kind == yaml.ScalarNode {
			c.Name = n.Value
		} else if err := n.Decode(&c); err != nil {
			return nil, fmt.Errorf("ansible requirements %s: %w", req, err)
		}
		for _, s := range []string{c.Name, c.Source} {
			if s == "" || strings.Contains(s, "://") || filepath.IsAbs(s) {
				continue
			}
			p := filepath.Join(filepath.Dir(req), s)
			if _, err := os.Stat(filepath.Join(contextDir, p)); err == nil {
				out = append(out, p)
			}
		}
	}
	return out, nil
}

// AnsibleOptions describe one Ansible step. Paths are the host's.
type AnsibleOptions struct {
	Run          RunOptions // the sandbox: env, network, secrets, epoch, output
	Playbook     string
	Roles        []string
	Collections  []string
	Requirements string
	ExtraVars    map[string]string
	Tags         []string
	SkipTags     []string
	// CheckIdempotent runs the playbook a second time on its own result and
	// fails the step if a task reports changed.
	CheckIdempotent bool
}

// AnsibleStats is a playbook run's recap, for the build manifest.
type AnsibleStats struct {
	OK           int      `json:"ok"`
	Changed      int      `json:"changed"`
	Skipped      int      `json:"skipped"`
	Failed       int      `json:"failed"`
	Unreachable  int      `json:"unreachable"`
	Rescued      int      `json:"rescued"`
	Ignored      int      `json:"ignored"`
	ChangedTasks []string `json:"changed_tasks,omitempty"`
	// IdempotentChecked says the second run changed nothing.
	IdempotentChecked bool `json:"idempotent_checked,omitempty"`
}

// NotIdempotentError is a second run of a step that changed something.
type NotIdempotentError struct {
	Tasks []string // the tasks that reported changed (Ansible)
	Paths []string // the paths that differ (run steps)
}

func (e *NotIdempotentError) Error() string {
	if len(e.Tasks) > 0 {
		return fmt.Sprintf("not idempotent: a second run of the playbook changed %d task(s): %s", len(e.Tasks), strings.Join(e.Tasks, "; "))
	}
	return fmt.Sprintf("not idempotent: a second run of the step changed %d path(s): %s", len(e.Paths), list(e.Paths))
}

// AnsibleStep runs a playbook with the host's ansible-playbook against a
// sandbox over lowers (the same one a run step gets: namespaces, overlay,
// network policy and secrets) and stores the sandbox's changes as a layer.
func AnsibleStep(ctx context.Context, c *Cache, lowers []string, comp Compression, o AnsibleOptions) (Descriptor, *AnsibleStats, error) {
	tmp, err := os.MkdirTemp(c.TempDir(), "ansible-")
	if err != nil {
		return Descriptor{}, nil, err
	}
	defer os.RemoveAll(tmp)
	// The agent's socket lives in a short private directory of its own: a
	// unix socket's path has at most 107 bytes, which a deep cache
	// directory would exceed. Only its owner may connect: whoever can run
	// commands in the sandbox as its root.
	sockDir, err := os.MkdirTemp("", "layerimg-agent-")
	if err != nil {
		return Descriptor{}, nil, err
	}
	defer os.RemoveAll(sockDir)
	a := &ansibleRun{o: o, tmp: tmp, sockDir: sockDir}
	if err := a.setup(); err != nil {
		return Descriptor{}, nil, fmt.Errorf("preparing ansible: %w", err)
	}
	if o.Requirements != "" {
		if err := a.galaxy(ctx); err != nil {
			return Descriptor{}, nil, err
		}
	}
	first, err := a.session(ctx, c, lowers, 1)
	defer os.RemoveAll(first.scratch)
	if err != nil {
		return Descriptor{}, first.stats, err
	}
	if o.CheckIdempotent {
		// The second run works on a sandbox of its own, over the first
		// one's changes: the layer is the first run's, whatever the second
		// leaves behind (apt lists, caches).
		if o.Run.Out != nil {
			fmt.Fprintln(o.Run.Out, "layerimg: checking idempotency: running the playbook a second time, on its own result")
		}
		again, err := a.session(ctx, c, append(lowers[:len(lowers):len(lowers)], first.upper), 2)
		os.RemoveAll(again.scratch)
		if err != nil {
			return Descriptor{}, first.stats, fmt.Errorf("idempotency check (second run): %w", err)
		}
		if again.stats.Changed > 0 {
			return Descriptor{}, first.stats, &NotIdempotentError{Tasks: again.stats.ChangedTasks}
		}
		first.stats.IdempotentChecked = true
	}
	d, err := writeUpper(ctx, c, first.upper, comp, o.Run)
	return d, first.stats, err
}

// ansibleSession is one playbook run in a sandbox of its own. The caller
// removes scratch, which holds upper.
type ansibleSession struct {
	scratch, upper string
	stats          *AnsibleStats
}

// session starts a sandbox over lowers serving the agent, runs the
// playbook against it (run 1, or 2 for the idempotency check), and stops
// it. Its upper dir is left without Ansible's temporary files.
func (a *ansibleRun) session(ctx context.Context, c *Cache, lowers []string, run int) (ansibleSession, error) {
	a.socket = filepath.Join(a.sockDir, fmt.Sprintf("agent-%d.sock", run))
	if len(a.socket) > 107 {
		return ansibleSession{}, fmt.Errorf("the agent's socket path %s is longer than a unix socket allows: set TMPDIR to a shorter directory", a.socket)
	}
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: a.socket, Net: "unix"})
	if err != nil {
		return ansibleSession{}, fmt.Errorf("agent socket: %w", err)
	}
	ln.SetUnlinkOnClose(false)
	lf, err := ln.File()
	ln.Close()
	if err != nil {
		return ansibleSession{}, fmt.Errorf("agent socket: %w", err)
	}
	defer lf.Close()
	ro := a.o.Run
	ro.Agent = lf
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	// The playbook stops when the sandbox does: a sandbox that died would
	// leave its connections waiting on a socket no one accepts on.
	pctx, pcancel := context.WithCancel(ctx)
	defer pcancel()
	type result struct {
		scratch, upper string
		err            error
	}
	done := make(chan result, 1)
	go func() {
		scratch, upper, err := sandbox(sctx, c, lowers, ro)
		pcancel()
		done <- result{scratch, upper, err}
	}()
	stats, playErr := a.play(pctx, run)
	// The agent exits when told; one that cannot be told is killed.
	if _, _, err := rootfs.AgentDo(pctx, a.socket, rootfs.AgentRequest{Op: "exit"}, nil); err != nil {
		cancel()
	}
	res := <-done
	s := ansibleSession{scratch: res.scratch, upper: res.upper, stats: stats}
	switch {
	case ctx.Err() != nil:
		return s, ctx.Err()
	case res.err != nil:
		return s, fmt.Errorf("sandbox: %w", res.err)
	case playErr != nil:
		return s, playErr
	}
	return s, removeRemoteTmp(res.upper)
}

// removeRemoteTmp takes Ansible's working directory out of the upper dir,
// and /tmp with it when nothing else of the step is there.
func removeRemoteTmp(upper string) error {
	if err := os.RemoveAll(filepath.Join(upper, ansibleRemoteTmp)); err != nil {
		return fmt.Errorf("removing ansible's temporary files: %w", err)
	}
	tmp := filepath.Join(upper, filepath.Dir(ansibleRemoteTmp))
	if ents, err := os.ReadDir(tmp); err == nil && len(ents) == 0 {
		if opaque, _ := xattrOpaque(tmp); !opaque {
			_ = os.Remove(tmp)
		}
	}
	return nil
}

// xattrOpaque reports whether an overlayfs upper dir hides the lower one.
func xattrOpaque(dir string) (bool, error) {
	buf := make([]byte, 8)
	n, err := unix.Lgetxattr(dir, "trusted.overlay.opaque", buf)
	if err != nil {
		return false, err
	}
	return string(buf[:n]) == "y", nil
}

// ansibleRun is one Ansible step's host side: its temporary directory
// (plugins, config, variables, stats) and the agent's socket.
type ansibleRun struct {
	o                    AnsibleOptions
	tmp, sockDir, socket string
	secretEnv            []string // NAME=VALUE for ansible-playbook only
	secrets              [][]byte
	noPython             bool
}

// setup writes the plugins, the configuration and the variables file.
func (a *ansibleRun) setup() error {
	err := fs.WalkDir(ansiblePlugins, "ansible", func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		dst := filepath.Join(a.tmp, "plugins", strings.TrimPrefix(p, "ansible"))
		if d.IsDir() {
			return os.MkdirAll(dst, 0o700)
		}
		data, err := ansiblePlugins.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(dst, data, 0o600)
	})
	if err != nil {
		return err
	}
	// ANSIBLE_CONFIG names this file so that no ansible.cfg of the host or
	// of the working directory changes what a cached step did.
	cfg := "[defaults]\n" +
		"callbacks_enabled = layerimg_stats\n" +
		"connection_plugins = " + filepath.Join(a.tmp, "plugins", "connection") + "\n" +
		"callback_plugins = " + filepath.Join(a.tmp, "plugins", "callback") + "\n" +
		"remote_tmp = " + ansibleRemoteTmp + "\n" +
		"local_tmp = " + filepath.Join(a.tmp, "local") + "\n" +
		"retry_files_enabled = False\n" +
		"interpreter_python = auto_silent\n" +
		"nocolor = True\n" +
		"[connection]\npipelining = True\n"
	if err := os.WriteFile(filepath.Join(a.tmp, "ansible.cfg"), []byte(cfg), 0o600); err != nil {
		return err
	}
	vars := map[string]any{}
	for k, v := range a.o.ExtraVars {
		vars[k] = v
	}
	// Secrets reach the playbook as layerimg_secrets.ID too, read from
	// ansible-playbook's environment when a task uses them: the variables
	// file holds only the lookup, so no secret is ever on a command line
	// or a disk, where a killed build would leave it.
	sec := map[string]string{}
	for i, s := range a.o.Run.Secrets {
		data, err := os.ReadFile(s.Src)
		if err != nil {
			return fmt.Errorf("secret %s: %w", s.ID, err)
		}
		data = bytes.TrimSpace(data)
		name := fmt.Sprintf("LAYERIMG_SECRET_%d", i)
		sec[s.ID] = "{{ lookup('env', '" + name + "') }}"
		a.secretEnv = append(a.secretEnv, name+"="+string(data))
		a.secrets = append(a.secrets, data)
	}
	if len(sec) > 0 {
		vars["layerimg_secrets"] = sec
	}
	data, err := json.Marshal(vars)
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(a.tmp, "vars.json"), data, 0o600)
}

// play checks the image for Python (to explain a failure) and runs the
// playbook.
func (a *ansibleRun) play(ctx context.Context, run int) (*AnsibleStats, error) {
	_, out, err := rootfs.AgentDo(ctx, a.socket, rootfs.AgentRequest{Op: "exec",
		Argv: []string{"/bin/sh", "-c", "command -v python3 || command -v python || echo none"}}, nil)
	if err != nil {
		return nil, fmt.Errorf("starting the sandbox: %w", err)
	}
	a.noPython = strings.TrimSpace(string(out)) == "none"
	return a.playbook(ctx, run)
}

// galaxy installs the requirements' collections and roles from local
// tarballs or directories into the step's temporary directory, offline
// (requirementFiles has refused roles from anywhere else).
func (a *ansibleRun) galaxy(ctx context.Context) error {
	for _, args := range [][]string{
		{"collection", "install", "--offline", "-r", a.o.Requirements, "-p", filepath.Join(a.tmp, "collections")},
		{"role", "install", "-r", a.o.Requirements, "-p", filepath.Join(a.tmp, "roles")},
	} {
		cmd := exec.CommandContext(ctx, "ansible-galaxy", args...)
		cmd.Dir = filepath.Dir(a.o.Requirements)
		cmd.Env = a.env(0)
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Run(); err != nil {
			return fmt.Errorf("installing the requirements %s (offline: local tarballs and directories only): %w\n%s", a.o.Requirements, err, strings.TrimSpace(out.String()))
		}
	}
	return nil
}

func (a *ansibleRun) env(run int) []string {
	env := []string{
		"PATH=" + os.Getenv("PATH"),
		"HOME=" + a.tmp,
		"LANG=C.UTF-8", "LC_ALL=C.UTF-8", // ansible-core refuses other encodings
		"ANSIBLE_CONFIG=" + filepath.Join(a.tmp, "ansible.cfg"),
		"LAYERIMG_AGENT_SOCKET=" + a.socket,
		fmt.Sprintf("LAYERIMG_ANSIBLE_STATS=%s/stats-%d.json", a.tmp, run),
		"PYTHONDONTWRITEBYTECODE=1",
	}
	abs := func(ps []string) string {
		var out []string
		for _, p := range ps {
			if q, err := filepath.Abs(p); err == nil {
				out = append(out, q)
			}
		}
		return strings.Join(out, ":")
	}
	roles := a.o.Roles
	if a.o.Requirements != "" {
		roles = append([]string{filepath.Join(a.tmp, "roles")}, roles...)
	}
	if len(roles) > 0 {
		env = append(env, "ANSIBLE_ROLES_PATH="+abs(roles))
	}
	cols := append([]string{filepath.Join(a.tmp, "collections")}, a.o.Collections...)
	env = append(env, "ANSIBLE_COLLECTIONS_PATH="+abs(cols))
	return env
}

// playbook runs ansible-playbook once (run 1, or 2 for the idempotency
// check) and reads its recap.
func (a *ansibleRun) playbook(ctx context.Context, run int) (*AnsibleStats, error) {
	pb, err := filepath.Abs(a.o.Playbook)
	if err != nil {
		return nil, err
	}
	args := []string{"-i", "layerimg,", "-c", "layerimg", "-e", "@" + filepath.Join(a.tmp, "vars.json")}
	if len(a.o.Tags) > 0 {
		args = append(args, "--tags", strings.Join(a.o.Tags, ","))
	}
	if len(a.o.SkipTags) > 0 {
		args = append(args, "--skip-tags", strings.Join(a.o.SkipTags, ","))
	}
	cmd := exec.CommandContext(ctx, "ansible-playbook", append(args, pb)...)
	cmd.Dir = filepath.Dir(pb)
	cmd.Env = append(a.env(run), a.secretEnv...)
	out := a.o.Run.Out
	if out == nil {
		out = io.Discard
	}
	red := &redactor{w: out, secrets: a.secrets}
	tail := &tailWriter{max: 15}
	cmd.Stdout = io.MultiWriter(red, tail)
	cmd.Stderr = cmd.Stdout
	runErr := cmd.Run()
	stats, statsErr := a.readStats(run)
	if ctx.Err() != nil {
		return stats, ctx.Err()
	}
	if runErr != nil {
		msg := fmt.Sprintf("ansible-playbook: %v", runErr)
		if len(tail.lines) > 0 {
			msg += "; last output:\n    " + strings.Join(tail.redacted(red), "\n    ")
		}
		if a.noPython {
			msg += "\nthe image has no Python 3, which Ansible's modules need: install it first (a run step, or a raw task with gather_facts: false)"
		}
		return stats, errors.New(msg)
	}
	if statsErr != nil {
		return nil, statsErr
	}
	return stats, nil
}

func (a *ansibleRun) readStats(run int) (*AnsibleStats, error) {
	data, err := os.ReadFile(fmt.Sprintf("%s/stats-%d.json", a.tmp, run))
	if err != nil {
		return nil, fmt.Errorf("reading the playbook's recap: %w", err)
	}
	var raw struct {
		ChangedTasks []string                  `json:"changed_tasks"`
		Hosts        map[string]map[string]int `json:"hosts"`
	}
	if err := json.Unmarshal(data, &raw); err != nil {
		return nil, fmt.Errorf("reading the playbook's recap: %w", err)
	}
	s := &AnsibleStats{ChangedTasks: raw.ChangedTasks}
	for _, h := range raw.Hosts {
		s.OK += h["ok"]
		s.Changed += h["changed"]
		s.Skipped += h["skipped"]
		s.Failed += h["failures"]
		s.Unreachable += h["unreachable"]
		s.Rescued += h["rescued"]
		s.Ignored += h["ignored"]
	}
	return s, nil
}

// tailWriter keeps the last lines written to it.
type tailWriter struct {
	max     int
	lines   []string
	partial []byte
}

func (t *tailWriter) Write(p []byte) (int, error) {
	t.partial = append(t.partial, p...)
	for {
		i := bytes.IndexByte(t.partial, '\n')
		if i < 0 {
			break
		}
		if line := strings.TrimSpace(string(t.partial[:i])); line != "" {
			t.lines = append(t.lines, line)
			if len(t.lines) > t.max {
				t.lines = t.lines[1:]
			}
		}
		t.partial = t.partial[i+1:]
	}
	return len(p), nil
}

func (t *tailWriter) redacted(r *redactor) []string {
	out := make([]string, len(t.lines))
	for i, l := range t.lines {
		out[i] = string(r.redact([]byte(l)))
	}
	return out
}
