package layers

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/layerimg/layerimg/internal/progress"
	"github.com/layerimg/layerimg/rootfs"
)

// Secret is a secret file made available to one run step.
type Secret struct {
	ID, Src, Target string
}

// RunOptions describe one sandboxed command.
type RunOptions struct {
	Argv    []string
	Env     []string
	Workdir string
	Network string
	Secrets []Secret
	Epoch   time.Time
	Out     io.Writer
	// Agent, a listening unix socket, makes the sandbox serve it
	// (rootfs/agent.go) instead of running Argv: see AnsibleStep.
	Agent *os.File
}

// sandbox prepares scratch dirs, runs the command, and returns the upper dir.
// The caller removes the returned scratch dir.
func sandbox(ctx context.Context, c *Cache, lowers []string, o RunOptions) (scratch, upper string, err error) {
	scratch, err = os.MkdirTemp(c.TempDir(), "run-")
	if err != nil {
		return "", "", err
	}
	spec := rootfs.RunSpec{
		Lowers:     lowers,
		Argv:       o.Argv,
		Env:        o.Env,
		Workdir:    o.Workdir,
		Network:    o.Network,
		Hostname:   "layerimg",
		ResolvConf: o.Network != "none",
		UserNS:     c.rootless,
		Agent:      o.Agent != nil, AgentListener: o.Agent,
	}
	if len(lowers) == 0 { // overlayfs needs one lower dir
		spec.Lowers = []string{filepath.Join(scratch, "empty")}
	}
	if err := spec.InScratch(scratch); err != nil {
		return scratch, "", err
	}
	for _, d := range spec.Lowers {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return scratch, "", err
		}
	}
	upper = spec.Upper
	var secrets [][]byte
	for _, s := range o.Secrets {
		spec.Binds = append(spec.Binds, rootfs.Bind{Src: s.Src, Target: s.Target})
		data, err := os.ReadFile(s.Src)
		if err != nil {
			return scratch, "", fmt.Errorf("secret %s: %w", s.ID, err)
		}
		secrets = append(secrets, bytes.TrimSpace(data))
	}
	out := o.Out
	red := &redactor{w: out, secrets: secrets}
	if len(secrets) > 0 {
		out = red
	}
	if err := rootfs.Run(ctx, spec, out); err != nil {
		// The error quotes the step's last lines: redact them as the
		// streamed output is.
		var ee *rootfs.ExitError
		if errors.As(err, &ee) {
			for i, l := range ee.Tail {
				ee.Tail[i] = string(red.redact([]byte(l)))
			}
		}
		return scratch, "", err
	}
	if err := rootfs.RemoveCreated(upper, spec.StateFile); err != nil {
		return scratch, "", err
	}
	return scratch, upper, nil
}

// RunStep runs a step over lowers and stores its changes as a layer.
func RunStep(ctx context.Context, c *Cache, lowers []string, comp Compression, o RunOptions) (Descriptor, error) {
	scratch, upper, err := sandbox(ctx, c, lowers, o)
	defer os.RemoveAll(scratch)
	if err != nil {
		return Descriptor{}, err
	}
	return writeUpper(ctx, c, upper, comp, o)
}

// writeUpper stores a sandbox's upper dir as a layer, refusing one that
// holds a secret's content.
func writeUpper(ctx context.Context, c *Cache, upper string, comp Compression, o RunOptions) (Descriptor, error) {
	var secrets []namedSecret
	for _, s := range o.Secrets {
		data, err := os.ReadFile(s.Src)
		if err != nil {
			return Descriptor{}, fmt.Errorf("secret %s: %w", s.ID, err)
		}
		if data = bytes.TrimSpace(data); len(data) >= 4 {
			secrets = append(secrets, namedSecret{s.ID, data})
		}
	}
	epoch := o.Epoch
	m := progress.Start(ctx, "compressing the layer", 0)
	defer m.Finish()
	return c.WriteLayer(comp, func(w io.Writer) error {
		sw := &secretScan{secrets: secrets}
		if err := rootfs.WriteTar(ctx, m.Writer(io.MultiWriter(w, sw)), upper, rootfs.TarOptions{Epoch: &epoch, Overlay: true}); err != nil {
			return err
		}
		if sw.found != "" {
			return fmt.Errorf("the step wrote the content of secret %q into the image; nothing was cached", sw.found)
		}
		return nil
	})
}

// RunTest runs a command over lowers and throws its changes away.
func RunTest(ctx context.Context, c *Cache, lowers []string, o RunOptions) error {
	scratch, _, err := sandbox(ctx, c, lowers, o)
	os.RemoveAll(scratch)
	return err
}

type namedSecret struct {
	id   string
	data []byte
}

// secretScan looks for secrets in a stream, across write boundaries.
type secretScan struct {
	secrets []namedSecret
	tail    []byte
	found   string
}

func (s *secretScan) Write(p []byte) (int, error) {
	if len(s.secrets) == 0 || s.found != "" {
		return len(p), nil
	}
	buf := append(s.tail, p...)
	keep := 0
	for _, sec := range s.secrets {
		if bytes.Contains(buf, sec.data) {
			s.found = sec.id
			return len(p), nil
		}
		keep = max(keep, len(sec.data)-1)
	}
	if len(buf) > keep {
		buf = buf[len(buf)-keep:]
	}
	s.tail = append(s.tail[:0], buf...)
	return len(p), nil
}

// redactor hides secret values in step output.
type redactor struct {
	w       io.Writer
	secrets [][]byte
}

func (r *redactor) Write(p []byte) (int, error) {
	if _, err := r.w.Write(r.redact(p)); err != nil {
		return 0, err
	}
	return len(p), nil
}

func (r *redactor) redact(p []byte) []byte {
	for _, s := range r.secrets {
		if len(s) > 0 {
			p = bytes.ReplaceAll(p, s, []byte("***"))
		}
	}
	return p
}
