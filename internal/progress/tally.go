package progress

import (
	"strings"
	"time"
)

// tally is what every renderer counts for the summary: steps run and
// cached, and each stage's time, in the order the stages finished.
type tally struct {
	run, cached int
	stages      []stageTime
}

type stageTime struct {
	Name    string `json:"name"`
	Elapsed int64  `json:"elapsed_ns"`
}

func (t *tally) add(e Event) {
	switch e.Type {
	case StepFinished:
		switch {
		case e.Kind == "test":
		case e.Status == "MISS":
			t.run++
		case strings.HasPrefix(e.Status, "HIT"):
			t.cached++
		}
	case StageFinished:
		t.stages = append(t.stages, stageTime{e.Step, int64(e.Elapsed)})
	}
}

// stageList is the stages' times as "base 12ms, steps 1.2s".
func (t *tally) stageList() []stageTime { return t.stages }

func roundDur(d time.Duration) time.Duration {
	switch {
	case d >= 10*time.Second:
		return d.Round(100 * time.Millisecond)
	case d >= time.Second:
		return d.Round(10 * time.Millisecond)
	}
	return d.Round(time.Millisecond)
}
