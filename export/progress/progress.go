package progress

import (
	"context"
	"log/slog"
	"sync/atomic"
	"time"

	events "github.com/layerimg/layerimg/internal/progress"
)

// Meter counts items and bytes sent towards a known total of bytes.
type Meter struct {
	log   *slog.Logger
	msg   string
	unit  string // what an item is: "blocks", "ranges"
	total int64
	start time.Time
	items atomic.Int64
	bytes atomic.Int64
	stop  chan struct{}
	done  chan struct{}
	// sink, when the context carries a progress sink, gets the bytes as
	// they go; the display shows them, so the periodic lines are not made.
	sink *events.Meter
}

// Start reports every interval until Stop. total is the bytes expected.
// With a progress sink in ctx, the sink gets the bytes instead of the
// periodic lines; the final line stays.
func Start(ctx context.Context, log *slog.Logger, msg, unit string, total int64, interval time.Duration) *Meter {
	m := &Meter{log: log, msg: msg, unit: unit, total: total, start: time.Now(), stop: make(chan struct{}), done: make(chan struct{})}
	if events.FromContext(ctx) != nil {
		m.sink = events.Start(ctx, msg, total)
		interval = time.Duration(1<<63 - 1) // no periodic lines
	}
	go func() {
		defer close(m.done)
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			select {
			case <-t.C:
				m.report(false)
			case <-m.stop:
				return
			case <-ctx.Done():
				return
			}
		}
	}()
	return m
}

// Add counts one item of n bytes.
func (m *Meter) Add(n int64) {
	m.items.Add(1)
	m.bytes.Add(n)
	m.sink.Add(n)
}

// Stop ends the reports with a final line.
func (m *Meter) Stop() {
	close(m.stop)
	<-m.done
	m.sink.Finish()
	m.report(true)
}

func (m *Meter) report(final bool) {
	el := time.Since(m.start)
	b := m.bytes.Load()
	rate := float64(b) / max(el.Seconds(), 1e-3)
	attrs := []any{m.unit, m.items.Load(), "MiB", b >> 20, "of_MiB", m.total >> 20,
		"MiB_per_s", float64(int(rate/(1<<20)*10)) / 10}
	if final {
		attrs = append(attrs, "elapsed", el.Round(time.Millisecond))
	} else if rate > 0 && b < m.total {
		attrs = append(attrs, "eta", time.Duration(float64(m.total-b)/rate*float64(time.Second)).Round(time.Second))
	}
	m.log.Info(m.msg, attrs...)
}
