package layers

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"net/http"
	neturl "net/url"
	"os"
	"strings"
	"time"

	"github.com/layerimg/layerimg/recipes"
)

// MirrorState is what one suite of a mirror published when a bootstrap
// base was keyed: the digest of its InRelease, which names (by digest)
// every index and so every package apt can install from it.
type MirrorState struct {
	Archive   string `json:"archive"`
	Suite     string `json:"suite"`
	URL       string `json:"url"`
	InRelease string `json:"inrelease"`
}

// Name is how plan names the suite: "debian-security bookworm-security".
func (m MirrorState) Name() string { return m.Archive + " " + m.Suite }

// maxInRelease bounds an InRelease download: Debian's are under 200 kB.
const maxInRelease = 16 << 20

// MirrorStates fetches each source's InRelease and returns its digest. A
// snapshot archive never changes, so its timestamp (in the spec) is its
// state and nothing is fetched.
func MirrorStates(ctx context.Context, srcs []recipes.AptSource, timeout time.Duration) ([]MirrorState, error) {
	if timeout <= 0 {
		timeout = 30 * time.Second
	}
	var out []MirrorState
	for _, s := range srcs {
		if s.Snapshot {
			continue
		}
		data, err := FetchMirrorFile(ctx, s.InRelease(), timeout, maxInRelease)
		if err != nil {
			return nil, fmt.Errorf("reading the state of %s %s: %w", s.Archive, s.Suite, err)
		}
		out = append(out, MirrorState{Archive: s.Archive, Suite: s.Suite, URL: s.InRelease(), InRelease: fmt.Sprintf("sha256:%x", sha256.Sum256(data))})
	}
	return out, nil
}

// FetchMirrorFile GETs url (http or https, as given) within timeout, and
// no more than limit bytes of it.
func FetchMirrorFile(ctx context.Context, url string, timeout time.Duration, limit int64) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, fmt.Errorf("GET %s: %w", url, err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		if ctx.Err() == context.DeadlineExceeded {
			return nil, fmt.Errorf("GET %s: no answer within %s", url, timeout)
		}
		var ue *neturl.Error
		if errors.As(err, &ue) {
			err = ue.Err // it would name the URL a second time
		}
		return nil, fmt.Errorf("GET %s: %w", url, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	data, err := io.ReadAll(io.LimitReader(resp.Body, limit+1))
	if err != nil {
		return nil, fmt.Errorf("GET %s: %w", url, err)
	}
	if int64(len(data)) > limit {
		return nil, fmt.Errorf("GET %s: larger than %d bytes", url, limit)
	}
	return data, nil
}

// checkMirrorState compares the InRelease digests apt read (sha256sum's
// output in file) with those the key was made from: a mirror that moved
// in between would give the layer a key that does not describe it.
func checkMirrorState(file string, want []MirrorState) error {
	if len(want) == 0 {
		return nil
	}
	data, err := os.ReadFile(file)
	if err != nil {
		return fmt.Errorf("reading the InRelease digests apt used: %w", err)
	}
	seen := map[string]bool{}
	for _, line := range strings.Split(string(data), "\n") {
		if f := strings.Fields(line); len(f) == 2 {
			seen["sha256:"+f[0]] = true
		}
	}
	if len(seen) == 0 {
		return errors.New("found no InRelease in apt's lists after the bootstrap, so cannot tell which mirror state it was built from")
	}
	for _, m := range want {
		if !seen[m.InRelease] {
			return fmt.Errorf("%w: %s (planned %s, apt read another); build again", ErrMirrorMoved, m.Name(), m.InRelease)
		}
	}
	return nil
}

// ErrMirrorMoved is a bootstrap whose mirror published an update between
// the InRelease fetched for the key and the one apt read: its layer would
// be stored under a key that does not describe it.
var ErrMirrorMoved = errors.New("a suite's InRelease changed while bootstrapping")

// shellQuote quotes s for sh.
func shellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
