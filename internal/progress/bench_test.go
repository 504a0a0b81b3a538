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
