package layerimg

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/layerimg/layerimg/disk/sparse"
	"github.com/layerimg/layerimg/layers"
	"github.com/layerimg/layerimg/recipes"
	"github.com/layerimg/layerimg/rootfs"
)

// assembleImage stacks the step layers on the base and writes a runnable
// image config: env, workdir, platform, history, all stamped with epoch.
func assembleImage(base v1.Image, steps []v1.Layer, r *recipes.Recipe, env []string, workdir string, epoch time.Time) (v1.Image, error) {
	img := base
	if mt, err := base.MediaType(); err == nil && mt == types.DockerManifestSchema2 {
		img = mutate.MediaType(img, types.OCIManifestSchema1)
		img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
	}
	img, err := layers.Append(img, steps, func(i int) v1.History {
		return v1.History{Created: v1.Time{Time: epoch}, CreatedBy: fmt.Sprintf("layerimg step %d", i+1)}
	})
	if err != nil {
		return nil, err
	}
	pl, err := v1.ParsePlatform(r.Platform)
	if err != nil {
		return nil, err
	}
	return layers.EditConfig(img, func(cf *v1.ConfigFile) {
		cf.OS, cf.Architecture, cf.Variant = pl.OS, pl.Architecture, pl.Variant
		cf.Created = v1.Time{Time: epoch}
		cf.Config.Env = env
		if workdir != "" {
			cf.Config.WorkingDir = workdir
		}
		if cf.Config.Labels == nil {
			cf.Config.Labels = map[string]string{}
		}
		cf.Config.Labels["org.opencontainers.image.title"] = r.Name
	})
}

// outputOptions are the image outputs a build writes besides disks.
type outputOptions struct {
	OCILayout string // write the image here as an OCI layout
	RootfsTar string // write the flattened rootfs here
	Headers   rootfs.HeaderCache
	Log       *slog.Logger
}

func writeOutputs(ctx context.Context, img v1.Image, name string, o outputOptions) error {
	if o.OCILayout != "" {
		if err := writeLayout(o.OCILayout, img, name); err != nil {
			return fmt.Errorf("writing OCI layout %s: %w", o.OCILayout, err)
		}
		d, _ := img.Digest()
		o.Log.Info("wrote OCI layout", "dir", o.OCILayout, "digest", d.String())
	}
	if o.RootfsTar != "" {
		if err := writeRootfsTar(ctx, img, o.RootfsTar, o.Headers); err != nil {
			return fmt.Errorf("writing rootfs tar %s: %w", o.RootfsTar, err)
		}
		o.Log.Info("wrote rootfs tar", "file", o.RootfsTar)
	}
	return nil
}

// writeManifest writes the build manifest to path (none if empty) last,
// after publishing, so that it lists the cloud resources made.
func writeManifest(path string, res *Result) error {
	if path == "" {
		return nil
	}
	data, err := json.MarshalIndent(res, "", "  ")
	if err != nil {
		return err
	}
	if err := writeFile(path, append(data, '\n')); err != nil {
		return fmt.Errorf("writing build manifest %s: %w", path, err)
	}
	return nil
}

// writeLayout writes img as the only image of an OCI layout at dir. It is
// written beside dir and renamed into place, so dir is never half-written.
func writeLayout(dir string, img v1.Image, name string) error {
	dir = filepath.Clean(dir)
	if err := os.MkdirAll(filepath.Dir(dir), 0o755); err != nil {
		return err
	}
	tmp, err := os.MkdirTemp(filepath.Dir(dir), "."+filepath.Base(dir)+".tmp-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	p, err := layout.Write(tmp, empty.Index)
	if err != nil {
		return err
	}
	if err := p.AppendImage(img, layout.WithAnnotations(map[string]string{"org.opencontainers.image.ref.name": name})); err != nil {
		return err
	}
	if err := os.Chmod(tmp, 0o755); err != nil {
		return err
	}
	old := tmp + ".old"
	if _, err := os.Stat(dir); err == nil {
		if err := os.Rename(dir, old); err != nil {
			return err
		}
		defer os.RemoveAll(old)
	}
	return os.Rename(tmp, dir)
}

// writeRootfsTar writes img's flattened tree as one tar, streamed from its
// layers: nothing is unpacked, so no privilege is needed.
func writeRootfsTar(ctx context.Context, img v1.Image, file string, hc rootfs.HeaderCache) error {
	tree, err := rootfs.Index(ctx, img, hc)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(file), 0o755); err != nil {
		return err
	}
	return sparse.WriteAtomic(file, func(f *os.File) error {
		bw := bufio.NewWriterSize(f, 1<<20)
		if err := tree.WriteTar(ctx, bw); err != nil {
			return err
		}
		return bw.Flush()
	})
}

// prefixWriter prefixes each line written to w with "[name] ", however the
// writes split the lines.
func prefixWriter(w io.Writer, name string) io.Writer {
	return &prefixed{w: w, prefix: []byte("[" + name + "] "), atStart: true}
}

type prefixed struct {
	mu      sync.Mutex
	w       io.Writer
	prefix  []byte
	atStart bool
}

func (p *prefixed) Write(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make([]byte, 0, len(b)+len(p.prefix))
	for _, ch := range b {
		if p.atStart {
			out = append(out, p.prefix...)
		}
		out = append(out, ch)
		p.atStart = ch == '\n'
	}
	if _, err := p.w.Write(out); err != nil {
		return 0, err
	}
	return len(b), nil
}
