package progress

import (
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"sync"
	"time"
)

// JSONEvery is how often JSON reports one transfer at most (besides its
// first and last event).
const JSONEvery = time.Second

// JSON renders each event as one JSON object a line, as
// docs/progress.schema.json describes.
type JSON struct {
	mu    sync.Mutex
	w     io.Writer
	enc   *json.Encoder
	every time.Duration
	tally tally
	shown map[string]time.Time
}

// NewJSON writes events to w.
func NewJSON(w io.Writer) *JSON {
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	return &JSON{w: w, enc: enc, every: JSONEvery, shown: map[string]time.Time{}}
}

// The shapes of the lines, one per event type; field order is line order.
type (
	jsonHead struct {
		Time  string `json:"time"`
		Event Type   `json:"event"`
	}
	jsonStep struct {
		jsonHead
		Step    string `json:"step"`
		Index   int    `json:"index,omitempty"`
		Count   int    `json:"count,omitempty"`
		Kind    string `json:"kind,omitempty"`
		Status  string `json:"status,omitempty"`
		Key     string `json:"key,omitempty"`
		Layer   string `json:"layer,omitempty"`
		Why     string `json:"why,omitempty"`
		Elapsed *int64 `json:"elapsed_ns,omitempty"`
		Err     string `json:"error,omitempty"`
	}
	jsonStage struct {
		jsonHead
		Stage   string `json:"stage"`
		Elapsed *int64 `json:"elapsed_ns,omitempty"`
	}
	jsonOutput struct {
		jsonHead
		Step string `json:"step,omitempty"`
		Line string `json:"line"`
	}
	jsonTransfer struct {
		jsonHead
		ID      string `json:"id"`
		Step    string `json:"step,omitempty"`
		Name    string `json:"name"`
		Done    int64  `json:"done"`
		Total   int64  `json:"total,omitempty"`
		Elapsed int64  `json:"elapsed_ns"`
		Final   bool   `json:"final,omitempty"`
	}
	jsonMessage struct {
		jsonHead
		Level string         `json:"level"`
		Msg   string         `json:"msg"`
		Attrs map[string]any `json:"attrs,omitempty"`
	}
	jsonFile struct {
		Path string `json:"path"`
		Size int64  `json:"size"`
	}
	jsonResult struct {
		jsonHead
		Status    string         `json:"status"`
		Recipe    string         `json:"recipe,omitempty"`
		Image     string         `json:"image,omitempty"`
		Run       int            `json:"steps_run"`
		Cached    int            `json:"steps_cached"`
		Elapsed   int64          `json:"elapsed_ns"`
		Stages    []stageTime    `json:"stages"`
		Outputs   []jsonFile     `json:"outputs,omitempty"`
		Published map[string]any `json:"published,omitempty"`
		Err       string         `json:"error,omitempty"`
	}
)

// Emit writes e as one line.
func (j *JSON) Emit(e Event) {
	j.mu.Lock()
	defer j.mu.Unlock()
	j.tally.add(e)
	head := jsonHead{Time: e.Time.UTC().Format(time.RFC3339Nano), Event: e.Type}
	var v any
	switch e.Type {
	case StepStarted, StepFinished:
		s := jsonStep{jsonHead: head, Step: e.Step, Index: e.Index, Count: e.Count, Kind: e.Kind,
			Status: e.Status, Key: e.Key, Layer: e.Layer, Why: e.Why, Err: e.Err}
		if e.Type == StepFinished {
			s.Elapsed = ptr(int64(e.Elapsed))
		}
		v = s
	case StageStarted, StageFinished:
		s := jsonStage{jsonHead: head, Stage: e.Step}
		if e.Type == StageFinished {
			s.Elapsed = ptr(int64(e.Elapsed))
		}
		v = s
	case Output:
		v = jsonOutput{jsonHead: head, Step: e.Step, Line: e.Line}
	case Transfer:
		if !j.due(e) {
			return
		}
		v = jsonTransfer{jsonHead: head, ID: e.ID, Step: e.Step, Name: e.Name, Done: e.Done, Total: e.Total, Elapsed: int64(e.Elapsed), Final: e.Final}
	case Message:
		v = jsonMessage{jsonHead: head, Level: e.Level.String(), Msg: e.Msg, Attrs: attrMap(e.Attrs)}
	case Result:
		r := jsonResult{jsonHead: head, Status: e.Status, Run: j.tally.run, Cached: j.tally.cached,
			Elapsed: int64(e.Elapsed), Stages: slices.Clip(append([]stageTime{}, j.tally.stages...)), Err: e.Err}
		if s := e.Summary; s != nil {
			r.Recipe, r.Image, r.Published = s.Recipe, s.Image, s.Published
			for _, f := range s.Outputs {
				r.Outputs = append(r.Outputs, jsonFile(f))
			}
		}
		v = r
	default:
		return
	}
	_ = j.enc.Encode(v) // a line that cannot be written is not the build's failure
}

// due says whether a transfer event is worth a line: its first, its last,
// and at most one every j.every between.
func (j *JSON) due(e Event) bool {
	last, seen := j.shown[e.ID]
	switch {
	case e.Final:
		delete(j.shown, e.ID)
		return true
	case seen && e.Time.Sub(last) < j.every:
		return false
	}
	j.shown[e.ID] = e.Time
	return true
}

func ptr[T any](v T) *T { return &v }

// attrMap turns log attributes into a JSON object; groups nest.
func attrMap(as []slog.Attr) map[string]any {
	if len(as) == 0 {
		return nil
	}
	m := make(map[string]any, len(as))
	for _, a := range as {
		v := a.Value.Resolve()
		switch v.Kind() {
		case slog.KindGroup:
			m[a.Key] = attrMap(v.Group())
		case slog.KindDuration:
			m[a.Key] = v.Duration().String()
		case slog.KindTime:
			m[a.Key] = v.Time().UTC().Format(time.RFC3339Nano)
		case slog.KindAny:
			switch x := v.Any().(type) {
			case error:
				m[a.Key] = x.Error()
			case fmt.Stringer:
				m[a.Key] = x.String()
			default:
				if _, err := json.Marshal(x); err != nil {
					m[a.Key] = fmt.Sprint(x)
				} else {
					m[a.Key] = x
				}
			}
		default:
			m[a.Key] = v.Any()
		}
	}
	return m
}

func sortedKeys(m map[string]any) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
