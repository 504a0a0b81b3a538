package layers

import (
	"bytes"
	"context"
	"io"
	"math"
	"regexp"
	"strconv"
	"strings"

	"github.com/layerimg/layerimg/internal/progress"
)

// aptProgress reads mmdebstrap's verbose output: apt's "Need to get N of
// archives." starts a download of N bytes and each "Get:" line adds its
// package's size, so the display shows a bar with a rate and an ETA for
// the longest part of a bootstrap. It passes on to w only mmdebstrap's own
// lines (I:, W:, E:), as mmdebstrap prints them without --verbose: apt's
// and dpkg's hundreds of lines (with the "ignoring pre-dependency problem"
// warnings a bootstrap always gives) would bury them. The last of those
// lines are kept for Replay, when mmdebstrap fails.
type aptProgress struct {
	ctx     context.Context
	w       io.Writer
	partial []byte
	meter   *progress.Meter
	kept    []string // the last keptLines lines not passed on
}

const keptLines = 200

func newAptProgress(ctx context.Context, w io.Writer) *aptProgress {
	if w == nil {
		w = io.Discard
	}
	return &aptProgress{ctx: ctx, w: w}
}

var (
	aptNeed        = regexp.MustCompile(`^Need to get ([0-9.,]+ [kMG]?B)(?:/[0-9.,]+ [kMG]?B)? of archives\.`)
	aptGet         = regexp.MustCompile(`^Get:[0-9]+ .* \[([0-9.,]+ [kMG]?B)\]$`)
	mmdebstrapLine = regexp.MustCompile(`^[IWE]: `)
)

func (a *aptProgress) Write(p []byte) (int, error) {
	a.partial = append(a.partial, p...)
	for {
		i := bytes.IndexByte(a.partial, '\n')
		if i < 0 {
			return len(p), nil
		}
		line := string(a.partial[:i])
		a.partial = a.partial[i+1:]
		if err := a.line(line); err != nil {
			return len(p), err
		}
	}
}

func (a *aptProgress) line(line string) error {
	switch {
	case aptNeed.MatchString(line):
		a.finish()
		a.meter = progress.Start(a.ctx, "downloading packages", aptBytes(aptNeed.FindStringSubmatch(line)[1]))
	case a.meter != nil && aptGet.MatchString(line):
		a.meter.Add(aptBytes(aptGet.FindStringSubmatch(line)[1]))
	case strings.HasPrefix(line, "Fetched ") || strings.HasPrefix(line, "I: "):
		a.finish()
	}
	if !mmdebstrapLine.MatchString(line) {
		if len(a.kept) == keptLines {
			a.kept = a.kept[1:]
		}
		a.kept = append(a.kept, line)
		return nil
	}
	_, err := io.WriteString(a.w, line+"\n")
	return err
}

// Replay passes on the last lines held back: what apt and dpkg said just
// before a failure.
func (a *aptProgress) Replay() {
	for _, l := range a.kept {
		io.WriteString(a.w, l+"\n")
	}
	a.kept = nil
}

func (a *aptProgress) finish() {
	a.meter.Finish()
	a.meter = nil
}

// Close passes on a last line without its newline, and ends any download.
func (a *aptProgress) Close() error {
	a.finish()
	if len(a.partial) == 0 {
		return nil
	}
	_, err := a.w.Write(a.partial)
	a.partial = nil
	return err
}

// aptBytes reads apt's sizes: "29.7 MB", "9750 kB", "1,234 kB", "512 B"
// (SI units, as apt prints them). What it cannot read is 0: a bar with an
// unknown total, not an error.
func aptBytes(s string) int64 {
	num, unit, ok := strings.Cut(strings.ReplaceAll(s, ",", ""), " ")
	if !ok {
		return 0
	}
	f, err := strconv.ParseFloat(num, 64)
	if err != nil {
		return 0
	}
	mult := map[string]float64{"B": 1, "kB": 1e3, "MB": 1e6, "GB": 1e9}[unit]
	return int64(math.Round(f * mult))
}
