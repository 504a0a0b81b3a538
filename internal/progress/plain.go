package progress

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"time"
)

// PlainEvery is how often Plain reports a long transfer.
const PlainEvery = 5 * time.Second

// Plain renders events as log lines through a slog handler (key=value
// text in CI), and step output as "[step] line" lines on out. It writes no
// ANSI code and drops empty values.
type Plain struct {
	h     slog.Handler
	out   io.Writer
	every time.Duration

	mu     sync.Mutex
	tally  tally
	shown  map[string]time.Time // each transfer's last line
	begins map[string]time.Time // each transfer's start
}

// NewPlain renders to h (wrapped in NoEmpty) and out.
func NewPlain(h slog.Handler, out io.Writer) *Plain {
	return &Plain{h: NoEmpty(h), out: out, every: PlainEvery, shown: map[string]time.Time{}, begins: map[string]time.Time{}}
}

// Logger is the logger the rest of the build logs through.
func (p *Plain) Logger() *slog.Logger { return slog.New(p.h) }

// Emit renders e.
func (p *Plain) Emit(e Event) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.tally.add(e)
	switch e.Type {
	case StepStarted:
		p.log(e.Time, slog.LevelInfo, "running", "step", e.Step, "kind", e.Kind, "why", e.Why)
	case StepFinished:
		if e.Status == Failed || e.Status == StepInterrupted {
			p.log(e.Time, slog.LevelError, strings.ToLower(e.Status), "step", e.Step, "elapsed", roundDur(e.Elapsed), "err", e.Err)
			return
		}
		args := []any{"step", e.Step, "status", e.Status, "key", e.Key, "layer", e.Layer}
		if e.Status == "MISS" {
			args = append(args, "elapsed", roundDur(e.Elapsed))
		}
		p.log(e.Time, slog.LevelInfo, "done", args...)
	case StageStarted:
		p.log(e.Time, slog.LevelDebug, "stage", "stage", e.Step)
	case StageFinished:
		p.log(e.Time, slog.LevelDebug, "stage done", "stage", e.Step, "elapsed", roundDur(e.Elapsed))
	case Output:
		if e.Step == "" {
			fmt.Fprintln(p.out, e.Line)
		} else {
			fmt.Fprintf(p.out, "[%s] %s\n", e.Step, e.Line)
		}
	case Transfer:
		p.transfer(e)
	case Message:
		r := slog.NewRecord(e.Time, e.Level, e.Msg, 0)
		r.AddAttrs(e.Attrs...)
		p.handle(r)
	case Result:
		p.result(e)
	}
}

// transfer reports a transfer every p.every: a quick one makes no line.
func (p *Plain) transfer(e Event) {
	begin, ok := p.begins[e.ID]
	if !ok {
		begin = e.Time
		p.begins[e.ID] = begin
	}
	last, shown := p.shown[e.ID]
	if e.Final {
		// The step's or upload's own line says it ended.
		delete(p.begins, e.ID)
		delete(p.shown, e.ID)
		return
	}
	if !shown {
		last = begin
	}
	if e.Time.Sub(last) >= p.every {
		p.shown[e.ID] = e.Time
		p.log(e.Time, slog.LevelInfo, e.Name, transferAttrs(e)...)
	}
}

// transferAttrs are a transfer's figures: MiB done, of how many, the rate
// and the time left.
func transferAttrs(e Event) []any {
	rate := float64(e.Done) / max(e.Elapsed.Seconds(), 1e-3)
	attrs := []any{"step", e.Step, "MiB", e.Done >> 20}
	if e.Total > 0 {
		attrs = append(attrs, "of_MiB", e.Total>>20)
	}
	attrs = append(attrs, "MiB_per_s", float64(int(rate/(1<<20)*10))/10)
	if rate > 0 && e.Total > e.Done {
		attrs = append(attrs, "eta", time.Duration(float64(e.Total-e.Done)/rate*float64(time.Second)).Round(time.Second))
	}
	return attrs
}

func (p *Plain) result(e Event) {
	s := e.Summary
	if e.Status != OK || s == nil {
		return
	}
	p.log(e.Time, slog.LevelInfo, "built", "recipe", s.Recipe, "image", s.Image, "executed", p.tally.run, "cached", p.tally.cached, "elapsed", roundDur(e.Elapsed))
	if st := p.tally.stageList(); len(st) > 0 {
		args := make([]any, 0, 2*len(st))
		for _, s := range st {
			args = append(args, s.Name, roundDur(time.Duration(s.Elapsed)))
		}
		p.log(e.Time, slog.LevelInfo, "stage times", args...)
	}
	for _, f := range s.Outputs {
		p.log(e.Time, slog.LevelInfo, "output", "file", f.Path, "size", f.Size)
	}
	for _, k := range sortedKeys(s.Published) {
		p.log(e.Time, slog.LevelInfo, "published", "target", k, "result", fmt.Sprint(s.Published[k]))
	}
}

func (p *Plain) log(t time.Time, l slog.Level, msg string, args ...any) {
	if !p.h.Enabled(context.Background(), l) {
		return
	}
	r := slog.NewRecord(t, l, msg, 0)
	r.Add(args...)
	p.handle(r)
}

func (p *Plain) handle(r slog.Record) {
	if p.h.Enabled(context.Background(), r.Level) {
		_ = p.h.Handle(context.Background(), r) // a log line that cannot be written is not the build's failure
	}
}
