package layerimg

import (
	"context"
	"io"
	"time"

	"github.com/layerimg/layerimg/internal/progress"
)

// stage reports a stage's start to ctx's progress sink and returns what
// reports its end.
func stage(ctx context.Context, name string) (end func()) {
	start := time.Now()
	progress.Emit(ctx, progress.Event{Type: progress.StageStarted, Time: start, Step: name})
	return func() {
		progress.Emit(ctx, progress.Event{Type: progress.StageFinished, Step: name, Elapsed: time.Since(start)})
	}
}

// stepOutput is where a step's (or a test's, or the bootstrap's) output
// goes: one Output event a line. Close it when the step ends.
func (o *Options) stepOutput(name string) io.WriteCloser {
	return progress.Lines(o.Progress, name)
}

// stepEvent is step i's event of type t, with what sp says of it.
// A started step's event says why it runs; a finished one's, its status,
// layer and time.
func (b *buildRun) stepEvent(t progress.Type, sp StepPlan) progress.Event {
	e := progress.Event{Type: t, Step: sp.Name, Index: sp.Index, Count: len(b.r.Steps), Kind: sp.Kind, Key: short(sp.Key)}
	if t == progress.StepStarted {
		e.Why = sp.Why
	} else {
		e.Status, e.Layer, e.Elapsed = sp.Status, short(sp.Layer), sp.Duration
	}
	return e
}

// metered wraps open so that the stream it opens reports its bytes as the
// transfer name.
func metered(ctx context.Context, name string, open func() (io.ReadCloser, error)) func() (io.ReadCloser, error) {
	return func() (io.ReadCloser, error) {
		rc, err := open()
		if err != nil {
			return nil, err
		}
		m := progress.Start(ctx, name, 0)
		return meteredReader{Reader: m.Reader(rc), c: rc, m: m}, nil
	}
}

type meteredReader struct {
	io.Reader
	c io.Closer
	m *progress.Meter
}

func (r meteredReader) Close() error {
	r.m.Finish()
	return r.c.Close()
}

// stepFailed reports that a step failed, or was interrupted.
func (b *buildRun) stepFailed(ctx context.Context, sp StepPlan, err error) {
	e := b.stepEvent(progress.StepFinished, sp)
	e.Status, e.Err = progress.Failed, err.Error()
	if ctx.Err() != nil {
		e.Status = progress.StepInterrupted
	}
	progress.Emit(ctx, e)
}
