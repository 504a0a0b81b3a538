package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"time"
)

// ttyHandler prints compact, coloured lines with the time since start, for
// people watching a terminal.
type ttyHandler struct {
	mu    *sync.Mutex
	w     io.Writer
	level slog.Level
	start time.Time
	attrs []slog.Attr
}

func newTTYHandler(w io.Writer, level slog.Level) *ttyHandler {
	return &ttyHandler{mu: &sync.Mutex{}, w: w, level: level, start: time.Now()}
}

func (h *ttyHandler) Enabled(_ context.Context, l slog.Level) bool { return l >= h.level }

func (h *ttyHandler) Handle(_ context.Context, r slog.Record) error {
	var b strings.Builder
	color := "\x1b[36m"
	switch {
	case r.Level >= slog.LevelError:
		color = "\x1b[31m"
	case r.Level >= slog.LevelWarn:
		color = "\x1b[33m"
	}
	fmt.Fprintf(&b, "\x1b[2m%6.1fs\x1b[0m %s%s\x1b[0m", time.Since(h.start).Seconds(), color, r.Message)
	add := func(a slog.Attr) bool {
		v := a.Value.String()
		if a.Key == "status" {
			c := "\x1b[32m"
			if v == "MISS" {
				c = "\x1b[33m"
			}
			fmt.Fprintf(&b, " %s%s\x1b[0m", c, v)
			return true
		}
		fmt.Fprintf(&b, " \x1b[2m%s=\x1b[0m%s", a.Key, v)
		return true
	}
	for _, a := range h.attrs {
		add(a)
	}
	r.Attrs(add)
	b.WriteByte('\n')
	h.mu.Lock()
	defer h.mu.Unlock()
	_, err := io.WriteString(h.w, b.String())
	return err
}

func (h *ttyHandler) WithAttrs(as []slog.Attr) slog.Handler {
	n := *h
	n.attrs = append(append([]slog.Attr(nil), h.attrs...), as...)
	return &n
}

func (h *ttyHandler) WithGroup(string) slog.Handler { return h }
