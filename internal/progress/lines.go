package progress

import (
	"bytes"
	"sync"
	"time"
)

// maxLine caps one output line; a longer one is split.
const maxLine = 64 << 10

// Lines returns a writer that sends each line written to it as an Output
// event of step. Close sends a last line that did not end in a newline.
func Lines(s Sink, step string) *LineWriter {
	return &LineWriter{sink: s, step: step}
}

// LineWriter turns a step's output into Output events, one a line.
type LineWriter struct {
	mu   sync.Mutex
	sink Sink
	step string
	buf  []byte
}

func (w *LineWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf = append(w.buf, p...)
	for {
		i := bytes.IndexByte(w.buf, '\n')
		if i < 0 {
			if len(w.buf) >= maxLine {
				w.emit(w.buf[:maxLine])
				w.buf = w.buf[maxLine:]
				continue
			}
			break
		}
		w.emit(w.buf[:i])
		w.buf = w.buf[i+1:]
	}
	if len(w.buf) == 0 {
		w.buf = nil // let a large write's array go
	}
	return len(p), nil
}

// Close sends what is left of an unfinished line.
func (w *LineWriter) Close() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.buf) > 0 {
		w.emit(w.buf)
		w.buf = nil
	}
	return nil
}

func (w *LineWriter) emit(line []byte) {
	line = bytes.TrimSuffix(line, []byte("\r"))
	w.sink.Emit(Event{Type: Output, Time: time.Now(), Step: w.step, Line: string(line)})
}
