package main

import (
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/layerimg/layerimg"
	"github.com/layerimg/layerimg/internal/progress"
)

// display is how a command shows what it does (--progress): a renderer of
// build events, and the logger whose records it shows. Close ends it.
type display interface {
	progress.Sink
	Logger() *slog.Logger
	Close()
}

// display sets up --progress for cmd on its stderr and puts the renderer in
// cmd's context, so that every stage reports to it. Its error is a usage
// error naming the flag.
func (g *globalFlags) display(cmd *cobra.Command) (display, error) {
	level := slog.LevelInfo
	if g.verbose {
		level = slog.LevelDebug
	}
	w := cmd.ErrOrStderr()
	mode := g.progress
	if mode == "auto" {
		mode = "plain"
		if f, ok := w.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
			mode = "tty"
		}
	}
	var d display
	switch mode {
	case "plain":
		d = plainDisplay{progress.NewPlain(slog.NewTextHandler(w, &slog.HandlerOptions{Level: level}), w)}
	case "json":
		d = jsonDisplay{progress.NewJSON(w), level}
	case "tty":
		d = progress.NewTTY(cmd.Context(), w, progress.TTYOptions{Level: level})
	default:
		return nil, usageError{fmt.Errorf("--progress %q: expected auto, plain, tty or json", g.progress)}
	}
	cmd.SetContext(progress.WithSink(cmd.Context(), d))
	return d, nil
}

type plainDisplay struct{ *progress.Plain }

func (plainDisplay) Close() {}

type jsonDisplay struct {
	*progress.JSON
	level slog.Level
}

func (j jsonDisplay) Logger() *slog.Logger { return slog.New(progress.NewHandler(j.JSON, j.level)) }
func (jsonDisplay) Close()                 {}

// reportResult sends a build's last event: what it made, or how it ended.
func reportResult(d display, start time.Time, interrupted bool, o layerimg.Options, res *layerimg.Result, err error) {
	e := progress.Event{Type: progress.Result, Time: time.Now(), Status: progress.OK, Elapsed: time.Since(start)}
	switch {
	case err != nil && interrupted:
		e.Status, e.Err = progress.Interrupted, err.Error()
	case err != nil:
		e.Status, e.Err = progress.Fail, err.Error()
	default:
		e.Summary = &progress.Summary{Recipe: res.Recipe, Image: res.Image, Outputs: outputs(o, res), Published: res.Published}
	}
	d.Emit(e)
}

// outputs are the files a build wrote, with their sizes.
func outputs(o layerimg.Options, res *layerimg.Result) []progress.File {
	var fs []progress.File
	if res.Disk != nil {
		formats := make([]string, 0, len(res.Disk.Files))
		for f := range res.Disk.Files {
			formats = append(formats, f)
		}
		slices.Sort(formats)
		for _, f := range formats {
			fs = append(fs, progress.File{Path: res.Disk.Files[f].Path, Size: res.Disk.Files[f].Size})
		}
	}
	for _, p := range []string{o.RootfsTar, o.Manifest} {
		if fi, err := os.Stat(p); p != "" && err == nil {
			fs = append(fs, progress.File{Path: p, Size: fi.Size()})
		}
	}
	if o.OCILayout != "" {
		fs = append(fs, progress.File{Path: o.OCILayout, Size: dirSize(o.OCILayout)})
	}
	return fs
}

// dirSize adds up the regular files under dir; one that cannot be read
// counts nothing.
func dirSize(dir string) int64 {
	var n int64
	_ = filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			if fi, err := d.Info(); err == nil {
				n += fi.Size()
			}
		}
		return nil
	})
	return n
}
