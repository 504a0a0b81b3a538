package progress

import (
	"context"
	"log/slog"
)

// Handler is a slog.Handler that sends each record to a sink as a Message
// event: the TTY and JSON renderers show log lines that way.
type Handler struct {
	sink  Sink
	level slog.Leveler
	attrs []slog.Attr
	group string
}

// NewHandler sends records at level and above to s.
func NewHandler(s Sink, level slog.Leveler) *Handler {
	return &Handler{sink: s, level: level}
}

// Enabled reports whether l is at the handler's level or above.
func (h *Handler) Enabled(_ context.Context, l slog.Level) bool { return l >= h.level.Level() }

// Handle sends r as a Message event.
func (h *Handler) Handle(_ context.Context, r slog.Record) error {
	attrs := make([]slog.Attr, 0, len(h.attrs)+r.NumAttrs())
	attrs = append(attrs, h.attrs...)
	r.Attrs(func(a slog.Attr) bool {
		if h.group != "" {
			a.Key = h.group + "." + a.Key
		}
		attrs = append(attrs, a)
		return true
	})
	h.sink.Emit(Event{Type: Message, Time: r.Time, Level: r.Level, Msg: r.Message, Attrs: attrs})
	return nil
}

// WithAttrs returns a handler that adds as to every record.
func (h *Handler) WithAttrs(as []slog.Attr) slog.Handler {
	n := *h
	n.attrs = append(append([]slog.Attr(nil), h.attrs...), as...)
	return &n
}

// WithGroup returns a handler that qualifies later keys with name.
func (h *Handler) WithGroup(name string) slog.Handler {
	n := *h
	if n.group != "" {
		name = n.group + "." + name
	}
	n.group = name
	return &n
}

// NoEmpty wraps a handler, dropping attributes whose value is an empty
// string, so that plain lines never carry a bare "key=".
func NoEmpty(h slog.Handler) slog.Handler { return noEmpty{h} }

type noEmpty struct{ next slog.Handler }

func (n noEmpty) Enabled(ctx context.Context, l slog.Level) bool { return n.next.Enabled(ctx, l) }

func (n noEmpty) Handle(ctx context.Context, r slog.Record) error {
	out := slog.NewRecord(r.Time, r.Level, r.Message, r.PC)
	r.Attrs(func(a slog.Attr) bool {
		if !isEmpty(a) {
			out.AddAttrs(a)
		}
		return true
	})
	return n.next.Handle(ctx, out)
}

func (n noEmpty) WithAttrs(as []slog.Attr) slog.Handler {
	keep := make([]slog.Attr, 0, len(as))
	for _, a := range as {
		if !isEmpty(a) {
			keep = append(keep, a)
		}
	}
	return noEmpty{n.next.WithAttrs(keep)}
}

func (n noEmpty) WithGroup(name string) slog.Handler { return noEmpty{n.next.WithGroup(name)} }

func isEmpty(a slog.Attr) bool {
	v := a.Value.Resolve()
	return v.Kind() == slog.KindString && v.String() == ""
}
