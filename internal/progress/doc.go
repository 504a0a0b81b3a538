// Package progress is the build's event model and its three renderers.
//
// The orchestrator and the stages report what happens as Events to a Sink:
// a step started or finished (with its cache status and key), a stage
// started or finished, a line of a step's output, the bytes a transfer has
// moved (pulls, pushes, layer compression, uploads), a log message, and the
// final result. The Sink travels in the context (WithSink, FromContext), so
// a stage reports progress without another parameter, as BuildKit's
// progress writers do.
//
// The CLI picks one renderer: Plain (log lines through log/slog, greppable,
// no ANSI codes, no empty values), JSON (one event per line, the schema in
// docs/progress.schema.json) or TTY (a redrawn display drawn by mpb: one
// line per step, the running step's last output lines, a bar per transfer,
// and a summary).
package progress
