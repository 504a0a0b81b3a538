package progress

import (
	"bufio"
	"bytes"
	"encoding/json"
	"log/slog"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/santhosh-tekuri/jsonschema/v6"
)

// t0 is when the sample build starts; every event is stamped after it.
var t0 = time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC)

func at(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }

// sampleBuild is a small build's events: a cached step, a step that runs
// with output, a long transfer, a log message, and the result.
func sampleBuild() []Event {
	return []Event{
		{Type: StageStarted, Time: at(0), Step: "base"},
		{Type: StageFinished, Time: at(12), Step: "base", Elapsed: 12 * time.Millisecond},
		{Type: StageStarted, Time: at(12), Step: "steps"},
		{Type: StepFinished, Time: at(14), Step: "tools", Index: 1, Count: 2, Kind: "copy", Status: "HIT", Key: "c4844a15af48", Layer: "cd1357e61ecd", Elapsed: 2 * time.Millisecond},
		{Type: StepStarted, Time: at(15), Step: "install", Index: 2, Count: 2, Kind: "run", Key: "156f79bcbd1c", Why: "its script changed"},
		{Type: Output, Time: at(100), Step: "install", Line: "Setting up curl (7.88.1) ..."},
		{Type: Transfer, Time: at(200), Step: "install", ID: "install: compressing the layer", Name: "compressing the layer", Done: 0, Elapsed: 0},
		{Type: Transfer, Time: at(5300), Step: "install", ID: "install: compressing the layer", Name: "compressing the layer", Done: 50 << 20, Total: 100 << 20, Elapsed: 5100 * time.Millisecond},
		{Type: Transfer, Time: at(5400), Step: "install", ID: "install: compressing the layer", Name: "compressing the layer", Done: 52 << 20, Total: 100 << 20, Elapsed: 5200 * time.Millisecond},
		{Type: Transfer, Time: at(9000), Step: "install", ID: "install: compressing the layer", Name: "compressing the layer", Done: 100 << 20, Total: 100 << 20, Elapsed: 8800 * time.Millisecond, Final: true},
		{Type: StepFinished, Time: at(9100), Step: "install", Index: 2, Count: 2, Kind: "run", Status: "MISS", Key: "156f79bcbd1c", Layer: "bd9ddc54bea9", Elapsed: 9085 * time.Millisecond},
		{Type: StageFinished, Time: at(9100), Step: "steps", Elapsed: 9088 * time.Millisecond},
		{Type: Message, Time: at(9200), Level: slog.LevelInfo, Msg: "wrote disk", Attrs: []slog.Attr{slog.String("format", "raw"), slog.Int64("size", 1<<30), slog.String("sha256", "")}},
		{Type: Result, Time: at(9300), Status: OK, Elapsed: 9300 * time.Millisecond, Summary: &Summary{Recipe: "web", Image: "sha256:" + strings.Repeat("ab", 32),
			Outputs: []File{{Path: "out/disk.raw", Size: 1 << 30}}, Published: map[string]any{"aws": map[string]string{"eu-west-1": "ami-0123"}}}},
	}
}

// TestPlainFormat checks plain mode's exact lines: key=value, no ANSI
// code, no empty value, output prefixed with its step, a long transfer
// every 5 seconds, and the summary.
func TestPlainFormat(t *testing.T) {
	var logs, out bytes.Buffer
	h := slog.NewTextHandler(&logs, &slog.HandlerOptions{ReplaceAttr: func(_ []string, a slog.Attr) slog.Attr {
		if a.Key == slog.TimeKey {
			return slog.Attr{}
		}
		return a
	}})
	p := NewPlain(h, &out)
	for _, e := range sampleBuild() {
		p.Emit(e)
	}
	want := `level=INFO msg=done step=tools status=HIT key=c4844a15af48 layer=cd1357e61ecd
level=INFO msg=running step=install kind=run why="its script changed"
level=INFO msg="compressing the layer" step=install MiB=50 of_MiB=100 MiB_per_s=9.8 eta=5s
level=INFO msg=done step=install status=MISS key=156f79bcbd1c layer=bd9ddc54bea9 elapsed=9.09s
level=INFO msg="wrote disk" format=raw size=1073741824
level=INFO msg=built recipe=web image=sha256:abababababababababababababababababababababababababababababababab executed=1 cached=1 elapsed=9.3s
level=INFO msg="stage times" base=12ms steps=9.09s
level=INFO msg=output file=out/disk.raw size=1073741824
level=INFO msg=published target=aws result=map[eu-west-1:ami-0123]
`
	if got := logs.String(); got != want {
		t.Errorf("plain log lines:\n%s\nwant:\n%s", got, want)
	}
	if got, want := out.String(), "[install] Setting up curl (7.88.1) ...\n"; got != want {
		t.Errorf("plain output: %q, want %q", got, want)
	}
	if bytes.ContainsRune(logs.Bytes(), 0x1b) || bytes.Contains(logs.Bytes(), []byte("= ")) || bytes.HasSuffix(bytes.TrimSpace(logs.Bytes()), []byte("=")) {
		t.Error("plain lines hold an ANSI code or an empty value")
	}
}

// TestJSONFormat checks JSON mode's exact lines, and validates every one
// against docs/progress.schema.json.
func TestJSONFormat(t *testing.T) {
	var buf bytes.Buffer
	j := NewJSON(&buf)
	for _, e := range sampleBuild() {
		j.Emit(e)
	}
	want := `{"time":"2026-11-29T12:00:00Z","event":"stage_started","stage":"base"}
{"time":"2026-11-29T12:00:00.012Z","event":"stage_finished","stage":"base","elapsed_ns":12000000}
{"time":"2026-11-29T12:00:00.012Z","event":"stage_started","stage":"steps"}
{"time":"2026-11-29T12:00:00.014Z","event":"step_finished","step":"tools","index":1,"count":2,"kind":"copy","status":"HIT","key":"c4844a15af48","layer":"cd1357e61ecd","elapsed_ns":2000000}
{"time":"2026-11-29T12:00:00.015Z","event":"step_started","step":"install","index":2,"count":2,"kind":"run","key":"156f79bcbd1c","why":"its script changed"}
{"time":"2026-11-29T12:00:00.1Z","event":"output","step":"install","line":"Setting up curl (7.88.1) ..."}
{"time":"2026-11-29T12:00:00.2Z","event":"progress","id":"install: compressing the layer","step":"install","name":"compressing the layer","done":0,"elapsed_ns":0}
{"time":"2026-11-29T12:00:05.3Z","event":"progress","id":"install: compressing the layer","step":"install","name":"compressing the layer","done":52428800,"total":104857600,"elapsed_ns":5100000000}
{"time":"2026-11-29T12:00:09Z","event":"progress","id":"install: compressing the layer","step":"install","name":"compressing the layer","done":104857600,"total":104857600,"elapsed_ns":8800000000,"final":true}
{"time":"2026-11-29T12:00:09.1Z","event":"step_finished","step":"install","index":2,"count":2,"kind":"run","status":"MISS","key":"156f79bcbd1c","layer":"bd9ddc54bea9","elapsed_ns":9085000000}
{"time":"2026-11-29T12:00:09.1Z","event":"stage_finished","stage":"steps","elapsed_ns":9088000000}
{"time":"2026-11-29T12:00:09.2Z","event":"message","level":"INFO","msg":"wrote disk","attrs":{"format":"raw","sha256":"","size":1073741824}}
{"time":"2026-11-29T12:00:09.3Z","event":"result","status":"ok","recipe":"web","image":"sha256:abababababababababababababababababababababababababababababababab","steps_run":1,"steps_cached":1,"elapsed_ns":9300000000,"stages":[{"name":"base","elapsed_ns":12000000},{"name":"steps","elapsed_ns":9088000000}],"outputs":[{"path":"out/disk.raw","size":1073741824}],"published":{"aws":{"eu-west-1":"ami-0123"}}}
`
	if got := buf.String(); got != want {
		t.Errorf("JSON lines:\n%s\nwant:\n%s", got, want)
	}
	validate(t, buf.Bytes())
}

// TestJSONFailure checks a failed step's and a failed build's lines.
func TestJSONFailure(t *testing.T) {
	var buf bytes.Buffer
	j := NewJSON(&buf)
	j.Emit(Event{Type: StepFinished, Time: at(5), Step: "install", Index: 1, Count: 1, Kind: "run", Status: Failed, Key: "156f79bcbd1c", Elapsed: 5 * time.Millisecond, Err: "exit status 3"})
	j.Emit(Event{Type: Result, Time: at(6), Status: Fail, Elapsed: 6 * time.Millisecond, Err: "step 1 (install): exit status 3"})
	want := `{"time":"2026-11-29T12:00:00.005Z","event":"step_finished","step":"install","index":1,"count":1,"kind":"run","status":"FAILED","key":"156f79bcbd1c","elapsed_ns":5000000,"error":"exit status 3"}
{"time":"2026-11-29T12:00:00.006Z","event":"result","status":"failed","steps_run":0,"steps_cached":0,"elapsed_ns":6000000,"stages":[],"error":"step 1 (install): exit status 3"}
`
	if got := buf.String(); got != want {
		t.Errorf("JSON lines:\n%s\nwant:\n%s", got, want)
	}
	validate(t, buf.Bytes())
}

// validate checks each line of lines against docs/progress.schema.json.
func validate(t *testing.T, lines []byte) {
	t.Helper()
	sch := schema(t)
	sc := bufio.NewScanner(bytes.NewReader(lines))
	for sc.Scan() {
		v, err := jsonschema.UnmarshalJSON(bytes.NewReader(sc.Bytes()))
		if err != nil {
			t.Fatalf("%s: %v", sc.Text(), err)
		}
		if err := sch.Validate(v); err != nil {
			t.Errorf("%s: %v", sc.Text(), err)
		}
	}
}

// TestSchemaRejects makes sure the schema is not vacuous: an unknown
// event, a step without its status, an empty key.
func TestSchemaRejects(t *testing.T) {
	for _, line := range []string{
		`{"time":"2026-11-29T12:00:00Z","event":"party"}`,
		`{"time":"2026-11-29T12:00:00Z","event":"step_finished","step":"x","elapsed_ns":1}`,
		`{"time":"2026-11-29T12:00:00Z","event":"step_started","step":"x","key":""}`,
		`{"time":"yesterday","event":"stage_started","stage":"base"}`,
	} {
		if validates(t, line) {
			t.Errorf("the schema accepts %s", line)
		}
	}
}

func validates(t *testing.T, line string) bool {
	t.Helper()
	v, err := jsonschema.UnmarshalJSON(strings.NewReader(line))
	if err != nil {
		t.Fatal(err)
	}
	return schema(t).Validate(v) == nil
}

// schema compiles docs/progress.schema.json, checking formats too.
func schema(t *testing.T) *jsonschema.Schema {
	t.Helper()
	f, err := os.Open("../../docs/progress.schema.json")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	doc, err := jsonschema.UnmarshalJSON(f)
	if err != nil {
		t.Fatal(err)
	}
	c := jsonschema.NewCompiler()
	c.AssertFormat()
	if err := c.AddResource("progress.schema.json", doc); err != nil {
		t.Fatal(err)
	}
	sch, err := c.Compile("progress.schema.json")
	if err != nil {
		t.Fatal(err)
	}
	return sch
}

// TestLines checks that output is split into lines, a CR dropped, and an
// unfinished last line sent on Close.
func TestLines(t *testing.T) {
	var got []string
	w := Lines(sinkFunc(func(e Event) { got = append(got, e.Step+"|"+e.Line) }), "s")
	w.Write([]byte("one\r\ntw"))
	w.Write([]byte("o\nthree"))
	w.Close()
	if want := []string{"s|one", "s|two", "s|three"}; strings.Join(got, ",") != strings.Join(want, ",") {
		t.Errorf("lines %q, want %q", got, want)
	}
}

type sinkFunc func(Event)

func (f sinkFunc) Emit(e Event) { f(e) }

// TestMeter checks that a transfer counts what passes and ends with a
// final event, and that with no sink it costs nothing and fails nothing.
func TestMeter(t *testing.T) {
	var evs []Event
	ctx := WithStep(WithSink(t.Context(), sinkFunc(func(e Event) { evs = append(evs, e) })), "copy")
	m := Start(ctx, "copying", 10)
	w := m.Writer(&bytes.Buffer{})
	w.Write([]byte("hello"))
	w.Write([]byte("world"))
	m.Finish()
	last := evs[len(evs)-1]
	if !last.Final || last.Done != 10 || last.Total != 10 || last.ID != "copy: copying" || last.Step != "copy" {
		t.Errorf("last event %+v", last)
	}
	var none *Meter = Start(t.Context(), "x", 1)
	none.Add(1)
	none.Finish()
	if r := none.Reader(strings.NewReader("a")); r == nil {
		t.Error("a nil meter's reader is nil")
	}
}

// TestJSONMessageAttrs checks that a log record's values keep their JSON
// types, durations and errors as text.
func TestJSONMessageAttrs(t *testing.T) {
	var buf bytes.Buffer
	log := slog.New(NewHandler(NewJSON(&buf), slog.LevelInfo))
	log.Debug("hidden")
	log.With("target", "aws").Warn("slow", "elapsed", 1500*time.Millisecond, "n", 3, "err", os.ErrNotExist)
	var m map[string]any
	if err := json.Unmarshal(buf.Bytes(), &m); err != nil {
		t.Fatalf("%s: %v", buf.String(), err)
	}
	attrs := m["attrs"].(map[string]any)
	if m["level"] != "WARN" || attrs["target"] != "aws" || attrs["elapsed"] != "1.5s" || attrs["n"] != 3.0 || attrs["err"] != "file does not exist" {
		t.Errorf("message %s", buf.String())
	}
	validate(t, buf.Bytes())
}
