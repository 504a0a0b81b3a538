package progress

import (
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/creack/pty"
)

// BenchmarkTTYNoopRebuild is the display's own cost in a no-op rebuild of a
// 10-step recipe: the events such a build sends (two quick stages, ten
// cached steps, the result) rendered on a pseudo-terminal, the summary
// included. The process around it is BenchmarkNoopRebuildProgress in
// cmd/layerimg.
func BenchmarkTTYNoopRebuild(b *testing.B) {
	ptmx, tty, err := pty.Open()
	if err != nil {
		b.Fatal(err)
	}
	defer ptmx.Close()
	defer tty.Close()
	pty.Setsize(ptmx, &pty.Winsize{Cols: 120, Rows: 40})
	go io.Copy(io.Discard, ptmx)
	for b.Loop() {
		d := NewTTY(b.Context(), tty, TTYOptions{})
		now := time.Now()
		d.Emit(Event{Type: StageStarted, Time: now, Step: "base"})
		d.Emit(Event{Type: StageFinished, Time: now, Step: "base", Elapsed: time.Millisecond})
		d.Emit(Event{Type: StageStarted, Time: now, Step: "steps"})
		for i := 1; i <= 10; i++ {
			d.Emit(Event{Type: StepFinished, Time: now, Step: fmt.Sprintf("step-%d", i), Index: i, Count: 10, Kind: "copy",
				Status: "HIT", Key: strings.Repeat("a", 12), Layer: strings.Repeat("b", 12), Elapsed: time.Millisecond})
		}
		d.Emit(Event{Type: StageFinished, Time: now, Step: "steps", Elapsed: 10 * time.Millisecond})
		d.Emit(Event{Type: StageStarted, Time: now, Step: "outputs"})
		d.Emit(Event{Type: StageFinished, Time: now, Step: "outputs"})
		d.Emit(Event{Type: Result, Time: now, Status: OK, Elapsed: 12 * time.Millisecond,
			Summary: &Summary{Recipe: "ten", Image: "sha256:" + strings.Repeat("c", 64), Outputs: []File{{Path: "out/m.json", Size: 4500}}}})
		d.Close()
	}
}

// TestTTYConcurrent drives a running step's row, its window and two
// transfers from several goroutines, for the race detector, and checks
// what stays on the terminal once the display is closed.
func TestTTYConcurrent(t *testing.T) {
	ptmx, tty, err := pty.Open()
	if err != nil {
		t.Fatal(err)
	}
	defer ptmx.Close()
	defer tty.Close()
	pty.Setsize(ptmx, &pty.Winsize{Cols: 80, Rows: 24})
	var out strings.Builder
	read := make(chan struct{})
	go func() { io.Copy(&out, ptmx); close(read) }()
	d := NewTTY(t.Context(), tty, TTYOptions{Refresh: 10 * time.Millisecond})
	ctx := WithStep(WithSink(t.Context(), d), "build")
	d.Emit(Event{Type: StepStarted, Time: time.Now(), Step: "build", Index: 1, Count: 1, Kind: "run"})
	done := make(chan struct{})
	for g := range 3 {
		go func() {
			defer func() { done <- struct{}{} }()
			m := Start(ctx, fmt.Sprint("transfer ", g), 1<<20)
			for i := range 50 {
				m.Add(1 << 14)
				d.Emit(Event{Type: Output, Time: time.Now(), Step: "build", Line: fmt.Sprint("g", g, " line ", i)})
				time.Sleep(3 * time.Millisecond)
			}
			m.Finish()
		}()
	}
	for range 3 {
		<-done
	}
	d.Emit(Event{Type: StepFinished, Time: time.Now(), Step: "build", Index: 1, Count: 1, Kind: "run", Status: "MISS", Elapsed: 200 * time.Millisecond})
	d.Emit(Event{Type: Result, Time: time.Now(), Status: OK, Summary: &Summary{Recipe: "r"}})
	d.Close()
	tty.Close()
	<-read
	if !strings.Contains(out.String(), " ✓ [1/1] build  200ms") || !strings.Contains(out.String(), "Built r in") {
		t.Errorf("terminal output:\n%s", out.String())
	}
}
