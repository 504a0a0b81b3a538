package progress

import (
	"context"
	"log/slog"
	"time"
)

// Type says what an Event reports.
type Type string

// The event types; docs/progress.md describes each one's fields.
const (
	StepStarted   Type = "step_started"
	StepFinished  Type = "step_finished"
	StageStarted  Type = "stage_started"
	StageFinished Type = "stage_finished"
	Output        Type = "output"
	Transfer      Type = "progress"
	Message       Type = "message"
	Result        Type = "result"
)

// Step statuses beyond the cache's HIT, "HIT (remote)" and MISS, and a
// test's PASS.
const (
	Failed          = "FAILED"
	StepInterrupted = "INTERRUPTED"
)

// Result statuses.
const (
	OK          = "ok"
	Fail        = "failed"
	Interrupted = "interrupted"
)

// Event is one thing that happened in a build. Which fields are set
// depends on Type; docs/progress.md lists them.
type Event struct {
	Type Type
	Time time.Time

	// Steps, stages and output: the step (or test, or stage) named.
	Step  string
	Index int    // a step's 1-based position in the recipe; 0 otherwise
	Count int    // how many steps the recipe has
	Kind  string // copy, run, bootstrap, test
	// Status is a finished step's HIT, "HIT (remote)", MISS, PASS (a
	// test), FAILED or INTERRUPTED; a result's ok, failed or interrupted.
	Status  string
	Key     string // the step's cache key, shortened
	Layer   string // the step's layer digest, shortened
	Why     string // why a step runs
	Elapsed time.Duration
	Err     string

	// Output: one line of a step's output, without its newline.
	Line string

	// Transfer: ID names one transfer for its whole life; Name says what it
	// moves. Total is 0 when unknown. Final is set on its last event.
	ID    string
	Name  string
	Done  int64
	Total int64
	Final bool

	// Message: a log record.
	Level slog.Level
	Msg   string
	Attrs []slog.Attr

	// Result: what the build made.
	Summary *Summary
}

// Summary is what a finished build reports.
type Summary struct {
	Recipe    string
	Image     string
	Outputs   []File
	Published map[string]any
}

// File is one output and its size in bytes.
type File struct {
	Path string
	Size int64
}

// Sink receives events. Emit must be safe for concurrent use and must not
// block for long: transfers call it from their copy loops.
type Sink interface {
	Emit(Event)
}

type ctxKey struct{}

type scope struct {
	sink Sink
	step string
}

// WithSink returns ctx carrying s; FromContext finds it there.
func WithSink(ctx context.Context, s Sink) context.Context {
	if s == nil {
		return ctx
	}
	return context.WithValue(ctx, ctxKey{}, scope{sink: s})
}

// WithStep returns ctx whose transfers belong to the named step.
func WithStep(ctx context.Context, step string) context.Context {
	sc, ok := ctx.Value(ctxKey{}).(scope)
	if !ok {
		return ctx
	}
	sc.step = step
	return context.WithValue(ctx, ctxKey{}, sc)
}

// FromContext returns the sink ctx carries, or nil.
func FromContext(ctx context.Context) Sink {
	sc, _ := ctx.Value(ctxKey{}).(scope)
	return sc.sink
}

// Emit sends e to ctx's sink, if any, stamping its time and step.
func Emit(ctx context.Context, e Event) {
	sc, ok := ctx.Value(ctxKey{}).(scope)
	if !ok {
		return
	}
	if e.Time.IsZero() {
		e.Time = time.Now()
	}
	if e.Step == "" {
		e.Step = sc.step
	}
	sc.sink.Emit(e)
}

// Discard is a Sink that drops every event.
type Discard struct{}

// Emit drops e.
func (Discard) Emit(Event) {}
