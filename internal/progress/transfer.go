package progress

import (
	"context"
	"io"
	"sync/atomic"
	"time"
)

// transferEvery is how often a transfer reports at most; renderers may
// show fewer of its events.
const transferEvery = 100 * time.Millisecond

// Meter counts one transfer's bytes and reports them to a sink, at most
// every 100ms and once at the end. A nil *Meter (no sink in the context)
// counts nothing and costs nothing, so callers need no test.
type Meter struct {
	sink  Sink
	ev    Event
	start time.Time
	total atomic.Int64
	done  atomic.Int64
	last  atomic.Int64 // when it last reported, in ns since start
}

// Start begins a transfer named name (what it moves: "pulling layer
// sha256:1234"), of total bytes (0 when unknown), on ctx's sink. Its ID
// is the step's name, if any, and name.
func Start(ctx context.Context, name string, total int64) *Meter {
	sc, ok := ctx.Value(ctxKey{}).(scope)
	if !ok {
		return nil
	}
	id := name
	if sc.step != "" {
		id = sc.step + ": " + name
	}
	m := &Meter{sink: sc.sink, start: time.Now(),
		ev: Event{Type: Transfer, Step: sc.step, ID: id, Name: name}}
	m.total.Store(total)
	m.report(m.start, false)
	return m
}

// Add counts n more bytes.
func (m *Meter) Add(n int64) {
	if m == nil {
		return
	}
	m.done.Add(n)
	now := time.Now()
	el := int64(now.Sub(m.start))
	last := m.last.Load()
	if el-last >= int64(transferEvery) && m.last.CompareAndSwap(last, el) {
		m.report(now, false)
	}
}

// SetTotal changes the expected total, once it is known.
func (m *Meter) SetTotal(total int64) {
	if m == nil {
		return
	}
	m.total.Store(total)
}

// Finish reports the transfer's end; its last event has Final set.
func (m *Meter) Finish() {
	if m == nil {
		return
	}
	m.report(time.Now(), true)
}

func (m *Meter) report(now time.Time, final bool) {
	e := m.ev
	e.Time, e.Done, e.Total, e.Final, e.Elapsed = now, m.done.Load(), m.total.Load(), final, now.Sub(m.start)
	m.sink.Emit(e)
}

// Reader counts the bytes read through r.
func (m *Meter) Reader(r io.Reader) io.Reader {
	if m == nil {
		return r
	}
	return &countReader{r: r, m: m}
}

// Writer counts the bytes written through w.
func (m *Meter) Writer(w io.Writer) io.Writer {
	if m == nil {
		return w
	}
	return &countWriter{w: w, m: m}
}

type countReader struct {
	r io.Reader
	m *Meter
}

func (c *countReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.m.Add(int64(n))
	return n, err
}

type countWriter struct {
	w io.Writer
	m *Meter
}

func (c *countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.m.Add(int64(n))
	return n, err
}
