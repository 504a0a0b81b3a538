package layers

import (
	"context"
	"strings"
	"sync"
	"testing"

	"github.com/layerimg/layerimg/internal/progress"
)

type events struct {
	mu sync.Mutex
	ev []progress.Event
}

func (e *events) Emit(ev progress.Event) {
	e.mu.Lock()
	e.ev = append(e.ev, ev)
	e.mu.Unlock()
}

// Lines as mmdebstrap --verbose prints them (Debian 12), trimmed.
const mmdebstrapOutput = `I: running apt-get update...
Get:1 http://deb.debian.org/debian bookworm InRelease [151 kB]
Get:2 http://deb.debian.org/debian bookworm/main amd64 Packages [8790 kB]
Fetched 8941 kB in 1s (6906 kB/s)
I: downloading packages with apt...
0 upgraded, 3 newly installed, 0 to remove and 0 not upgraded.
Need to get 2,834 kB of archives.
After this operation, 139 MB of additional disk space will be used.
Get:1 http://deb.debian.org/debian bookworm/main amd64 gcc-12-base amd64 12.2.0-14+deb12u1 [37.6 kB]
Get:2 http://deb.debian.org/debian bookworm/main amd64 libc6 amd64 2.36-9+deb12u14 [2759 kB]
Get:3 http://deb.debian.org/debian bookworm/main amd64 mawk amd64 1.3.4.20200120-3.1 [37.6 kB]
Fetched 2834 kB in 2s (1417 kB/s)
I: installing essential packages...
Unpacking libc6:amd64 (2.36-9+deb12u14) ...
Setting up libc6:amd64 (2.36-9+deb12u14) ...
dpkg: warning: something worth seeing
Need to get 9750 kB/10.1 MB of archives.
Get:1 http://deb.debian.org/debian bookworm/main amd64 less amd64 590-2.1~deb12u2 [132 kB]
E: a failure, unfinished`

func TestAptProgress(t *testing.T) {
	var ev events
	var out strings.Builder
	ap := newAptProgress(progress.WithSink(context.Background(), &ev), &out)
	// In odd pieces, as a pipe delivers them.
	for s := mmdebstrapOutput; len(s) > 0; {
		n := min(len(s), 37)
		ap.Write([]byte(s[:n]))
		s = s[n:]
	}
	ap.Close()
	var finals []progress.Event
	for _, e := range ev.ev {
		if e.Type == progress.Transfer && e.Final {
			finals = append(finals, e)
		}
	}
	if len(finals) != 2 {
		t.Fatalf("%d downloads ended, want 2: %+v", len(finals), ev.ev)
	}
	if f := finals[0]; f.Total != 2834000 || f.Done != 37600+2759000+37600 {
		t.Errorf("first download: %d of %d", f.Done, f.Total)
	}
	if f := finals[1]; f.Total != 9750000 || f.Done != 132000 {
		t.Errorf("second download (cut short): %d of %d", f.Done, f.Total)
	}
	got := out.String()
	for _, want := range []string{"I: downloading packages with apt...\n", "I: installing essential packages...\n", "E: a failure, unfinished"} {
		if !strings.Contains(got, want) {
			t.Errorf("output lacks %q:\n%s", want, got)
		}
	}
	for _, noise := range []string{"Get:", "Unpacking", "Setting up", "Need to get", "dpkg: warning"} {
		if strings.Contains(got, noise) {
			t.Errorf("output keeps %q lines:\n%s", noise, got)
		}
	}
	// On a failure, what apt and dpkg said last is shown.
	out.Reset()
	ap.Replay()
	if got := out.String(); !strings.Contains(got, "dpkg: warning: something worth seeing\nNeed to get 9750 kB/10.1 MB of archives.\nGet:1 ") {
		t.Errorf("replay:\n%s", got)
	}
}

func TestAptBytes(t *testing.T) {
	for in, want := range map[string]int64{"29.7 MB": 29700000, "9750 kB": 9750000, "1,234 kB": 1234000, "512 B": 512, "2 GB": 2e9, "x": 0, "1 TB": 0} {
		if got := aptBytes(in); got != want {
			t.Errorf("%q: %d, want %d", in, got, want)
		}
	}
}
