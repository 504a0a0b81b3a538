package layerimg

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/layerimg/layerimg/export/azure"
	"github.com/layerimg/layerimg/export/sign"
	"github.com/layerimg/layerimg/internal/progress"
	"github.com/layerimg/layerimg/layers"
	"github.com/layerimg/layerimg/recipes"
)

// Options control a plan or a build.
type Options struct {
	CacheDir           string
	InsecureRegistries []string
	Compression        layers.Compression
	// Epoch is SOURCE_DATE_EPOCH: the time stamped on everything made.
	Epoch int64
	Log   *slog.Logger
	// Output receives the steps' own output, each line prefixed with the
	// step's name, when Progress is nil.
	Output io.Writer
	// Progress receives the build's events: steps and stages started and
	// finished, each line of the steps' output, and the bytes of pulls,
	// pushes, layer compression and uploads. Nil means plain log lines
	// through Log, and the output on Output.
	Progress progress.Sink

	DiskDir   string   // write disks here (build -o)
	Formats   []string // disk formats; default: the recipe's outputs, else raw
	UniqueIDs bool     // random disk ids instead of ones derived from the image
	// DiskDigests computes each disk's sha256 (for the manifest). Holes are
	// hashed without reading them, but a large disk still costs seconds.
	DiskDigests bool

	CacheFrom    []string // registry caches to consult, in order
	CacheTo      string   // registry cache to write
	Push         string   // push the image here
	PushDisk     string   // push the disk here as a KubeVirt containerDisk
	DiskArtifact string   // push the disk files here as an OCI artifact
	Publish      []string // cloud targets: aws, azure, vsphere
	// AzureConnect, when set, adjusts the Azure publisher's connection
	// (credential, ARM endpoint, HTTP client) for programs that embed
	// layerimg and for tests; the CLI leaves it to azidentity.
	AzureConnect func(*azure.Config)

	// Provenance: write the SLSA provenance statement here. Signer: sign
	// what the build pushes and writes (see attest.go).
	Provenance string
	Signer     sign.Signer

	OCILayout string // write the image here as an OCI layout
	RootfsTar string // write the flattened rootfs here
	Manifest  string // write the build manifest (JSON) here
	SBOM      string // write the image's SPDX 2.3 JSON SBOM here

	// pushImage, when set, pushes the finished image in place of Push:
	// BuildPlatforms pushes each platform's by digest for its index.
	// It returns the reference it pushed to, for the SBOM and signatures.
	pushImage func(context.Context, layers.Registry, v1.Image) (string, error)
}

func (o *Options) defaults() error {
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	if o.Output == nil {
		o.Output = io.Discard
	}
	if o.Progress == nil {
		o.Progress = progress.NewPlain(o.Log.Handler(), o.Output)
	}
	if o.Compression == "" {
		o.Compression = layers.Gzip
	}
	if o.CacheDir == "" {
		d, err := layers.DefaultCacheDir()
		if err != nil {
			return err
		}
		o.CacheDir = d
	}
	return nil
}

// EpochFromEnv reads SOURCE_DATE_EPOCH; unset means 0, so that builds are
// reproducible by default.
func EpochFromEnv() (int64, error) {
	s := os.Getenv("SOURCE_DATE_EPOCH")
	if s == "" {
		return 0, nil
	}
	var e int64
	if _, err := fmt.Sscanf(s, "%d", &e); err != nil || e < 0 {
		return 0, fmt.Errorf("SOURCE_DATE_EPOCH=%q is not a number of seconds", s)
	}
	return e, nil
}

// Result is the build manifest.
type Result struct {
	Recipe   string      `json:"recipe"`
	Platform string      `json:"platform"`
	Base     BaseInfo    `json:"base"`
	Steps    []StepPlan  `json:"steps"`
	Image    string      `json:"image_digest"`
	Config   string      `json:"config_digest"`
	Executed int         `json:"steps_executed"`
	Disk     *DiskResult `json:"disk,omitempty"`
	Pulled   int64       `json:"bytes_pulled,omitempty"`
	// Published holds each cloud target's resource ids.
	Published map[string]any `json:"published,omitempty"`
	// DiskArtifactDigest is the manifest --disk-artifact pushed.
	DiskArtifactDigest string `json:"disk_artifact_digest,omitempty"`
	// Attested is the provenance written and the signatures made.
	Attested *Attested `json:"attested,omitempty"`
	// SBOM is the SPDX SBOM written with --sbom.
	SBOM *SBOMInfo `json:"sbom,omitempty"`
}

// BaseInfo records the base a build used.
type BaseInfo struct {
	Ref    string `json:"ref"`
	Digest string `json:"digest,omitempty"`
	Key    string `json:"key,omitempty"`
	// Mode is how a bootstrap base was made: "root" or "rootless".
	Mode string `json:"mode,omitempty"`
	// Mirrors is a bootstrap base's mirror state: each suite's InRelease
	// digest, as its key covers it (none for a snapshot).
	Mirrors []layers.MirrorState `json:"mirrors,omitempty"`
}

// Build runs the recipe: cached steps are reused, the rest run in the
// sandbox, tests run against the result, and the outputs are written.
//
// It reports its progress to o.Progress, stage by stage: base, steps,
// tests, disk, outputs, publish.
func Build(ctx context.Context, r *recipes.Recipe, o Options) (*Result, error) {
	if err := o.defaults(); err != nil {
		return nil, err
	}
	ctx = progress.WithSink(ctx, o.Progress)
	began := time.Now()
	end := stage(ctx, "base")
	p, err := start(ctx, r, &o, false)
	if err != nil {
		return nil, err
	}
	defer p.c.Close()
	b, err := newBuild(ctx, p)
	if err != nil {
		return nil, err
	}
	end()
	end = stage(ctx, "steps")
	if err := b.runSteps(ctx); err != nil {
		return nil, err
	}
	end()
	if err := b.runTests(ctx); err != nil {
		return nil, err
	}
	img, err := assembleImage(p.base.Image, b.stack[b.nBase:], r, p.env, b.workdir, b.epoch)
	if err != nil {
		return nil, err
	}
	if img, err = b.makeDisks(ctx, img); err != nil {
		return nil, err
	}
	end = stage(ctx, "outputs")
	if err := b.writeOutputs(ctx, img); err != nil {
		return nil, err
	}
	if err := b.writeSBOM(ctx, img); err != nil {
		return nil, err
	}
	end()
	if o.CacheTo != "" || o.Push != "" || o.PushDisk != "" || o.DiskArtifact != "" || len(o.Publish) > 0 {
		end = stage(ctx, "publish")
	} else {
		end = func() {}
	}
	if err := p.publish(ctx, img, b.res, b.exported, b.exportedLayers); err != nil {
		return nil, err
	}
	if o.pushImage != nil {
		if b.pushedImage, err = o.pushImage(ctx, p.reg, img); err != nil {
			return nil, err
		}
	}
	end()
	if err := b.attachSBOM(ctx); err != nil {
		return nil, err
	}
	if err := b.attest(ctx, began); err != nil {
		return nil, err
	}
	b.res.Pulled = p.remote.Pulled()
	if err := writeManifest(o.Manifest, b.res); err != nil {
		return nil, err
	}
	return b.res, nil
}

// buildRun is one run of Build: what each stage hands to the next.
type buildRun struct {
	*planner
	res    *Result
	epoch  time.Time
	stack  []v1.Layer // the base's layers, then each step's
	nBase  int        // how many of stack are the base's
	names  []string   // what errors call each layer of stack
	lowers []string   // unpacked dirs of stack, filled on demand
	// record is every step's key input, for plan's explanations.
	record  map[string]layers.KeyInput
	workdir string
	// pushedImage is where a multi-platform build pushed this platform's
	// image (by digest; the index takes the tag).
	pushedImage string
	// What --cache-to exports: every entry this build used or made.
	exported       []layers.Entry
	exportedLayers []v1.Layer
}

func newBuild(ctx context.Context, p *planner) (*buildRun, error) {
	r, o := p.r, p.o
	b := &buildRun{planner: p, epoch: time.Unix(o.Epoch, 0).UTC(), record: map[string]layers.KeyInput{},
		res: &Result{Recipe: r.Name, Platform: r.Platform, Base: BaseInfo{Ref: p.base.Ref, Digest: p.base.Digest}}}
	if r.From.Bootstrap != nil {
		b.res.Base.Key, b.res.Base.Mirrors = p.base.ID, p.base.Input.Mirrors
		status := Hit
		if p.base.Bootstrapped {
			status = Miss
			b.res.Executed++
		}
		progress.Emit(ctx, progress.Event{Type: progress.StepFinished, Step: "bootstrap", Kind: "bootstrap", Status: status, Key: short(p.base.ID)})
		b.record["bootstrap"] = p.base.Input
	}
	if p.base.Digest != "" {
		b.record[baseRecord] = layers.KeyInput{Kind: "base", Spec: p.base.Ref, Parent: p.base.Digest}
	}
	baseLayers, err := p.base.Image.Layers()
	if err != nil {
		return nil, fmt.Errorf("base %s: %w", p.base.Ref, err)
	}
	b.stack, b.nBase = append(b.stack, baseLayers...), len(baseLayers)
	for i := range baseLayers {
		b.names = append(b.names, fmt.Sprintf("base %s layer %d of %d", p.base.Ref, i+1, len(baseLayers)))
	}
	if p.base.Entry != nil {
		b.res.Base.Mode = p.base.Entry.Mode
		b.exported, b.exportedLayers = append(b.exported, *p.base.Entry), append(b.exportedLayers, p.base.Layer)
	}
	return b, nil
}

// unpack unpacks the layers of the stack not unpacked yet and returns the
// dirs of all of them, for a sandbox's overlayfs.
func (b *buildRun) unpack(ctx context.Context) ([]string, error) {
	for i := len(b.lowers); i < len(b.stack); i++ {
		l := b.stack[i]
		diffID, err := l.DiffID()
		if err != nil {
			return nil, fmt.Errorf("%s: %w", b.names[i], err)
		}
		dir, err := b.c.Unpacked(ctx, diffID, b.names[i]+" ("+short(diffID.String())+")", metered(ctx, "unpacking "+b.names[i], l.Uncompressed))
		if err != nil {
			return nil, err
		}
		b.lowers = append(b.lowers, dir)
	}
	return b.lowers, nil
}

// runSteps runs or reuses every step, in order, and records their inputs.
func (b *buildRun) runSteps(ctx context.Context) error {
	parent := b.base.ID
	for i := range b.r.Steps {
		sp, err := b.runStep(ctx, i, parent)
		if err != nil {
			return err
		}
		if sp.Key != "" {
			parent = sp.Key
		}
		b.res.Steps = append(b.res.Steps, sp)
	}
	if err := writeRecord(b.c, b.r.Name, b.r.Platform, b.record); err != nil {
		b.o.Log.Warn("could not record this build's inputs for plan's explanations", "err", err)
	}
	return nil
}

// runStep looks step i up and runs it on a miss; its layer joins the stack.
func (b *buildRun) runStep(ctx context.Context, i int, parent string) (StepPlan, error) {
	st := &b.r.Steps[i]
	began := time.Now()
	sp, in, e, layer, err := b.step(i, parent)
	if err != nil {
		b.stepFailed(ctx, sp, err)
		return sp, err
	}
	if sp.Key == "" { // an env step
		return sp, nil
	}
	if st.Workdir != "" {
		b.workdir = st.Workdir
	}
	b.record[st.Name] = in
	if e == nil {
		progress.Emit(ctx, b.stepEvent(progress.StepStarted, sp))
		desc, stats, err := b.execute(progress.WithStep(ctx, st.Name), st)
		sp.Ansible = stats
		if err == nil {
			e = &layers.Entry{Key: sp.Key, Step: st.Name, Input: in, Layer: desc, Created: time.Now().UTC(), Mode: b.c.Mode()}
			if err = b.c.Store(*e); err != nil {
				err = fmt.Errorf("storing in cache: %w", err)
			}
		}
		if err != nil {
			sp.Duration = time.Since(began)
			b.stepFailed(ctx, sp, err)
			return sp, stepErr(i, st, err)
		}
		b.res.Executed++
		sp.Layer, sp.DiffID, sp.Size = e.Layer.Digest.String(), e.Layer.DiffID.String(), e.Layer.Size
		layer = b.c.Layer(e.Layer)
	}
	sp.Mode = e.Mode
	b.withStats(ctx, &sp, layer)
	b.exported, b.exportedLayers = append(b.exported, *e), append(b.exportedLayers, layer)
	sp.Duration = time.Since(began)
	progress.Emit(ctx, b.stepEvent(progress.StepFinished, sp))
	b.stack = append(b.stack, layer)
	b.names = append(b.names, fmt.Sprintf("step %d (%s)", i+1, st.Name))
	return sp, nil
}

// runTests runs the recipe's command tests against the built layers; boot
// tests run once the disk is made.
func (b *buildRun) runTests(ctx context.Context) error {
	if !hasCommandTests(b.r) {
		return nil
	}
	defer stage(ctx, "tests")()
	for i, t := range b.r.Tests {
		if t.Boot != nil {
			continue
		}
		if err := b.checkEmulation(); err != nil {
			return fmt.Errorf("test %d (%s): %w", i+1, t.Name, err)
		}
		lw, err := b.unpack(ctx)
		if err != nil {
			return err
		}
		if err := b.runTest(ctx, lw, i, t); err != nil {
			return err
		}
	}
	return nil
}

// runTest runs command test i, reported as a step named "test NAME".
func (b *buildRun) runTest(ctx context.Context, lowers []string, i int, t recipes.Test) error {
	name := "test " + t.Name
	began := time.Now()
	progress.Emit(ctx, progress.Event{Type: progress.StepStarted, Step: name, Kind: "test"})
	out := b.o.stepOutput(name)
	err := layers.RunTest(progress.WithStep(ctx, name), b.c, lowers, layers.RunOptions{Argv: t.Run.Args(), Env: b.runEnv(t.Run.ArgEnv, nil), Network: "none", Epoch: b.epoch, Out: out})
	out.Close()
	done := progress.Event{Type: progress.StepFinished, Step: name, Kind: "test", Status: "PASS", Elapsed: time.Since(began)}
	if err != nil {
		err = fmt.Errorf("test %d (%s) failed: %w", i+1, t.Name, err)
		done.Status, done.Err = progress.Failed, err.Error()
	}
	progress.Emit(ctx, done)
	return err
}

func hasCommandTests(r *recipes.Recipe) bool {
	for _, t := range r.Tests {
		if t.Boot == nil {
			return true
		}
	}
	return false
}

// makeDisks makes the disks (with -o DIR) and boots them for the boot
// tests; it returns the image with the disk's generated layer.
func (b *buildRun) makeDisks(ctx context.Context, img v1.Image) (v1.Image, error) {
	o, r := b.o, b.r
	if o.DiskDir == "" {
		if hasBootTests(r) {
			o.Log.Warn("the recipe has boot tests, but no disk was asked for (-o DIR): they did not run")
		}
		return img, nil
	}
	end := stage(ctx, "disk")
	img, res, err := makeDisks(progress.WithStep(ctx, "disk"), b.c, b.remote, img, o.diskOptions(r))
	if err != nil {
		return nil, fmt.Errorf("disk: %w", err)
	}
	end()
	b.res.Disk = res
	// The boot console's lines come prefixed with their test's name; they
	// go to the display as lines of no step.
	console := progress.Lines(o.Progress, "")
	defer console.Close()
	if err := bootTests(ctx, r, bootable(res), res.Boot, bootOptions{Out: console, Log: o.Log}); err != nil {
		return nil, err
	}
	if res.Key != "" {
		b.exported, b.exportedLayers = append(b.exported, res.entry), append(b.exportedLayers, res.layer)
	}
	return img, nil
}

// diskOptions is what the disk stage takes of o and the recipe: the
// formats asked for, else the recipe's outputs, else raw.
func (o *Options) diskOptions(r *recipes.Recipe) diskOptions {
	d := diskOptions{Formats: o.Formats, OutDir: o.DiskDir, Unique: o.UniqueIDs, Digests: o.DiskDigests,
		Epoch: o.Epoch, Compression: o.Compression, Log: o.Log, Arch: platformArch(r.Platform)}
	if r.Disk != nil {
		d.Spec = *r.Disk
	}
	if len(d.Formats) == 0 {
		d.Formats = r.Outputs
	}
	if len(d.Formats) == 0 {
		d.Formats = []string{"raw"}
	}
	return d
}

// writeOutputs records the image's digests and writes --oci-layout and
// --rootfs-tar.
func (b *buildRun) writeOutputs(ctx context.Context, img v1.Image) error {
	d, err := img.Digest()
	if err != nil {
		return err
	}
	cd, err := img.ConfigName()
	if err != nil {
		return err
	}
	b.res.Image, b.res.Config = d.String(), cd.String()
	return writeOutputs(ctx, img, b.r.Name, outputOptions{OCILayout: b.o.OCILayout, RootfsTar: b.o.RootfsTar, Headers: b.c, Log: b.o.Log})
}

func (b *buildRun) execute(ctx context.Context, st *recipes.Step) (layers.Descriptor, *layers.AnsibleStats, error) {
	switch st.Kind() {
	case "copy":
		d, err := layers.CopyStep(ctx, b.c, b.r.Dir, st.Copy, b.o.Compression, b.epoch)
		return d, nil, err
	case "run", "ansible":
		if err := b.checkEmulation(); err != nil {
			return layers.Descriptor{}, nil, err
		}
		lw, err := b.unpack(ctx)
		if err != nil {
			return layers.Descriptor{}, nil, err
		}
		out := b.o.stepOutput(st.Name)
		defer out.Close()
		ro := layers.RunOptions{
			Argv: st.Run.Args(), Env: b.runEnv(st.Run.ArgEnv, st.Env), Workdir: st.Workdir,
			Network: st.Network, Epoch: b.epoch, Out: out,
		}
		for _, s := range st.Secrets {
			src := s.Src
			if !filepath.IsAbs(src) {
				src = filepath.Join(b.r.Dir, src)
			}
			// Absolute: the sandbox binds it after leaving this directory
			// (the recipe's dir is relative when its path was).
			if src, err = filepath.Abs(src); err != nil {
				return layers.Descriptor{}, nil, fmt.Errorf("secret %s: %w", s.ID, err)
			}
			ro.Secrets = append(ro.Secrets, layers.Secret{ID: s.ID, Src: src, Target: secretTarget(s)})
		}
		if st.Kind() == "ansible" {
			return layers.AnsibleStep(ctx, b.c, lw, b.o.Compression, b.ansibleOptions(st, ro))
		}
		if st.CheckIdempotent {
			d, err := layers.RunStepChecked(ctx, b.c, lw, b.o.Compression, ro)
			return d, nil, err
		}
		d, err := layers.RunStep(ctx, b.c, lw, b.o.Compression, ro)
		return d, nil, err
	}
	return layers.Descriptor{}, nil, fmt.Errorf("unknown step kind")
}

// ansibleOptions resolves an Ansible step's paths in the build context.
func (b *buildRun) ansibleOptions(st *recipes.Step, ro layers.RunOptions) layers.AnsibleOptions {
	a := st.Ansible
	in := func(p string) string {
		if p == "" {
			return ""
		}
		return filepath.Join(b.r.Dir, p)
	}
	all := func(ps []string) []string {
		out := make([]string, len(ps))
		for i, p := range ps {
			out[i] = in(p)
		}
		return out
	}
	return layers.AnsibleOptions{Run: ro, Playbook: in(a.Playbook), Roles: all(a.Roles), Collections: all(a.Collections),
		Requirements: in(a.Requirements), ExtraVars: a.ExtraVars, Tags: a.Tags, SkipTags: a.SkipTags,
		CheckIdempotent: st.CheckIdempotent}
}
