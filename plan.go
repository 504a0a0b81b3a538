package layerimg

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/layerimg/layerimg/disk/sparse"
	"github.com/layerimg/layerimg/internal/progress"
	"github.com/layerimg/layerimg/layers"
	"github.com/layerimg/layerimg/recipes"
)

// StepPlan is what a build will do, or did, for one step.
type StepPlan struct {
	Index    int           `json:"index"`
	Name     string        `json:"name"`
	Kind     string        `json:"kind"`
	Key      string        `json:"key,omitempty"`
	Status   string        `json:"status"` // HIT, MISS, or - for env steps
	Why      string        `json:"why,omitempty"`
	Layer    string        `json:"layer,omitempty"`
	DiffID   string        `json:"diffID,omitempty"`
	Size     int64         `json:"size,omitempty"`
	Duration time.Duration `json:"duration_ns,omitempty"`
	// CheckIdempotent: the step runs twice and fails if the second run
	// changes anything.
	CheckIdempotent bool `json:"check_idempotent,omitempty"`
	// Ansible is an Ansible step's recap (its first run), when it ran.
	Ansible *layers.AnsibleStats `json:"ansible,omitempty"`
	// Mode is how the step's layer was made: "root", or "rootless" (in a
	// user namespace). A hit reports the mode of the build that made it;
	// empty for entries made before modes were recorded.
	Mode string `json:"mode,omitempty"`

	// Uncompressed and Files sum up the layer (see LayerStats).
	Uncompressed int64 `json:"uncompressed_size,omitempty"`
	Files        int   `json:"files,omitempty"`
}

const (
	Hit       = "HIT"
	HitRemote = "HIT (remote)"
	Miss      = "MISS"
)

// planner computes keys step by step; Plan and Build share it.
type planner struct {
	r      *recipes.Recipe
	o      *Options
	c      *layers.Cache
	base   *layers.Base
	record map[string]layers.KeyInput
	env    []string
	envIdx map[string]int // env's index by name, once an env step ran
	remote *layers.RemoteCache
	reg    layers.Registry
	// moved says how a registry base by tag changed since the last build
	// recorded ("base debian:bookworm moved: sha256:a -> sha256:b").
	moved string
	// ansible is the host's Ansible version, part of Ansible steps' keys;
	// read once, when the recipe has one.
	ansible string
	// sbom is the build's SBOM digest, for the publishers' tags.
	sbom string
}

func newPlanner(ctx context.Context, r *recipes.Recipe, o *Options, c *layers.Cache, offline bool) (*planner, error) {
	reg := layers.Registry{Insecure: o.InsecureRegistries, Log: o.Log}
	var rc *layers.RemoteCache
	if len(o.CacheFrom) > 0 {
		rc = layers.LoadRemoteCaches(ctx, o.CacheFrom, reg)
	}
	bo := layers.BaseOptions{Remote: rc,
		Platform: r.Platform, InsecureRegistries: o.InsecureRegistries, Compression: o.Compression,
		Epoch: o.Epoch, Logger: o.Log, Offline: offline,
		Dir: r.Dir,
	}
	if r.From.Bootstrap != nil && !offline {
		progress.Emit(ctx, progress.Event{Type: progress.StepStarted, Step: "bootstrap", Kind: "bootstrap",
			Why: "bootstrapping " + r.From.Bootstrap.Suite + " (cached until its suites publish updates)"})
		out := o.stepOutput("bootstrap")
		defer out.Close()
		bo.Log = out
	}
	base, err := layers.ResolveBase(progress.WithStep(ctx, "bootstrap"), c, r.From, bo)
	if err != nil && !errors.Is(err, layers.ErrNotBuilt) {
		return nil, err
	}
	p := &planner{r: r, o: o, c: c, base: base, record: readRecord(c, r.Name, r.Platform), remote: rc, reg: reg}
	if old, ok := p.record[baseRecord]; ok && base.Digest != "" && old.Spec == base.Ref && old.Parent != base.Digest {
		p.moved = fmt.Sprintf("base %s moved: %s -> %s", base.Ref, old.Parent, base.Digest)
		o.Log.Info(p.moved)
	}
	for _, st := range r.Steps {
		if st.Ansible != nil {
			if p.ansible, err = layers.AnsibleVersion(ctx); err != nil {
				return nil, err
			}
			break
		}
	}
	p.env = defaultEnv
	if base.Image != nil {
		cf, err := base.Image.ConfigFile()
		if err != nil {
			return nil, fmt.Errorf("reading config of base %s: %w", base.Ref, err)
		}
		if len(cf.Config.Env) > 0 {
			p.env = mergeEnv(nil, cf.Config.Env)
		}
	}
	return p, nil
}

var defaultEnv = []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOME=/root"}

// setEnv sets each K=V of add in p.env, as mergeEnv does, in time
// proportional to add: copying and scanning the whole environment at each
// env step made planning quadratic in the number of env steps.
func (p *planner) setEnv(add []string) {
	if p.envIdx == nil {
		// A copy of its own (p.env may be defaultEnv), one entry a name.
		p.env = mergeEnv(nil, p.env)
		p.envIdx = make(map[string]int, len(p.env))
		for i, e := range p.env {
			k, _, _ := strings.Cut(e, "=")
			p.envIdx[k] = i
		}
	}
	for _, kv := range add {
		k, _, _ := strings.Cut(kv, "=")
		if i, ok := p.envIdx[k]; ok {
			p.env[i] = kv
		} else {
			p.envIdx[k] = len(p.env)
			p.env = append(p.env, kv)
		}
	}
}

// mergeEnv sets each K=V of add in env, keeping order and replacing by name.
func mergeEnv(env, add []string) []string {
	out := append([]string(nil), env...)
	for _, kv := range add {
		k, _, _ := strings.Cut(kv, "=")
		replaced := false
		for i, e := range out {
			if ek, _, _ := strings.Cut(e, "="); ek == k {
				out[i], replaced = kv, true
			}
		}
		if !replaced {
			out = append(out, kv)
		}
	}
	return out
}

func envList(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	out := make([]string, len(keys))
	for i, k := range keys {
		out[i] = k + "=" + m[k]
	}
	return out
}

// runSpec is what a run step's key covers: never a secret's source or bytes.
type runSpec struct {
	Argv    []string `json:"argv"`
	Env     []string `json:"env"`
	Workdir string   `json:"workdir,omitempty"`
	Network string   `json:"network"`
	Secrets []string `json:"secrets,omitempty"` // id=target
	// Check: see ansibleSpec.Check. Omitted when off, so that the keys of
	// run steps without it stay what they were.
	Check bool `json:"check_idempotent,omitempty"`
}

// ansibleSpec is what an Ansible step's key covers besides its files: the
// expanded extra vars, the sandbox's settings and the host's Ansible
// version; never a secret's source or bytes.
type ansibleSpec struct {
	Playbook     string            `json:"playbook"`
	Roles        []string          `json:"roles,omitempty"`
	Collections  []string          `json:"collections,omitempty"`
	Requirements string            `json:"requirements,omitempty"`
	ExtraVars    map[string]string `json:"extra_vars,omitempty"`
	Tags         []string          `json:"tags,omitempty"`
	SkipTags     []string          `json:"skip_tags,omitempty"`
	Env          []string          `json:"env"`
	Network      string            `json:"network"`
	Secrets      []string          `json:"secrets,omitempty"` // id=target
	Version      string            `json:"ansible_version"`
	// Check is in the key so that turning the check on runs it: a layer
	// cached without it was never checked.
	Check bool `json:"check_idempotent,omitempty"`
}

type copySpec struct {
	Copy []recipes.Copy `json:"copy"`
}

func secretTarget(s recipes.Secret) string {
	if s.Target != "" {
		return s.Target
	}
	return "/run/secrets/" + s.ID
}

// keyInput computes step i's key input given its parent key. It reads the
// build context for copy steps.
func (p *planner) keyInput(st *recipes.Step, parent string) (layers.KeyInput, error) {
	in := layers.KeyInput{Parent: parent, Kind: st.Kind(), Platform: p.r.Platform, Compression: p.o.Compression, Epoch: p.o.Epoch}
	switch st.Kind() {
	case "run":
		rs := runSpec{Argv: st.Run.Args(), Env: stepEnv(p.env, st.Run.ArgEnv, st.Env), Workdir: st.Workdir, Network: st.Network, Check: st.CheckIdempotent}
		if rs.Network == "" {
			rs.Network = "host"
		}
		for _, s := range st.Secrets {
			rs.Secrets = append(rs.Secrets, s.ID+"="+secretTarget(s))
		}
		in.Spec = rs
	case "ansible":
		a := st.Ansible
		as := ansibleSpec{Playbook: a.Playbook, Roles: a.Roles, Collections: a.Collections, Requirements: a.Requirements,
			ExtraVars: a.ExtraVars, Tags: a.Tags, SkipTags: a.SkipTags, Env: stepEnv(p.env, nil, st.Env), Network: st.Network, Version: p.ansible, Check: st.CheckIdempotent}
		if as.Network == "" {
			as.Network = "host"
		}
		for _, s := range st.Secrets {
			as.Secrets = append(as.Secrets, s.ID+"="+secretTarget(s))
		}
		in.Spec = as
		files, err := layers.AnsibleKeyFiles(p.r.Dir, a)
		if err != nil {
			return in, err
		}
		in.Files = files
	case "copy":
		in.Spec = copySpec{Copy: st.Copy}
		files, err := layers.CopyKeyFiles(p.r.Dir, st.Copy)
		if err != nil {
			return in, err
		}
		in.Files = files
	}
	return in, nil
}

func (p *planner) why(name string, in layers.KeyInput) string {
	old, ok := p.record[name]
	if !ok {
		return "no earlier build of this step in this cache"
	}
	if old.Key() == in.Key() {
		return "same inputs as the last build, but its layer is no longer cached (pruned or corrupt)"
	}
	why := in.Why(old)
	if p.moved != "" && in.Parent == p.base.ID {
		why = strings.Replace(why, "an earlier step or the base changed", p.moved, 1)
	}
	return why
}

// baseRecord is the record's entry for a registry base: Spec its reference,
// Parent the digest it resolved to. A step name cannot start with "@".
const baseRecord = "@base"

func stepErr(i int, st *recipes.Step, err error) error {
	return fmt.Errorf("step %d (%s): %w", i+1, st.Name, err)
}

// start opens the cache and resolves the base; the caller closes the cache.
func start(ctx context.Context, r *recipes.Recipe, o *Options, offline bool) (*planner, error) {
	if err := o.defaults(); err != nil {
		return nil, err
	}
	c, err := layers.OpenCache(o.CacheDir, false, o.Log)
	if err != nil {
		return nil, err
	}
	p, err := newPlanner(ctx, r, o, c, offline)
	if err != nil {
		c.Close()
		return nil, err
	}
	return p, nil
}

// step keys step i and looks it up. For an env step it only updates the
// environment and returns no key.
func (p *planner) step(i int, parent string) (StepPlan, layers.KeyInput, *layers.Entry, v1.Layer, error) {
	st := &p.r.Steps[i]
	sp := StepPlan{Index: i + 1, Name: st.Name, Kind: st.Kind(), Status: "-", CheckIdempotent: st.CheckIdempotent}
	if st.Kind() == "env" {
		p.setEnv(envList(st.Env))
		return sp, layers.KeyInput{}, nil, nil, nil
	}
	in, err := p.keyInput(st, parent)
	if err != nil {
		return sp, in, nil, nil, stepErr(i, st, err)
	}
	sp.Key = in.Key()
	e, l, err := p.lookup(sp.Key)
	if err != nil {
		return sp, in, nil, nil, stepErr(i, st, err)
	}
	if e != nil {
		sp.Status = Hit
		if _, remote := l.(interface{ Source() v1.Layer }); remote {
			sp.Status = HitRemote
		}
		sp.Layer, sp.DiffID, sp.Size = e.Layer.Digest.String(), e.Layer.DiffID.String(), e.Layer.Size
	} else {
		sp.Status, sp.Why = Miss, p.why(st.Name, in)
	}
	return sp, in, e, l, nil
}

// lookup finds a key in the local cache, then in the registry caches. A
// registry hit's layer is fetched only when its bytes are needed.
func (p *planner) lookup(key string) (*layers.Entry, v1.Layer, error) {
	e, err := p.c.Lookup(key)
	if err != nil || e != nil {
		if e != nil {
			return e, p.c.Layer(e.Layer), nil
		}
		return nil, nil, err
	}
	e, l := p.remote.Lookup(p.c, key)
	return e, l, nil
}

// Plan says, for each step, its cache key and whether the cache has it,
// without running anything.
func Plan(ctx context.Context, r *recipes.Recipe, o Options) ([]StepPlan, error) {
	p, err := start(ctx, r, &o, true)
	if err != nil {
		return nil, err
	}
	defer p.c.Close()
	var out []StepPlan
	if r.From.Bootstrap != nil {
		sp := StepPlan{Index: 0, Name: "bootstrap", Kind: "bootstrap", Key: p.base.ID, Status: Hit}
		if p.base.Image == nil {
			sp.Status, sp.Why = Miss, p.why("bootstrap", p.base.Input)
		}
		out = append(out, sp)
	}
	if len(out) == 1 && p.base.Image != nil {
		if ls, err := p.base.Image.Layers(); err == nil {
			p.withStats(ctx, &out[0], ls...)
		}
	}
	parent := p.base.ID
	for i := range r.Steps {
		sp, _, _, l, err := p.step(i, parent)
		if err != nil {
			return nil, err
		}
		if sp.Key != "" {
			parent = sp.Key
			p.withStats(ctx, &sp, l)
		}
		out = append(out, sp)
	}
	return out, nil
}

// runEnv is the environment a command runs with: stepEnv's, and
// SOURCE_DATE_EPOCH, which tools such as mkinitramfs honour to make
// reproducible output. The epoch is already part of every key.
func (p *planner) runEnv(args []string, step map[string]string) []string {
	return mergeEnv(stepEnv(p.env, args, step), []string{fmt.Sprintf("SOURCE_DATE_EPOCH=%d", p.o.Epoch)})
}

// stepEnv layers a command's environment: the image's, then the args its
// script names (recipes.Command.ArgEnv), then the step's own env, which
// wins as Docker's ENV wins over ARG. A step that names no arg keeps the
// environment, and so the key, it had before args became variables.
func stepEnv(image, args []string, step map[string]string) []string {
	return mergeEnv(mergeEnv(image, args), envList(step))
}

func short(d string) string {
	if i := strings.IndexByte(d, ':'); i >= 0 && len(d) > i+13 {
		return d[i+1 : i+13]
	}
	return d
}

// recordPath is where the last build of recipe name for platform left
// every step's key input, for plan's explanations and outdated: one file
// per platform, so that a multi-platform build's platforms do not
// overwrite each other's.
func recordPath(c *layers.Cache, name, platform string) string {
	return filepath.Join(c.Dir(), "records", RecordName(name, platform)+".json")
}

// RecordName names the record of recipe name's builds for platform.
func RecordName(name, platform string) string {
	return name + "@" + PlatformDir(platform)
}

func readRecord(c *layers.Cache, name, platform string) map[string]layers.KeyInput {
	data, err := os.ReadFile(recordPath(c, name, platform))
	if err != nil {
		return nil
	}
	var m map[string]layers.KeyInput
	if json.Unmarshal(data, &m) != nil {
		return nil
	}
	return m
}

func writeRecord(c *layers.Cache, name, platform string, m map[string]layers.KeyInput) error {
	data, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return err
	}
	return writeFile(recordPath(c, name, platform), data)
}

// writeFile writes data to path atomically (temp file, then rename).
func writeFile(path string, data []byte) error {
	return sparse.WriteAtomic(path, func(f *os.File) error {
		_, err := f.Write(data)
		return err
	})
}
