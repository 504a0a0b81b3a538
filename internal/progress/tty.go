package progress

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/vbauerster/cupwriter"
	"github.com/vbauerster/mpb/v8"
	"github.com/vbauerster/mpb/v8/decor"
)

// TTYOptions adjust the terminal display.
type TTYOptions struct {
	// Window is how many of the running step's last output lines show
	// (default 5).
	Window int
	// Level is the least level of log messages shown above the display.
	Level slog.Leveler
	// Refresh is the redraw interval (default mpb's, 150ms).
	Refresh time.Duration
	// MaxLines caps the output kept per step for a failure's report
	// (default 100000 lines; earlier ones are dropped and counted).
	MaxLines int
}

// TTY is a redrawn terminal display: a line per step and stage (cached,
// running with a timer, done with its time, failed), the running step's
// last output lines, and a bar for each transfer. mpb draws it; finished
// lines scroll up above the display and stay. Closing it after a failure
// shows the failing step's whole output; after success, a summary.
type TTY struct {
	out  io.Writer
	ctx  context.Context
	p    *mpb.Progress // made when a row first shows
	opts TTYOptions
	// begin is when the display started, for the summary's total time.
	begin time.Time

	mu        sync.Mutex
	closed    bool
	tally     tally
	lines     map[string]*line // steps and stages by name
	order     []*line          // the same, in the order they came
	transfers map[string]*transfer
	// next is the next row's priority (mpb draws lower ones higher): each
	// line leaves room below it for its window.
	next    int
	failed  *line
	stopped []string // what an interruption stopped
	running *line
	result  *Event
	// shown holds the lines printed above the display that no frame has
	// carried to the terminal yet: mpb flushes such lines with its next
	// frame, and drops them if it shuts down first. Close prints what is
	// left. Its own lock: frames are written on mpb's goroutine.
	shown *pending
}

type pending struct {
	mu    sync.Mutex
	lines []string
}

// sent drops the lines that frame p carried.
func (q *pending) sent(p []byte) {
	q.mu.Lock()
	defer q.mu.Unlock()
	kept := q.lines[:0]
	for _, l := range q.lines {
		if !bytes.Contains(p, []byte(l)) {
			kept = append(kept, l)
		}
	}
	q.lines = kept
}

// line is one step's or stage's row, and its output window. Its mutex
// guards what the decorators read; it is never held while calling mpb.
type line struct {
	mu      sync.Mutex
	label   string
	state   string // running, a finished step's status, or done
	start   time.Time
	elapsed time.Duration
	out     []string    // output lines kept
	dropped int         // output lines dropped from the front of out
	bar     *mpb.Bar    // nil until the row shows
	timer   *time.Timer // shows the row if it is still running then
	key     string
	prio    int
	// window is the rows showing the last lines of out, added as lines
	// come, up to TTYOptions.Window; nwin is their number, for the rows.
	window   []*mpb.Bar
	nwin     int
	isWindow bool
	gone     bool // printed above the display for good
}

// transfer is one transfer's row and the figures it shows.
type transfer struct {
	mu  sync.Mutex
	e   Event
	bar *mpb.Bar
}

// NewTTY draws on out, which should be a terminal (mpb reads its width
// at each redraw, so a resize or a narrow window is handled).
func NewTTY(ctx context.Context, out io.Writer, o TTYOptions) *TTY {
	if o.Window == 0 {
		o.Window = 5
	}
	if o.Level == nil {
		o.Level = slog.LevelInfo
	}
	if o.MaxLines == 0 {
		o.MaxLines = 100000
	}
	return &TTY{out: out, ctx: ctx, opts: o, begin: time.Now(), lines: map[string]*line{}, transfers: map[string]*transfer{}, shown: &pending{}}
}

// showAfter is how long a step or stage runs before it gets a live row: a
// quicker one only prints its finished line, and a rebuild where every
// step is cached never starts the redrawing.
const showAfter = 100 * time.Millisecond

// progress is the display's mpb container, made on first use.
func (t *TTY) progress() *mpb.Progress {
	if t.p != nil {
		return t.p
	}
	// Each frame starts with a carriage return: the terminal's echo of a
	// Ctrl-C ("^C") moves the cursor off column 0, and the redraw moves
	// only up.
	cw := cupwriter.New(frameStart{t.out, t.shown}, false)
	if f, ok := t.out.(interface{ Fd() uintptr }); ok {
		cw.SetTermFd(int(f.Fd()))
	}
	opts := []mpb.ContainerOption{mpb.WithConsoleWriter(cw), mpb.WithAutoRefresh()}
	if t.opts.Refresh > 0 {
		opts = append(opts, mpb.WithRefreshRate(t.opts.Refresh))
	}
	// The display's own context: an interrupted build still closes it
	// in order, rather than having mpb drop it mid-frame.
	t.p = mpb.NewWithContext(context.WithoutCancel(t.ctx), opts...)
	return t.p
}

// println prints a line above the display (or, with no display yet, on the
// terminal).
func (t *TTY) println(s string) {
	if t.p == nil {
		fmt.Fprintln(t.out, s)
		return
	}
	t.shown.mu.Lock()
	t.shown.lines = append(t.shown.lines, s)
	t.shown.mu.Unlock()
	_, _ = t.p.Write([]byte(s + "\n"))
}

// Logger is the logger whose records show above the display.
func (t *TTY) Logger() *slog.Logger { return slog.New(NewHandler(t, t.opts.Level)) }

// Emit updates the display with e.
func (t *TTY) Emit(e Event) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		if e.Type == Message && e.Level >= t.opts.Level.Level() {
			fmt.Fprintln(t.out, messageText(e))
		}
		return
	}
	t.tally.add(e)
	switch e.Type {
	case StepStarted:
		l := t.addLine(e.Step, stepLabel(e), e.Time, true)
		t.running = l
	case StepFinished:
		l, ok := t.lines[e.Step]
		if !ok {
			l = t.addLine(e.Step, stepLabel(e), e.Time, false)
		}
		t.finish(l, e.Status, e.Elapsed)
		switch e.Status {
		case Failed:
			t.failed = l
		case StepInterrupted:
			t.stopped = append(t.stopped, l.label)
		}
	case StageStarted:
		if e.Step != "steps" {
			t.addLine("stage "+e.Step, e.Step, e.Time, false)
		}
	case StageFinished:
		if l, ok := t.lines["stage "+e.Step]; ok {
			t.finish(l, "done", e.Elapsed)
		}
	case Output:
		if l, ok := t.lines[e.Step]; ok {
			t.output(l, e.Line)
		} else if e.Step == "" {
			t.println(strings.Map(printable, e.Line)) // a boot console's
		}
	case Transfer:
		t.transfer(e)
	case Message:
		if e.Level >= t.opts.Level.Level() {
			t.println(messageText(e))
		}
	case Result:
		t.result = &e
		t.close()
	}
}

// Close ends the display (a build that never sent its result).
func (t *TTY) Close() {
	t.mu.Lock()
	defer t.mu.Unlock()
	if !t.closed {
		t.close()
	}
}

func stepLabel(e Event) string {
	if e.Index > 0 && e.Count > 0 {
		return fmt.Sprintf("[%d/%d] %s", e.Index, e.Count, e.Step)
	}
	return e.Step
}

// addLine adds a step or stage; its row shows if it runs for showAfter.
// withWindow lets its output show in a window below it.
func (t *TTY) addLine(key, label string, start time.Time, withWindow bool) *line {
	l := &line{key: key, label: label, state: "running", start: start, prio: t.next, isWindow: withWindow}
	t.next += t.opts.Window + 1
	t.lines[key] = l
	t.order = append(t.order, l)
	l.timer = time.AfterFunc(showAfter, func() {
		t.mu.Lock()
		defer t.mu.Unlock()
		if !t.closed && l.bar == nil && t.lines[key] == l && l.state == "running" {
			t.show(l)
		}
	})
	return l
}

// show gives l its row, and a window on the output it has had so far.
func (t *TTY) show(l *line) {
	l.bar = t.progress().New(-1, mpb.NopStyle(), mpb.BarFillerTrim(), mpb.BarPriority(l.prio), mpb.PrependDecorators(decor.Any(l.render)))
	l.mu.Lock()
	n := 0
	if l.isWindow {
		n = min(len(l.out), t.opts.Window)
	}
	l.nwin = n
	l.mu.Unlock()
	for i := range n {
		t.addWindowRow(l, i)
	}
}

func (t *TTY) addWindowRow(l *line, i int) {
	l.window = append(l.window, t.progress().New(-1, mpb.NopStyle(), mpb.BarFillerTrim(), mpb.BarNoPop(),
		mpb.BarPriority(l.prio+1+i), mpb.PrependDecorators(decor.Any(l.windowLine(i)))))
}

// output keeps a line of l's output and, while l runs, shows it in l's
// window, adding a row while the window is not full.
func (t *TTY) output(l *line, s string) {
	l.mu.Lock()
	l.out = append(l.out, s)
	if len(l.out) > t.opts.MaxLines {
		l.dropped += len(l.out) - t.opts.MaxLines
		l.out = append([]string(nil), l.out[len(l.out)-t.opts.MaxLines:]...)
	}
	grow := l.bar != nil && l.isWindow && l.state == "running" && l.nwin < t.opts.Window
	if grow {
		l.nwin++
	}
	i := l.nwin - 1
	l.mu.Unlock()
	if grow {
		t.addWindowRow(l, i)
	}
}

// finish ends a row: its window goes, and its line, with its status and
// time, is printed above the display, where it stays. (mpb's own "pop
// completed" mode may swap two rows that finish in one frame.)
func (t *TTY) finish(l *line, state string, elapsed time.Duration) {
	l.mu.Lock()
	l.state, l.elapsed = state, elapsed
	text := l.text()
	l.gone = true
	l.mu.Unlock()
	l.timer.Stop()
	t.println(text)
	for _, w := range l.window {
		w.Abort(true)
	}
	if l.bar != nil {
		l.bar.Abort(true)
	}
	if t.running == l {
		t.running = nil
	}
}

// render is a row: a mark, the label, the status and the time; nothing
// once the row is printed above the display.
func (l *line) render(st decor.Statistics) string {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.gone {
		return ""
	}
	mark, status := l.parts()
	// On a narrow terminal the label gives way, so the status stays.
	label := l.label
	if room := st.AvailableWidth - utf8.RuneCountInString(mark+status) - 2; utf8.RuneCountInString(label) > room && room > 1 {
		label = string([]rune(label)[:room-1]) + "…"
	}
	return mark + label + "  " + status
}

func (l *line) text() string {
	mark, status := l.parts()
	return mark + l.label + "  " + status
}

// parts are a row's mark ("=> ", " ✓ ", " ✗ ") and status.
func (l *line) parts() (mark, status string) {
	switch l.state {
	case "running":
		return "=> ", roundDur(time.Since(l.start)).Truncate(100 * time.Millisecond).String()
	case "HIT":
		return " ✓ ", "CACHED"
	case "HIT (remote)":
		return " ✓ ", "CACHED (remote)"
	case Failed:
		return " ✗ ", "FAILED after " + roundDur(l.elapsed).String()
	case Interrupted, StepInterrupted:
		return " ✗ ", "interrupted after " + roundDur(l.elapsed).String()
	}
	return " ✓ ", roundDur(l.elapsed).String()
}

// windowLine is the i-th row of the window on the step's last output lines.
func (l *line) windowLine(i int) decor.DecorFunc {
	return func(decor.Statistics) string {
		l.mu.Lock()
		defer l.mu.Unlock()
		k := len(l.out) - l.nwin + i
		if l.gone {
			return ""
		}
		if k < 0 || k >= len(l.out) {
			return "   │"
		}
		return "   │ " + strings.Map(printable, l.out[k])
	}
}

// printable drops control characters, which would break the display.
func printable(r rune) rune {
	if r == '\t' {
		return ' '
	}
	if r < 0x20 || r == 0x7f {
		return -1
	}
	return r
}

// transfer shows a bar (known total) or a counter (unknown) with the rate
// and, for a bar, the time left; the row goes when the transfer ends.
func (t *TTY) transfer(e Event) {
	tr, ok := t.transfers[e.ID]
	if !ok {
		if e.Final {
			return
		}
		tr = &transfer{e: e}
		style := mpb.BarFillerBuilder(mpb.NopStyle())
		if e.Total > 0 {
			style = mpb.BarStyle()
		}
		tr.bar = t.progress().New(max(e.Total, -1), style, mpb.BarNoPop(), mpb.BarRemoveOnComplete(),
			mpb.BarPriority(1<<30+t.next), mpb.PrependDecorators(decor.Name("   "+e.Name, decor.WCSyncSpaceR)),
			mpb.AppendDecorators(decor.Any(tr.figures)))
		t.next++
		t.transfers[e.ID] = tr
	}
	tr.mu.Lock()
	tr.e = e
	tr.mu.Unlock()
	if e.Total > 0 {
		tr.bar.SetTotal(e.Total, false)
	}
	tr.bar.SetCurrent(min(e.Done, max(e.Total, e.Done)))
	if e.Final {
		delete(t.transfers, e.ID)
		tr.bar.SetTotal(-1, true)
	}
}

// figures are "12.0 MiB / 28.6 MiB  40.1 MiB/s  eta 1s", or without a
// total "12.0 MiB  40.1 MiB/s".
func (tr *transfer) figures(decor.Statistics) string {
	tr.mu.Lock()
	e := tr.e
	tr.mu.Unlock()
	rate := float64(e.Done) / max(e.Elapsed.Seconds(), 1e-3)
	s := HumanBytes(e.Done)
	if e.Total > 0 {
		s += " / " + HumanBytes(e.Total)
	}
	s += "  " + HumanBytes(int64(rate)) + "/s"
	if e.Total > e.Done && rate > 0 {
		s += "  eta " + time.Duration(float64(e.Total-e.Done)/rate*float64(time.Second)).Round(time.Second).String()
	}
	return s
}

// close ends the display and prints what follows it: the failing step's
// output, or a note on the interruption, or the summary.
func (t *TTY) close() {
	t.closed = true
	status := OK
	if t.result != nil {
		status = t.result.Status
	}
	state := map[string]string{OK: "done", Fail: Failed}[status]
	if state == "" {
		state = Interrupted
	}
	for _, l := range t.order {
		l.mu.Lock()
		running := l.state == "running"
		l.mu.Unlock()
		if running {
			t.finish(l, state, time.Since(l.start))
			t.stopped = append(t.stopped, l.label)
		}
	}
	for id, tr := range t.transfers {
		tr.bar.Abort(true)
		delete(t.transfers, id)
	}
	if t.p != nil {
		t.p.Wait()
		// mpb is done: what its last frame did not carry goes out here.
		t.shown.mu.Lock()
		for _, l := range t.shown.lines {
			fmt.Fprintln(t.out, l)
		}
		t.shown.lines = nil
		t.shown.mu.Unlock()
	}
	switch status {
	case Fail:
		t.printFailure()
	case Interrupted:
		if len(t.stopped) > 0 {
			fmt.Fprintf(t.out, "interrupted: stopped %s; its sandbox and partial work were removed\n", strings.Join(t.stopped, ", "))
		} else {
			fmt.Fprintln(t.out, "interrupted")
		}
	default:
		t.printSummary()
	}
}

func (t *TTY) printFailure() {
	l := t.failed
	if l == nil {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	fmt.Fprintf(t.out, "── output of %s (%d lines) ──\n", l.label, len(l.out)+l.dropped)
	if l.dropped > 0 {
		fmt.Fprintf(t.out, "   (%d earlier lines not kept)\n", l.dropped)
	}
	for _, s := range l.out {
		fmt.Fprintln(t.out, s)
	}
	fmt.Fprintln(t.out, "──")
}

func (t *TTY) printSummary() {
	r := t.result
	if r == nil || r.Summary == nil {
		return
	}
	s := r.Summary
	fmt.Fprintf(t.out, "Built %s in %s: %d steps run, %d cached\n", s.Recipe, roundDur(r.Elapsed), t.tally.run, t.tally.cached)
	if len(t.tally.stages) > 0 {
		parts := make([]string, 0, len(t.tally.stages))
		for _, st := range t.tally.stages {
			parts = append(parts, st.Name+" "+roundDur(time.Duration(st.Elapsed)).String())
		}
		fmt.Fprintf(t.out, "  stages   %s\n", strings.Join(parts, ", "))
	}
	if s.Image != "" {
		fmt.Fprintf(t.out, "  image    %s\n", s.Image)
	}
	for _, f := range s.Outputs {
		fmt.Fprintf(t.out, "  output   %s (%s)\n", f.Path, HumanBytes(f.Size))
	}
	for _, k := range sortedKeys(s.Published) {
		fmt.Fprintf(t.out, "  %-8s %v\n", k, s.Published[k])
	}
}

// messageText is a log record as one line: "warning: msg key=value".
func messageText(e Event) string {
	var b strings.Builder
	switch {
	case e.Level >= slog.LevelError:
		b.WriteString("error: ")
	case e.Level >= slog.LevelWarn:
		b.WriteString("warning: ")
	}
	b.WriteString(e.Msg)
	for _, a := range e.Attrs {
		if isEmpty(a) {
			continue
		}
		fmt.Fprintf(&b, " %s=%s", a.Key, a.Value.String())
	}
	return strings.Map(printable, b.String())
}

// HumanBytes writes n in binary units: 512 B, 1.5 KiB, 3.2 GiB.
func HumanBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}

// frameStart writes each frame from the start of the line, and notes the
// printed lines it carried.
type frameStart struct {
	w     io.Writer
	shown *pending
}

func (f frameStart) Write(p []byte) (int, error) {
	if _, err := f.w.Write(append([]byte{'\r'}, p...)); err != nil {
		return 0, err
	}
	f.shown.sent(p)
	return len(p), nil
}
